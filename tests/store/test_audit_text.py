"""The text an audit record is hashed and stored as."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent_guardrails.store.base import canonical_json


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_canonical_json_is_sorted_compact_json(value: Any) -> None:
    """The hashed text is exactly ``json.dumps`` with sorted keys and no spaces: the chain
    of a log written by an earlier release verifies the same."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert canonical_json(value) == expected
    assert canonical_json({"v": value}) == json.dumps(
        {"v": value}, sort_keys=True, separators=(",", ":")
    )
