"""The demo: marketing tools called through ``@guarded`` at every autonomy level.

Run it with ``make demo`` or ``agent-guardrails demo``. It uses a fresh SQLite store (the
embedded default) under ``.agent_guardrails/demo.db`` so you can inspect what it recorded
afterwards with ``agent-guardrails status --store sqlite:///.agent_guardrails/demo.db``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from agent_guardrails.approvals import ApprovalAnswer, ApprovalRequest
from agent_guardrails.decorator import use_guardrails
from agent_guardrails.guard import Guardrails
from agent_guardrails.policy import PolicyPack
from agent_guardrails.scope import Scope

from . import tools

DEMO_DB = Path(".agent_guardrails") / "demo.db"


def pack_path() -> Path:
    """Where the example marketing pack ships inside the package."""
    return Path(str(resources.files("agent_guardrails.demo") / "marketing_pack.yaml"))


class _Approver:
    """A scripted operator: answers approval requests as the demo's story says."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.answer = ApprovalAnswer("reject", by="nobody", message="no answer scripted")

    def __call__(self, request: ApprovalRequest) -> ApprovalAnswer:
        answer = self.answer
        roles = ", ".join(request.roles) or "anyone"
        self.out.write(
            f"      ? approval asked ({', '.join(request.reasons)}; needs {roles}; "
            f"cost {request.cost:g} {request.currency}) -> {answer.type} by "
            f"{answer.by} [{', '.join(answer.roles) or 'no role'}]\n"
        )
        return answer


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="agent-guardrails demo", description=__doc__)
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: a fresh sqlite:///{DEMO_DB})",
    )
    args = parser.parse_args(argv)
    store_url = args.store
    if store_url is None:
        DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        store_url = f"sqlite:///{DEMO_DB}"
    pack = PolicyPack.from_yaml(pack_path())
    approver = _Approver(out)
    guard = Guardrails(pack, store=store_url, approver=approver, scope={"agent": "campaign-bot"})
    tools.OUTBOX.events.clear()

    def say(text: str) -> None:
        out.write(text + "\n")

    def call(
        label: str,
        fn: Callable[..., Any],
        /,
        *,
        answer: ApprovalAnswer | None = None,
        **kwargs: Any,
    ) -> Any:
        if answer is not None:
            approver.answer = answer  # what the operator says if this call asks
        result = fn(**kwargs)
        if isinstance(result, dict) and "status" in result and "decision" in result:
            reasons = ", ".join(result["reasons"])
            say(f"  {label:<34} -> {result['status'].upper():<16} {reasons}")
            say(f"      {result['message']}")
            if "draft" in result:
                draft = result["draft"]
                shown = draft.get("preview") or draft.get("recommendation") or draft
                say("      draft: " + str(shown).replace("\n", " | "))
        else:
            say(f"  {label:<34} -> {'RAN':<16} {result}")
        return result

    say(f"agent-guardrails demo: pack {pack.name} v{pack.version}, store {store_url}\n")
    recipients = ["c-101", "c-102", "c-103"]
    body = "Our November picks are in. Manage preferences or unsubscribe at any time."

    with use_guardrails(guard):
        say("L0 Assist  (workflow newsletter, region eu): drafts only, nothing is sent")
        with guard.scope(workflow="newsletter", region="eu"):
            call("send_email", tools.send_email, to=recipients, subject="November picks", body=body)
            call(
                "reallocate_budget",
                tools.reallocate_budget,
                source="search",
                target="social",
                amount=300.0,
            )
            call(
                "send_email with 'guaranteed'",
                tools.send_email,
                to=recipients,
                subject="Guaranteed savings",
                body=body,
            )

        say(
            "\nL1 Execute (workflow newsletter): low-risk steps run, "
            "sensitive ones wait for a human"
        )
        with guard.scope(workflow="newsletter", channel="email"):
            call("build_audience", tools.build_audience, name="november-active", rule="opened_90d")
            call(
                "send_email",
                tools.send_email,
                to=recipients,
                subject="November picks",
                body=body,
                answer=ApprovalAnswer("approve", by="ana", roles=("marketing_ops",)),
            )
            call(
                "send_email without unsubscribe",
                tools.send_email,
                to=recipients,
                subject="Hello",
                body="Big news inside.",
            )
            call(
                "reallocate_budget",
                tools.reallocate_budget,
                source="search",
                target="social",
                amount=300.0,
            )
            call(
                "publish_page (forged approver)",
                tools.publish_page,
                title="Winter Sale",
                html="<h1>Sale</h1>",
                answer=ApprovalAnswer("approve", by="mallory", roles=("intern",)),
            )
            for n in (2, 3, 4):
                call(
                    f"send_email #{n} to c-101",
                    tools.send_email,
                    to=["c-101"],
                    subject=f"Reminder {n}",
                    body=body,
                    answer=ApprovalAnswer("approve", by="ana", roles=("marketing_ops",)),
                )

        say("\nL2 Optimize (workflow paid_media): reallocations run within the weekly cap")
        with guard.scope(workflow="paid_media"):
            call(
                "reallocate_budget 1200",
                tools.reallocate_budget,
                source="search",
                target="social",
                amount=1200.0,
            )
            call(
                "reallocate_budget 4500 (over cap)",
                tools.reallocate_budget,
                source="display",
                target="social",
                amount=4500.0,
                answer=ApprovalAnswer(
                    "reject", by="raj", roles=("revenue_ops",), message="Keep Q4 reserve."
                ),
            )
            call(
                "launch_campaign",
                tools.launch_campaign,
                name="holiday",
                steps=["audience", "email", "ads"],
            )

        say("\nL3 Orchestrate: the governance board promotes paid_media after its gate passed")
        paid = Scope(workflow="paid_media")
        guard.set_level(
            paid, "orchestrate", by="governance-board", reason="gate optimize->orchestrate passed"
        )
        say(f"  level of paid_media is now {guard.level_of(paid).label}")
        with guard.scope(workflow="paid_media"):
            call(
                "launch_campaign",
                tools.launch_campaign,
                name="holiday",
                steps=["audience", "email", "ads"],
                answer=ApprovalAnswer("approve", by="grace", roles=("governance_board",)),
            )
            call(
                "reallocate_budget 800",
                tools.reallocate_budget,
                source="search",
                target="video",
                amount=800.0,
            )

        say("\nKill-switch: an operator stops everything in paid_media")
        guard.kill(paid, by="ops-oncall", reason="spend anomaly under investigation")
        with guard.scope(workflow="paid_media"):
            call(
                "reallocate_budget 100",
                tools.reallocate_budget,
                source="search",
                target="video",
                amount=100.0,
            )
        guard.unkill(paid, by="ops-oncall", reason="anomaly explained")

    say("\nWhat the tools actually did:")
    for event in tools.OUTBOX.events:
        say(f"  - {event}")
    verdict = guard.store.verify_audit()
    records = len(guard.store.audit_records())
    say(
        f"\nAudit log: {records} records, hash chain "
        + ("verified" if verdict.ok else f"BROKEN: {verdict.problem}")
    )
    if args.store is None:
        say(f"Inspect it: agent-guardrails status --store sqlite:///{DEMO_DB}")
    guard.store.close()
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
