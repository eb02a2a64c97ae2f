"""Cells of the matrix that cannot apply, and why. They are skipped with this reason (it shows
in ``pytest -ra``), never silently. ``None`` in a key matches every adapter / store.

Also true, and not a skip: on ``memory://`` "another process" is a second ``Guardrails``
(or an ``agent_guardrails.ops`` call) over the same ``MemoryStore`` object in this process
(promises 4 and 5), since another process cannot share a memory store.
"""

from __future__ import annotations

MEMORY_IS_ONE_PROCESS = (
    "a memory:// store lives inside one process: other processes cannot share it"
)

NOT_APPLICABLE: dict[tuple[str, str | None, str | None], str] = {
    ("p07_processes", None, "memory"): MEMORY_IS_ONE_PROCESS,
    ("p09_crash_mid_call", None, "memory"): (
        "state dies with the process: a memory:// store does not outlive a killed worker, "
        "so nothing is left to resume"
    ),
    **{
        ("p11_model_hooks_fail_closed", adapter, None): (
            "model-call hooks exist only in GuardrailsMiddleware: in a hand-built graph the "
            "graph's own model node calls the model, no adapter wraps it"
        )
        for adapter in ("guarded", "tool_node", "guard_node")
    },
    **{
        ("p02_batched_answers_bind_to_the_calls_shown", adapter, None): (
            "each call is asked in a question of its own (per call): an answer names its "
            "call's interrupt, and a call that needs no human runs in the first run"
        )
        for adapter in ("guarded", "tool_node", "middleware_per_call")
    },
}


def not_applicable(promise: str, adapter: str, mode: str, store: str) -> str | None:
    """Why the cell ``promise x adapter x store`` cannot apply, or ``None``."""
    for key in ((promise, adapter, store), (promise, adapter, None), (promise, None, store)):
        if key in NOT_APPLICABLE:
            return NOT_APPLICABLE[key]
    return NOT_APPLICABLE.get((promise, None, None))
