"""Every span, event, attribute and metric name agent-guardrails emits, in one place.

Standard names follow the OpenTelemetry GenAI semantic conventions for tool execution
(``execute_tool {tool}`` spans of kind INTERNAL). Nothing standard exists yet for guardrail
decisions, costs or approvals, so those live under the ``agent_guardrails.`` namespace.
Search Jaeger by these tags, e.g. ``agent_guardrails.outcome=rejected`` or
``agent_guardrails.scope.region=eu`` (tag search needs a Jaeger backend with storage; a trace
file opened in the UI can be read but not searched by tag).
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- span names
EXECUTE_TOOL: Final = "execute_tool"
"""Span name prefix and ``gen_ai.operation.name`` value: the span is ``execute_tool {tool}``."""
CALL_MODEL: Final = "chat"
"""``gen_ai.operation.name`` of a model call priced by the middleware (``chat {model}``)."""

# ---------------------------------------------------------------- GenAI conventions
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"  # content: opt-in only
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"  # content: opt-in only
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
ERROR_TYPE: Final = "error.type"

TOOL_TYPE_FUNCTION: Final = "function"

# ---------------------------------------------------------------- agent_guardrails.*
_NS: Final = "agent_guardrails."
LEVEL: Final = _NS + "level"
"""The autonomy level the call was decided at (0-3)."""
LEVEL_NAME: Final = _NS + "level.name"
"""The level's name: ``assist`` | ``execute`` | ``optimize`` | ``orchestrate``."""
CALL_OUTCOME: Final = _NS + "outcome"
"""What happened to the call, in one word: ``ran`` | ``approved`` | ``edited`` |
``simulated`` | ``denied`` | ``halted`` | ``rejected`` | ``responded`` | ``in_doubt`` |
``pending`` (waiting for a human) | ``replayed`` (a finished call's result handed back)."""
EXPLANATION: Final = _NS + "explanation"
"""One sentence saying what happened and why."""
DECISION: Final = _NS + "decision"
"""``allow`` | ``simulate`` | ``require_approval`` | ``deny`` | ``halt``: the final verdict."""
REASONS: Final = _NS + "reasons"
"""Machine-readable reason codes, comma-separated, e.g. ``budget_exceeded`` (a string, not
an array, so that Jaeger's tag search matches it as written); the same in events."""
ACTION: Final = _NS + "action"
RISK: Final = _NS + "risk"
SCOPE: Final = _NS + "scope"
"""The call's scope as ``agent=...,workflow=...`` (only the dimensions that are set); each
set dimension is also its own attribute, ``agent_guardrails.scope.<dimension>``."""
PACK_NAME: Final = _NS + "pack.name"
PACK_VERSION: Final = _NS + "pack.version"
COST_AMOUNT: Final = _NS + "cost.amount"
"""A model call's cost (``chat {model}`` spans)."""
COST_ESTIMATED: Final = _NS + "cost.estimated"
"""What the pack prices the tool call at (what a reservation holds)."""
COST_CHARGED: Final = _NS + "cost.charged"
"""What was charged: only on calls whose body ran (the reported cost, else the estimate)."""
COST_CURRENCY: Final = _NS + "cost.currency"
COST_TOKENS: Final = _NS + "cost.tokens"
BUDGET_LEFT: Final = _NS + "budget.left"
"""The smallest budget headroom after the call: only on calls that ran."""
EXPOSURE_LEFT: Final = _NS + "exposure.left"
CALL_KEY: Final = _NS + "call.key"
"""On a link from a resumed call: the call's idempotency key (thread | namespace | id)."""
REPLAY: Final = _NS + "replay"
"""True when a finished call's stored result was handed back instead of running again."""
APPROVER: Final = _NS + "approval.approver"
APPROVER_ROLES: Final = _NS + "approval.approver_roles"
"""The roles of the human who answered."""
REQUIRED_ROLES: Final = _NS + "approval.required_roles"
"""The roles one of which the pack requires of an approver."""
APPROVAL_DECISION: Final = _NS + "approval.decision"
APPROVAL_WAIT: Final = _NS + "approval.wait_s"
DECISION_LATENCY: Final = _NS + "decision.latency_ms"
"""Time spent deciding (policy, store reads, reservation), in milliseconds."""

CONTENT_ERROR: Final = _NS + "content.error"
"""With content capture on: the redaction hook failed (its exception type); no content."""
VALIDATORS_PASSED: Final = _NS + "validators.passed"
"""Comma-separated names of the validators the call passed (each failed one is an event)."""

# ---------------------------------------------------------------- span events
EVENT_VALIDATOR: Final = _NS + "validator"
EVENT_APPROVAL_REQUESTED: Final = _NS + "approval.requested"
EVENT_APPROVAL_RESOLVED: Final = _NS + "approval.resolved"
EVENT_KILL_SWITCH: Final = _NS + "kill_switch.halt"
VALIDATOR_NAME: Final = _NS + "validator.name"
VALIDATOR_PASSED: Final = _NS + "validator.passed"
KILL_SWITCH_SCOPE: Final = _NS + "kill_switch.scope"
APPROVAL_EXPIRES_AT: Final = _NS + "approval.expires_at"
"""When the question expires, ISO 8601 UTC (``2026-12-06T10:00:00Z``)."""
APPROVAL_REFUSED: Final = _NS + "approval.refused"

# ---------------------------------------------------------------- metrics
METRIC_DECISIONS: Final = _NS + "decisions"
"""Counter of decisions, by ``agent_guardrails.decision``, action and scope."""
METRIC_COST: Final = _NS + "cost"
"""Counter of committed cost, by scope and currency (unit: the currency)."""
METRIC_TOOL_DURATION: Final = _NS + "tool.duration"
"""Histogram of tool body run time in seconds, by action and outcome."""
METRIC_APPROVAL_WAIT: Final = _NS + "approval.wait"
"""Histogram of the time from asking a human to their answer, in seconds."""
OUTCOME: Final = _NS + "tool.outcome"
"""``ok`` | ``error`` on the tool duration histogram."""

INSTRUMENTATION_NAME: Final = "agent_guardrails"
