"""Every example in the package's docstrings runs as written (``doctest``), module by module,
so an example cannot rot unseen: a renamed import or a changed figure fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import agent_guardrails

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(agent_guardrails.__path__, "agent_guardrails.")
    if not info.name.endswith("__main__")
)


def test_the_package_has_modules_to_check() -> None:
    assert len(MODULES) > 50
    assert "agent_guardrails.engine.gate_stats" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_the_module_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
