"""GuardrailsMiddleware on a create_agent agent: one call runs, one waits for approval.

python examples/middleware_agent.py
"""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from _shared import APPROVER, PACK, ScriptedModel, tool_calls
from agent_guardrails import Guardrails, PolicyPack
from agent_guardrails.middleware import GuardrailsMiddleware


@tool
def send_email(to: list[str], body: str) -> str:
    """Send an email to contacts."""
    return f"sent to {len(to)} contact(s)"


@tool
def tag_contact(contact: str, tag: str) -> str:
    """Tag a contact in the CRM."""
    return f"tagged {contact} {tag}"


def main() -> list[str]:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    model = ScriptedModel(
        messages=iter(
            [
                tool_calls(
                    ("tag_contact", {"contact": "c1", "tag": "vip"}),
                    ("send_email", {"to": ["c1"], "body": "Hi! unsubscribe: link"}),
                ),
                AIMessage(content="All done."),
            ]
        )
    )
    agent: Any = create_agent(
        model,
        [send_email, tag_contact],
        middleware=[
            GuardrailsMiddleware(
                guard, actions={"send_email": "email.send", "tag_contact": "crm.tag"}
            )
        ],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "example"}}
    first = agent.invoke({"messages": [("user", "Welcome c1")]}, config, version="v2")
    # One question for the model's turn, in LangChain's HITLRequest dialect (what Agent Chat
    # UI renders): an action per call that needs a human, our details beside each.
    (question,) = first.interrupts
    asked = zip(question.value["action_requests"], question.value["guardrails"], strict=True)
    lines = [f"paused: {action['name']} needs {details['roles']}" for action, details in asked]
    decisions = [{"type": "approve"} for _ in question.value["action_requests"]]
    answers = {question.id: {"decisions": decisions}}
    # The approver's identity comes from the resuming caller's context, not from the model.
    resumed: Any = {"configurable": {"thread_id": "example", **APPROVER}}
    done = agent.invoke(Command(resume=answers), resumed, version="v2")
    lines += [f"{m.type}: {m.content}" for m in done.value["messages"][1:]]
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
