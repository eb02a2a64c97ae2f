"""Every Python block of the README runs, in order, in a fresh directory.

Blocks share one namespace, as a reader's session would. The README says where it assumes
the reader's own objects ("given your chat model `model`, your LangChain `tools` and a
checkpointer"); the test supplies those three: a scripted model that sends one email, a
`send_email` tool and an in-memory checkpointer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


class _Model(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> _Model:
        return self


def _readers_objects() -> dict[str, Any]:
    @tool
    def send_email(to: list[str], subject: str, body: str) -> str:
        """Send a marketing email."""
        return f"sent to {len(to)} contact(s)"

    call = {
        "name": "send_email",
        "id": "c1",
        "args": {"to": ["c-1"], "subject": "Picks", "body": "unsubscribe below"},
    }
    script = iter([AIMessage(content="", tool_calls=[call]), AIMessage(content="Sent.")])
    return {
        "model": _Model(messages=script),
        "tools": [send_email],
        "checkpointer": InMemorySaver(),
    }


def test_every_python_block_of_the_readme_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    for number, code in enumerate(blocks, start=1):
        if "model" not in namespace and "create_agent(" in code:
            namespace.update(_readers_objects())
        try:
            exec(compile(code, f"README.md block {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README.md python block {number} failed: {exc!r}\n{code}")
    assert "agent" in namespace
    assert "guard" in namespace
    messages = namespace["agent"].get_state({"configurable": {"thread_id": "t1"}}).values
    assert any("sent to 1 contact" in str(m.content) for m in messages["messages"])
