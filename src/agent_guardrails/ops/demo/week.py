"""The demo's last act: autonomy earned and lost, in numbers.

A simulated week of newsletter work at Execute (audience builds, a few failing; sends that
wait for marketing ops, answered within their SLA) gives the newsletter's gate its
evidence; the gate passes and a named person applies the promotion to Optimize. Then, the
kill-switch of the incident released (engaging it already lowered paid media from
Orchestrate to Optimize), the paid-media agent tries to publish a page that fails the brand
validator: the trip-wire lowers paid media to Execute by itself. The week ends with the
scorecard, written as one HTML file.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_guardrails.engine.decision import CallRequest
from agent_guardrails.ops import scorecard
from agent_guardrails.ops.gates import Gates
from agent_guardrails.ops.weekly import weekly_scorecard
from agent_guardrails.pipeline.approvals import ApprovalAnswer, ScriptedApprover
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import is_result
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import Store

__all__ = ["SCORECARD", "earned_autonomy"]

SCORECARD = "agent-guardrails-scorecard.html"

NEWSLETTER = Scope(workflow="newsletter")
PAID_MEDIA = Scope(workflow="paid_media")
BODY = "This week's picks. Manage preferences or unsubscribe at any time."


def earned_autonomy(
    store: Store, pack: PolicyPack, say: Callable[[str], None], out_dir: Path
) -> Path:
    """Run the act; returns the scorecard's path."""
    rng = random.Random(2026)
    approver = ScriptedApprover(
        {"email.send": ApprovalAnswer("approve", by="ana", roles=("marketing_ops",))}
    )
    guard = Guardrails(pack, store=store, approver=approver)
    ran = failed = sent = 0
    for i in range(600):
        flaky = rng.random() < 0.015

        def build(args: Mapping[str, Any], flaky: bool = flaky) -> dict[str, Any]:
            if flaky:
                raise TimeoutError("the CRM timed out")
            return {"audience": args["name"], "size": 900}

        request = CallRequest(
            "build_audience",
            "audience.build",
            {"name": f"weekly-{i}", "rule": "opened_30d"},
            NEWSLETTER,
        )
        try:
            guard.run(request, build)
            ran += 1
        except TimeoutError:
            failed += 1
        if i % 7 == 0:
            send = CallRequest(
                "send_email",
                "email.send",
                {"to": [f"c-{i}"], "subject": "Weekly picks", "body": BODY, "channel": "email"},
                NEWSLETTER.merge(Scope(channel="email")),
            )
            guard.run(send, lambda args: "sent")
            sent += 1
    say(
        f"   a simulated week of newsletter work: {ran + failed} audience builds ({failed} "
        f"failed), {sent} sends approved by marketing ops within their SLA"
    )
    gates = Gates(store, pack)
    (verdict,) = gates.evaluate("workflow=newsletter")
    say(f"   gate execute -> optimize for workflow=newsletter: {verdict.verdict.upper()}")
    for m in verdict.metrics:
        say(f"     - {m.sentence}")
    if verdict.verdict == "promote":
        change = gates.promote("workflow=newsletter", by="maria (marketing ops lead)")
        say(
            f"   maria (marketing ops lead) applied it: newsletter L{verdict.level} -> "
            f"L{change.new_level} (evaluation {str(change.evidence['evaluation_id'])[:12]})"
        )
    guard.unkill(PAID_MEDIA, by="ops-oncall", reason="spend anomaly explained")
    page = CallRequest(
        "publish_page",
        "page.publish",
        {"title": "Guaranteed ROI", "html": "<h1>Guaranteed</h1>"},
        PAID_MEDIA,
    )
    result = guard.run(page, lambda args: "published")
    assert is_result(result)  # refused: the body did not run
    say(
        f"   paid media tries to publish 'Guaranteed ROI': {result['status'].upper()} "
        f"({', '.join(result['reasons'])})"
    )
    level = guard.level_of(PAID_MEDIA)
    last = store.level_history("workflow=paid_media")[-1]
    say(
        f"   paid media is now L{int(level)} {level.name.title()}, by itself ({last.by}: "
        f"{last.reason})"
    )
    card = weekly_scorecard(store, pack=pack, week=datetime.now(UTC).date())
    path = out_dir / SCORECARD
    path.write_text(scorecard.to_html(card), encoding="utf-8")
    say(f"   scorecard of the week of {card.week_start}: {path}")
    return path
