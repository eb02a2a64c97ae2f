"""The async path of a guarded call makes no blocking call on the event loop.

The served tests show the first blocking call ``langgraph dev`` refuses; this survey (same
blockbuster set-up, in-process) lists every one, so a failure names them all."""

from __future__ import annotations

import pytest

from tests.served.blocking_survey import report, survey

pytestmark = pytest.mark.served


def test_guarded_async_runs_make_no_blocking_calls() -> None:
    calls = survey()
    assert calls == [], "\n".join(report(calls))
