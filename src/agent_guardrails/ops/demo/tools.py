"""The demo's marketing tools: each appends what it *did* to an outbox, so the demo can show
that nothing happened at Assist and that denied calls never ran."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_guardrails.adapters.decorator import guarded
from agent_guardrails.pipeline.guardrails import report_cost


@dataclass
class Outbox:
    """Side effects the tools performed, in order; listeners hear each one."""

    events: list[str] = field(default_factory=list)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def record(self, event: str) -> None:
        self.events.append(event)
        for listener in self.listeners:
            listener(event)


OUTBOX = Outbox()


def _draft_email(to: list[str], subject: str, body: str, channel: str = "email") -> dict[str, Any]:
    return {
        "preview": f"To: {len(to)} contact(s)\nSubject: {subject}\n\n{body}",
        "recipients": len(to),
        "estimated_cost_usd": round(0.002 * len(to), 4),
    }


@guarded(action="email.send", simulate=_draft_email, scope={"channel": "email"})
def send_email(to: list[str], subject: str, body: str, channel: str = "email") -> str:
    """Send a marketing email to a list of contacts."""
    OUTBOX.record(f"sent {subject!r} to {len(to)} contact(s)")
    return f"sent to {len(to)} contact(s)"


@guarded(action="audience.build")
def build_audience(name: str, rule: str) -> dict[str, Any]:
    """Build an audience list from a segment rule."""
    OUTBOX.record(f"built audience {name!r}")
    return {"audience": name, "size": 1280, "rule": rule}


def _price_reallocation(source: str, target: str, amount: float) -> dict[str, Any]:
    return {"recommendation": f"move {amount:.2f} USD from {source} to {target}", "applied": False}


@guarded(action="budget.reallocate", simulate=_price_reallocation)
def reallocate_budget(source: str, target: str, amount: float) -> dict[str, Any]:
    """Move ad budget from one channel to another."""
    OUTBOX.record(f"moved {amount:.2f} USD {source} -> {target}")
    return {"moved": amount, "from": source, "to": target}


@guarded(action="page.publish")
def publish_page(title: str, html: str) -> str:
    """Publish a landing page."""
    OUTBOX.record(f"published page {title!r}")
    return f"published /{title.lower().replace(' ', '-')}"


@guarded(action="campaign.launch")
def launch_campaign(name: str, steps: list[str]) -> dict[str, Any]:
    """Plan and launch a multi-step campaign."""
    OUTBOX.record(f"launched campaign {name!r} ({len(steps)} steps)")
    report_cost(18.5)  # the actual cost came in under the 25 USD estimate
    return {"campaign": name, "steps": steps, "status": "running"}
