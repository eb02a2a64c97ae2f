"""Operator tooling: store operations (apply, roll back and diff packs, status, level dials),
the ``agent-guardrails`` CLI, the demo and trace printing."""

from agent_guardrails.ops.operations import (
    Status,
    active_policy,
    apply_pack,
    diff_packs,
    rollback_pack,
    set_level,
    status,
)

__all__ = [
    "Status",
    "active_policy",
    "apply_pack",
    "diff_packs",
    "rollback_pack",
    "set_level",
    "status",
]
