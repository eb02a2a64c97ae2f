"""Policy is live (DESIGN §3.13): the snapshot carries the active pack's digest, so the
pipeline notices a pack applied or rolled back by another process on its next call, and
reloads only then."""

from __future__ import annotations

from agent_guardrails.store import Store
from agent_guardrails.store.base import AuditEvent
from tests.store.store_helpers import StoreFactory


def _pack(store: Store) -> str | None:
    return store.snapshot(dial_key="w", counter_keys=["budget:x@0"], call_key="k").pack


def test_an_empty_store_has_no_active_pack(store: Store) -> None:
    assert _pack(store) is None
    store.save_pack("marketing", "1", "digest-1", "name: marketing\n", by="ana")
    assert _pack(store) is None  # saved, not active


def test_the_snapshot_follows_activate_pack(store: Store) -> None:
    store.save_pack("marketing", "1", "digest-1", "name: marketing\nversion: 1\n", by="ana")
    store.save_pack("marketing", "2", "digest-2", "name: marketing\nversion: 2\n", by="ana")
    store.activate_pack("marketing", "1", by="ana")
    assert _pack(store) == "digest-1"
    store.activate_pack("marketing", "2", by="ana", reason="apply v2")
    assert _pack(store) == "digest-2"
    store.activate_pack("marketing", "1", by="bo", reason="rollback")
    assert _pack(store) == "digest-1"
    store.save_pack("sales", "1", "digest-s", "name: sales\n", by="ana")
    assert _pack(store) == "digest-1"  # saving another pack does not activate it


def test_the_pack_digest_comes_with_the_rest_of_the_snapshot(store: Store) -> None:
    """The digest is read with everything else: level, switches, counters and the call."""
    store.save_pack("marketing", "1", "digest-1", "x", by="ana")
    store.activate_pack("marketing", "1", by="ana")
    store.set_level("w", 2, by="ana", reason="r")
    assert store.reserve("k", [], audit=AuditEvent("decision", {}, "k")).ok
    snap = store.snapshot(dial_key="w", counter_keys=[], call_key="k")
    assert snap.level == 2
    assert snap.call is not None
    assert snap.call.state == "reserved"
    assert snap.pack == "digest-1"


def test_a_second_handle_sees_the_other_handles_activation(
    durable_url: str, open_api: StoreFactory
) -> None:
    worker, operator = open_api(durable_url), open_api(durable_url)
    assert _pack(worker) is None
    operator.save_pack("marketing", "1", "digest-1", "x", by="ana")
    operator.activate_pack("marketing", "1", by="ana")
    assert _pack(worker) == "digest-1"
