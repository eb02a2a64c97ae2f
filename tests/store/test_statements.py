"""The SQL files render for both dialects: every placeholder filled, the dialect's words in
place (a byte-wise distinct count on PostgreSQL), and nothing left for the driver to trip
on."""

from __future__ import annotations

import re

import pytest

from agent_guardrails.store._statements import POSTGRES, SQLITE, Dialect, statements

FILES = ("operators.sql", "gate_evidence.sql", "retention.sql")


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_every_statement_renders_with_no_placeholder_left(dialect: Dialect) -> None:
    rendered = statements(dialect, {"p": "ag_"}, *FILES)
    assert len(rendered) > 40
    for name, text in rendered.items():
        assert not re.search(r"\{[a-z_]+\}", text), name
        assert ("?" not in text) if dialect.pyformat else ("%s" not in text), name


def test_distinct_entities_are_counted_byte_by_byte_on_postgresql() -> None:
    pg = statements(POSTGRES, {"p": "ag_"}, "gate_evidence.sql")
    lite = statements(SQLITE, {"p": "ag_"}, "gate_evidence.sql")
    for name in ("kpi_entities", "gate_split"):
        assert 'COUNT(DISTINCT entity COLLATE "C")' in pg[name]
        assert "COUNT(DISTINCT entity)" in lite[name]  # SQLite's BINARY is byte-wise already
