"""Earned autonomy: outcomes, control cohorts, gate evaluation and the weekly scorecard."""

__all__: list[str] = []
