"""Talk to the served example over its HTTP API, as one authenticated user (the SDK's sync
client, with the dev tokens of ``integrations/langgraph-server/dev_auth.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langgraph_sdk import get_sync_client

from tests.served._server import GRAPH, Server

TOKENS = {"ana": "dev-ana", "bob": "dev-bob"}  # ana: marketing_ops; bob: sales


class RunFailed(AssertionError):
    """A run of the served graph ended with an error."""


class BlockingDetected(RunFailed):
    """The server's blocking detector (blockbuster) stopped the run at a blocking call."""


class User:
    """One user of the served agent: threads, runs, resumes and the tools' outbox."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.client = get_sync_client(
            url=server.url,
            api_key=None,  # never an API key from the environment
            headers={"Authorization": f"Bearer {TOKENS[name]}"},
            timeout=60.0,
        )

    def new_thread(self) -> str:
        return str(self.client.threads.create()["thread_id"])

    def say(self, thread: str, text: str) -> dict[str, Any]:
        """Run the agent on one human message; the thread's values when it stops."""
        return self._wait(thread, input={"messages": [{"role": "user", "content": text}]})

    def resume(self, thread: str, answers: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Answer pending interrupts by id: ``{"command": {"resume": answers}}``."""
        return self._wait(thread, command={"resume": dict(answers)}, **extra)

    def _wait(self, thread: str, **kwargs: Any) -> dict[str, Any]:
        result = self.client.runs.wait(thread, GRAPH, raise_error=False, **kwargs)
        assert isinstance(result, dict), result
        error = result.get("__error__")
        if isinstance(error, dict):
            text = f"{error.get('error')}: {error.get('message')}"
            failure = BlockingDetected if error.get("error") == "BlockingError" else RunFailed
            raise failure(f"{text}\n--- server log (tail) ---\n{self.server.log()[-6000:]}")
        return result

    def interrupts(self, thread: str) -> list[dict[str, Any]]:
        state: Any = self.client.threads.get_state(thread)
        return list(state.get("interrupts") or [])

    def outbox(self, thread: str) -> list[dict[str, Any]]:
        """What the example's tools did on this thread (they write it to the server's store)."""
        found: Any = self.client.store.search_items(["outbox", thread], limit=100)
        return [item["value"] for item in found["items"]]


def messages(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(values.get("messages") or [])


def tool_messages(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in messages(values) if m.get("type") == "tool"]


def last_ai_text(values: Mapping[str, Any]) -> str:
    ai = [m for m in messages(values) if m.get("type") == "ai"]
    return str(ai[-1]["content"]) if ai else ""


def result_body(message: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON ``GuardrailResult`` a refused call's ``ToolMessage`` carries."""
    body: dict[str, Any] = json.loads(str(message["content"]))
    return body
