"""Every example in examples/ runs and shows the pause, the approval and the tool result."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "middleware_agent",
            ["paused: send_email", "tool: tagged c1 vip", "tool: sent to 1 contact(s)"],
        ),
        (
            "guarded_tool_node",
            ["paused: needs approval", "tool: sent to 2 contact(s)", "ai: Sent."],
        ),
        ("guarded_tool_in_plain_graph", ["paused: send_email", "tool: sent to 1 contact(s)"]),
        (
            "guard_node",
            ["one interrupt for the batch: ['send_email']", "tool: tagged c1 vip", "sent to 1"],
        ),
        (
            "traced_agent",
            [
                "execute_tool send_email",
                "require_approval L1",
                "* approval.requested",
                "allow L1 cost 0.01 USD budget left 4.99 approve by ana",
                "follows ",
            ],
        ),
    ],
)
def test_example_runs(name: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # graphs resolve type hints here
    spec.loader.exec_module(module)
    lines: list[str] = module.main()
    text = "\n".join(lines)
    for fragment in expected:
        assert fragment in text
    sys.modules.pop("_shared", None)
