"""A store written by an earlier release of the library: its pack versions keep working.

A pack's digest is taken over the pack as the library normalises it (every field, defaults
included), so a release that adds a field to packs digests the same YAML differently from
the release that stored it. The same name, version and content is the same version: a
restart, ``policy apply`` of the same file and a rollback to it all go on as before, and
the live-policy check reads the store once per call, not once per attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent_guardrails import ConfigurationError, Guardrails, PolicyPack, guarded
from agent_guardrails.ops.operations import apply_pack, rollback_pack
from agent_guardrails.store import Store, open_store
from tests.conftest import pack_text

V1 = pack_text(
    """
defaults: {level: execute}
actions:
  crm.tag: {risk: low}
""",
    name="upgraded",
    version="1",
)
V2 = pack_text(
    """
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1}
""",
    name="upgraded",
    version="2",
)
OLD = "digest-taken-by-an-earlier-release"


@pytest.fixture
def store(every_store_url: str) -> Iterator[Store]:
    """The store, as an earlier release left it: V1 stored and active under its digest."""
    store = open_store(every_store_url)
    store.save_pack("upgraded", "1", OLD, PolicyPack.from_yaml(V1).to_yaml(), by="old release")
    store.activate_pack("upgraded", "1", by="old release")
    yield store
    store.close()


class Snapshots:
    """Counts the store's snapshot reads (one per call is the live-policy check)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        self._read = store.snapshot

    def __call__(self, **kwargs: Any) -> Any:
        self.count += 1
        return self._read(**kwargs)


def _tag(guard: Guardrails) -> Any:
    @guarded(action="crm.tag", guardrails=guard)
    def tag(contact: str) -> str:
        return f"tagged {contact}"

    return tag


def test_restart_with_the_same_pack_keeps_the_stored_version(store: Store) -> None:
    guard = Guardrails(PolicyPack.from_yaml(V1), store=store)
    snapshots = Snapshots(store)
    store.snapshot = snapshots  # type: ignore[method-assign]
    tag = _tag(guard)
    assert tag("c1") == "tagged c1"
    assert tag("c2") == "tagged c2"
    assert snapshots.count == 2, "each call read the store more than once"
    versions = store.pack_versions("upgraded")
    assert [(v.version, v.digest) for v in versions] == [("1", OLD)]
    active = store.active_pack()
    assert active is not None
    assert active.digest == OLD


def test_apply_of_the_same_file_activates_the_stored_version(store: Store) -> None:
    apply_pack(store, V2, by="ops")
    again = apply_pack(store, V1, by="ops")
    assert (again.version, again.digest) == ("1", OLD)
    assert [v.version for v in store.pack_versions("upgraded")] == ["1", "2"]


def test_other_content_under_a_stored_version_is_still_refused(store: Store) -> None:
    changed = V1.replace("risk: low", "risk: high")
    with pytest.raises(ConfigurationError, match="already stored with different content"):
        apply_pack(store, changed, by="ops")
    with pytest.raises(ConfigurationError, match="already stored with different content"):
        _tag(Guardrails(PolicyPack.from_yaml(changed), store=store))("c1")
    assert store.active_pack().digest == OLD  # type: ignore[union-attr]


def test_a_rollback_to_a_version_an_earlier_release_stored_is_followed_once(
    store: Store,
) -> None:
    guard = Guardrails(PolicyPack.from_yaml(V2), store=store)
    tag = _tag(guard)
    assert tag("c1") == "tagged c1"
    assert guard.policy.version == "2"
    rollback_pack(store, "1", by="ops")  # as the CLI does, from another process
    snapshots = Snapshots(store)
    store.snapshot = snapshots  # type: ignore[method-assign]
    assert tag("c2") == "tagged c2"
    assert guard.policy.version == "1"
    first = snapshots.count  # the call that found the change decides again: two reads
    assert tag("c3") == "tagged c3"
    assert tag("c4") == "tagged c4"
    assert snapshots.count - first == 2, "the followed version is read again on every call"


def test_a_stored_copy_this_release_cannot_read_is_said_so(every_store_url: str) -> None:
    store = open_store(every_store_url)
    store.save_pack("upgraded", "1", OLD, "name: upgraded\nversion: '1'\nshiny: true\n", by="x")
    with pytest.raises(ConfigurationError, match="the stored copy cannot be read here"):
        apply_pack(store, V1, by="ops")
    store.close()


def test_a_guard_nodes_decision_carried_to_its_tools_node_is_not_stale(tmp_path: Any) -> None:
    """The guard node carries the version it decided under to the tools node, which refuses
    the call as ``approval_stale`` if the active version changed meanwhile: with the store's
    version digested by an earlier release, that is the store's digest on both sides."""
    from tests.test_guard_node import PACK as NODE_PACK
    from tests.test_guard_node import Harness, tool_results, turn

    url = f"sqlite:///{tmp_path / 'node.db'}"
    earlier = open_store(url)
    earlier.save_pack("node", "3", OLD, PolicyPack.from_yaml(NODE_PACK).to_yaml(), by="old")
    earlier.activate_pack("node", "3", by="old")
    earlier.close()
    h = Harness(turn(("tag_contact", {"contact": "a"})), store=url)
    out = h.start()
    assert h.runs == [("tag_contact", {"contact": "a"})], tool_results(out)
    h.guard.close()
