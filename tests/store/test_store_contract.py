"""The store contract, run against every backend (memory://, sqlite://, postgresql://).

Every backend must behave like :class:`~agent_guardrails.store.memory.MemoryStore`; the last
tests here drive the same random operations through the memory store and the backend under
test and compare everything observable.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import MemoryStore, Store
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    LazyData,
    Outcome,
    verify_chain,
)
from tests.store.store_helpers import StoreFactory

DAY_END = 1_704_326_400


def budget(amount: float, limit: float = 10.0, name: str = "daily") -> Charge:
    return Charge(f"budget:{name}|USD@1704240000", "budget", amount, limit, DAY_END, name)


def exposure(entity: str, limit: float = 2.0, group: str = "email.send") -> Charge:
    return Charge(
        f"exposure:{group}:{entity}@1704240000",
        "exposure",
        1.0,
        limit,
        DAY_END,
        f"contact={entity}",
    )


def event(kind: str, key: str | None = None, dedupe: str | None = None, **data: Any) -> AuditEvent:
    return AuditEvent(kind, data, key, dedupe)


def kinds(store: Store) -> list[str]:
    return [r.kind for r in store.audit_records()]


# ------------------------------------------------------------------ reserve / commit / release


def test_reserve_holds_every_charge_or_none(store: Store) -> None:
    b, e = budget(4.0), exposure("c1", limit=1.0)
    assert store.reserve("k1", [b, e], audit=event("decision", "k1")).ok
    assert store.counters() == {b.key: 4.0, e.key: 1.0}

    # The budget fits, the exposure does not: nothing is held, the breach names the exposure.
    res = store.reserve("k2", [budget(4.0), exposure("c1", limit=1.0)])
    assert not res.ok
    assert not res.replay
    assert res.breach == e
    assert res.used == 1.0
    assert store.counters() == {b.key: 4.0, e.key: 1.0}
    assert store.call_record("k2") is None
    assert kinds(store) == ["decision"]  # a denied reservation appends nothing


def test_breach_is_the_first_charge_that_does_not_fit(store: Store) -> None:
    assert store.reserve("k1", [budget(9.0)]).ok
    res = store.reserve("k2", [exposure("c1"), budget(2.0), exposure("c2", limit=0.5)])
    assert res.breach == budget(2.0)
    assert res.used == 9.0


def test_a_charge_that_exactly_fills_the_limit_fits(store: Store) -> None:
    for i in range(3):
        assert store.reserve(f"k{i}", [budget(0.1, limit=0.3)]).ok  # 0.1 * 3 > 0.3 in floats
    assert not store.reserve("k3", [budget(0.1, limit=0.3)]).ok
    assert store.counters()[budget(0.1).key] == pytest.approx(0.3)


def test_force_reserves_over_the_cap(store: Store) -> None:
    assert store.reserve("k1", [budget(8.0)]).ok
    assert store.reserve("k2", [budget(8.0)], force=True).ok
    assert store.counters()[budget(1).key] == 16.0


def test_finish_ok_charges_the_actual_cost_to_budgets_only(store: Store) -> None:
    b, e = budget(5.0), exposure("c1")
    assert store.reserve("k1", [b, e]).ok
    assert store.start("k1")
    store.finish("k1", ok=True, actual_cost=3.25, result='{"sent": 1}', audit=event("done", "k1"))
    assert store.counters() == {b.key: 3.25, e.key: 1.0}
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "finished"
    assert rec.result == '{"sent": 1}'
    assert rec.charges == (b, e)


def test_finish_ok_without_actual_cost_keeps_the_estimate(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    assert store.start("k1")
    store.finish("k1", ok=True)
    assert store.counters() == {budget(1).key: 5.0}


def test_finish_failed_releases_what_was_held(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0), exposure("c1")]).ok
    assert store.start("k1")
    store.finish("k1", ok=False, audit=event("execution.failed", "k1"))
    assert store.counters() == {budget(1).key: 0.0, exposure("c1").key: 0.0}
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "failed"
    assert kinds(store) == ["execution.failed"]


def test_finish_twice_settles_once(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    store.finish("k1", ok=False)
    store.finish("k1", ok=False, audit=event("again", "k1"))
    store.finish("k1", ok=True, actual_cost=1.0)
    assert store.counters() == {budget(1).key: 0.0}
    assert kinds(store) == ["again"]  # the audit record is still written


def test_finish_of_an_unknown_call_only_audits(store: Store) -> None:
    store.finish("nope", ok=True, actual_cost=3.0, audit=event("execution.finished", "nope"))
    assert store.counters() == {}
    assert store.call_record("nope") is None
    assert kinds(store) == ["execution.finished"]


def test_release_undoes_a_reservation_once(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    store.release("k1", audit=event("approval.rejected", "k1"))
    store.release("k1")
    assert store.counters() == {budget(1).key: 0.0}
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "released"
    assert kinds(store) == ["approval.rejected"]


def test_release_of_a_finished_call_changes_nothing(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    store.finish("k1", ok=True)
    store.release("k1", audit=event("late", "k1"))
    assert store.counters() == {budget(1).key: 5.0}
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "finished"
    assert kinds(store) == ["late"]


def test_replay_returns_the_original_success_without_charging_again(store: Store) -> None:
    assert store.reserve("k1", [budget(4.0)], audit=event("decision", "k1", "k1:decision")).ok
    res = store.reserve("k1", [budget(4.0)], audit=event("decision", "k1", "k1:decision"))
    assert res.ok
    assert res.replay
    assert store.counters() == {budget(1).key: 4.0}
    assert kinds(store) == ["decision"]


def test_replay_after_the_budget_is_full_is_not_a_denial(store: Store) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    assert store.reserve("k2", [budget(5.0)]).ok  # full now
    for state_change in (None, "start", "finish"):
        if state_change == "start":
            assert store.start("k1")
        elif state_change == "finish":
            store.finish("k1", ok=True)
        res = store.reserve("k1", [budget(5.0)])
        assert res.ok
        assert res.replay
    assert not store.reserve("k3", [budget(5.0)]).ok
    assert store.counters() == {budget(1).key: 10.0}


@pytest.mark.parametrize("how", ["release", "fail"])
def test_a_released_or_failed_key_reserves_anew(store: Store, how: str) -> None:
    assert store.reserve("k1", [budget(5.0)]).ok
    if how == "release":
        store.release("k1")
    else:
        store.finish("k1", ok=False)
    res = store.reserve("k1", [budget(3.0)], now=1234.5)
    assert res.ok
    assert not res.replay
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "reserved"
    assert rec.charges == (budget(3.0),)
    assert rec.updated_at == 1234.5
    assert store.counters() == {budget(1).key: 3.0}


def test_reserve_without_charges_records_the_call(store: Store) -> None:
    assert store.reserve("k1", [], audit=event("decision", "k1")).ok
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "reserved"
    assert rec.charges == ()
    assert store.counters() == {}


def test_exposure_caps_over_lists_of_entities(store: Store) -> None:
    def touch(key: str, *entities: str) -> bool:
        return store.reserve(key, [budget(1.0), *(exposure(e) for e in entities)]).ok

    assert touch("k1", "a", "b")
    assert touch("k2", "b", "c")
    assert not touch("k3", "a", "b")  # b was touched twice: the whole call is refused
    assert touch("k4", "a", "c")
    assert not touch("k5", "c")
    assert store.counters("exposure:") == {
        exposure("a").key: 2.0,
        exposure("b").key: 2.0,
        exposure("c").key: 2.0,
    }
    assert store.counters("budget:") == {budget(1).key: 3.0}


def test_reserve_many_is_all_or_nothing_and_charges_add_up(store: Store) -> None:
    assert store.reserve("k0", [budget(4.0)]).ok
    # Each call alone fits (4 + 4 <= 10) but together they do not (4 + 4 + 4 > 10).
    res = store.reserve_many([("k1", [budget(4.0)]), ("k2", [budget(4.0), exposure("a")])])
    assert not res.ok
    assert res.breach == budget(4.0)
    assert res.used == 4.0
    assert store.call_record("k1") is None
    assert store.call_record("k2") is None
    assert store.counters() == {budget(1).key: 4.0}

    res = store.reserve_many(
        [("k1", [budget(3.0)]), ("k2", [budget(3.0), exposure("a")])],
        audit=[event("decision", "k1", "k1:d"), event("decision", "k2", "k2:d")],
        now=99.0,
    )
    assert res.ok
    assert not res.replay
    assert store.counters() == {budget(1).key: 10.0, exposure("a").key: 1.0}
    rec = store.call_record("k2")
    assert rec is not None
    assert rec.updated_at == 99.0
    assert kinds(store) == ["decision", "decision"]

    # A batch whose keys all reserved already replays; a partly new batch says so.
    assert store.reserve_many([("k1", [budget(3.0)]), ("k2", [budget(3.0)])]).replay
    res = store.reserve_many([("k1", [budget(3.0)]), ("k9", [exposure("a")])])
    assert res.ok
    assert res.replay
    assert store.counters() == {budget(1).key: 10.0, exposure("a").key: 2.0}


# ------------------------------------------------------------------ start / in doubt


def test_start_runs_a_call_once(store: Store) -> None:
    assert store.reserve("k1", [budget(1.0)]).ok
    assert store.start("k1", audit=event("execution.started", "k1", "k1:started"))
    assert not store.start("k1", audit=event("execution.started", "k1", "k1:started"))
    store.finish("k1", ok=True)
    assert not store.start("k1")
    assert kinds(store) == ["execution.started"]


def test_start_without_a_reservation_records_a_started_call(store: Store) -> None:
    assert store.start("free")
    rec = store.call_record("free")
    assert rec is not None
    assert rec.state == "started"
    assert rec.charges == ()
    assert not store.start("free")


def test_start_after_release_or_failure_is_refused(store: Store) -> None:
    assert store.reserve("k1", []).ok
    store.release("k1")
    assert not store.start("k1")
    assert store.reserve("k2", []).ok
    store.finish("k2", ok=False)
    assert not store.start("k2")


def test_in_doubt_lists_calls_that_started_and_never_ended(store: Store) -> None:
    for key in ("a", "b", "c", "d"):
        assert store.reserve(key, [budget(1.0)]).ok
    assert store.start("a")
    assert store.start("b")
    assert store.start("c")
    store.finish("b", ok=True)
    store.release("c")
    doubt = store.in_doubt()
    assert [r.key for r in doubt] == ["a"]
    assert doubt[0].state == "started"
    assert doubt[0].charges == (budget(1.0),)


def test_open_calls_lists_what_holds_or_runs_oldest_first(store: Store) -> None:
    for key in ("a", "b", "c", "d", "e"):
        assert store.reserve(key, [budget(1.0)]).ok
    assert store.start("b")
    assert store.start("c")
    store.finish("c", ok=True)
    store.release("d")
    assert store.start("e")
    store.finish("e", ok=False)
    opened = store.open_calls()
    assert [(r.key, r.state) for r in opened] == [("a", "reserved"), ("b", "started")]
    assert opened[0].updated_at <= opened[1].updated_at
    assert opened[0].charges == (budget(1.0),)


# ------------------------------------------------------------------ snapshot


def test_snapshot_reads_everything_the_engine_needs(store: Store) -> None:
    store.set_level("workflow=w", 2, by="ana", reason="gate passed")
    store.set_kill_switch(Scope(region="eu"), True, by="ops", reason="incident")
    store.set_kill_switch(Scope(agent="a", channel="sms"), True, by="ops", reason="spam")
    store.set_kill_switch(Scope(agent="a", channel="sms"), False, by="ops", reason="fixed")
    store.set_kill_switch(Scope(channel="email"), True, by="ops", reason="bounces")
    store.set_kill_switch(Scope(region="eu"), True, by="ops", reason="still on")  # keeps its place
    assert store.reserve("k1", [budget(2.5)], now=1000.0).ok

    snap = store.snapshot(
        dial_key="workflow=w", counter_keys=[budget(1).key, "budget:none@0"], call_key="k1"
    )
    assert snap.level == 2
    assert snap.kill_switches == (Scope(region="eu"), Scope(channel="email"))  # engaged first
    assert snap.used == {budget(1).key: 2.5, "budget:none@0": 0.0}
    assert snap.call is not None
    assert snap.call.state == "reserved"
    assert snap.call.charges == (budget(2.5),)
    assert snap.call.updated_at == 1000.0

    empty = store.snapshot(dial_key="workflow=other", counter_keys=[], call_key="k2")
    assert empty.level is None
    assert empty.used == {}
    assert empty.call is None


def test_counters_filter_by_prefix(store: Store) -> None:
    assert store.reserve("k1", [budget(1.0), budget(2.0, name="weekly"), exposure("a")]).ok
    assert set(store.counters()) == {budget(1).key, budget(1, name="weekly").key, exposure("a").key}
    assert store.counters("budget:weekly") == {budget(1, name="weekly").key: 2.0}
    assert store.counters("nothing") == {}


# ------------------------------------------------------------------ level dial


def test_levels_and_their_history(store: Store) -> None:
    assert store.get_level("workflow=w") is None
    first = store.set_level("workflow=w", 1, by="ana", reason="start")
    assert first.old_level is None
    second = store.set_level(
        "workflow=w", 2, by="bo", reason="gate passed", evidence={"success": 0.97, "n": 400}
    )
    assert second.old_level == 1
    store.set_level("region=eu", 0, by="ops", reason="pause")
    assert store.get_level("workflow=w") == 2
    assert store.get_level("region=eu") == 0

    history = store.level_history("workflow=w")
    assert [(c.old_level, c.new_level, c.by, c.reason) for c in history] == [
        (None, 1, "ana", "start"),
        (1, 2, "bo", "gate passed"),
    ]
    assert history[1].evidence == {"success": 0.97, "n": 400}
    assert [c.scope_key for c in store.level_history()] == ["workflow=w", "workflow=w", "region=eu"]

    records = store.audit_records()
    assert [r.kind for r in records] == ["level.changed"] * 3
    assert records[1].data == {
        "scope": "workflow=w",
        "old": 1,
        "new": 2,
        "by": "bo",
        "reason": "gate passed",
        "evidence": {"success": 0.97, "n": 400},
    }


# ------------------------------------------------------------------ kill-switches


def test_kill_switches(store: Store) -> None:
    eu = Scope(region="eu", workflow="newsletter")
    switch = store.set_kill_switch(eu, True, by="ops", reason="complaints")
    assert switch.scope == eu
    assert switch.engaged
    store.set_kill_switch(Scope(), True, by="ops", reason="all stop")
    store.set_kill_switch(Scope(), False, by="ops", reason="resume")

    switches = store.kill_switches()
    assert [(s.scope, s.engaged, s.by, s.reason) for s in switches] == [
        (eu, True, "ops", "complaints"),
        (Scope(), False, "ops", "resume"),
    ]
    snap = store.snapshot(dial_key="global", counter_keys=[], call_key="x")
    assert snap.kill_switches == (eu,)

    records = store.audit_records()
    assert [r.kind for r in records] == [
        "kill_switch.engaged",
        "kill_switch.engaged",
        "kill_switch.released",
    ]
    assert records[0].data == {
        "scope": "region=eu,workflow=newsletter",
        "by": "ops",
        "reason": "complaints",
    }


# ------------------------------------------------------------------ packs


def test_packs_save_activate_rollback(store: Store) -> None:
    assert store.active_pack() is None
    v1 = store.save_pack("marketing", "1", "d1", "name: marketing\nversion: 1\n", by="ana")
    assert not v1.active
    assert store.save_pack("marketing", "1", "d1", "ignored", by="bo").source == v1.source
    with pytest.raises(ConfigurationError, match="already stored with different content"):
        store.save_pack("marketing", "1", "other-digest", "x", by="bo")
    assert store.activate_pack("marketing", "1", by="ana", reason="first").active
    store.save_pack("marketing", "2", "d2", "name: marketing\nversion: 2\n", by="ana")
    store.save_pack("sales", "1", "s1", "name: sales\n", by="ana")
    assert store.activate_pack("marketing", "2", by="ana").version == "2"

    def active() -> list[tuple[str, str]]:
        return [(p.name, p.version) for p in store.pack_versions() if p.active]

    assert active() == [("marketing", "2")]
    active_pack = store.active_pack()
    assert active_pack is not None
    assert (active_pack.version, active_pack.digest, active_pack.applied_by) == ("2", "d2", "ana")

    store.activate_pack("marketing", "1", by="bo", reason="rollback")
    assert active() == [("marketing", "1")]
    activations = [r for r in store.audit_records() if r.kind == "pack.activated"]
    again = store.activate_pack("marketing", "1", by="cy", reason="deployed again")
    assert (again.version, again.active) == ("1", True)
    assert [r for r in store.audit_records() if r.kind == "pack.activated"] == activations
    with pytest.raises(ConfigurationError, match="no stored version 3"):
        store.activate_pack("marketing", "3", by="bo")
    assert active() == [("marketing", "1")]

    assert [p.version for p in store.pack_versions("marketing")] == ["1", "2"]
    assert [(p.name, p.version) for p in store.pack_versions()] == [
        ("marketing", "1"),
        ("marketing", "2"),
        ("sales", "1"),
    ]
    assert kinds(store) == [
        "pack.saved",
        "pack.activated",
        "pack.saved",
        "pack.saved",
        "pack.activated",
        "pack.activated",
    ]
    assert store.audit_records()[-1].data == {
        "name": "marketing",
        "version": "1",
        "by": "bo",
        "reason": "rollback",
    }


# ------------------------------------------------------------------ outcomes


def test_outcomes(store: Store) -> None:
    store.record_outcome(Outcome("c1", "agent", "reply_rate", 0.25, 100.0, "workflow=w"))
    store.record_outcome(Outcome("c2", "control", "reply_rate", 0.5, 200.0))
    store.record_outcome(Outcome("c1", "agent", "revenue", 120.0, 300.0, "global", 2, "7"))
    assert [o.entity for o in store.outcomes()] == ["c1", "c2", "c1"]
    assert [(o.level, o.pack_version) for o in store.outcomes()] == [
        (None, None),
        (None, None),
        (2, "7"),
    ]
    assert store.outcomes(metric="reply_rate", since=150.0) == [
        Outcome("c2", "control", "reply_rate", 0.5, 200.0, "global")
    ]
    assert store.outcomes(metric="revenue")[0].value == 120.0
    assert store.outcomes()[0].scope_key == "workflow=w"
    records = store.audit_records()
    assert [r.kind for r in records] == ["outcome"] * 3
    assert records[0].data == {
        "entity": "c1",
        "cohort": "agent",
        "metric": "reply_rate",
        "value": 0.25,
        "scope": "workflow=w",
        "level": None,
        "pack_version": None,
    }
    assert (records[2].data["level"], records[2].data["pack_version"]) == (2, "7")


def test_reserve_can_mark_the_call_started_in_the_same_step(store: Store) -> None:
    started = event("execution.started", "k1", "k1:started")
    res = store.reserve(
        "k1", [budget(4.0), exposure("c1")], audit=event("decision", "k1", "k1:d"), start=started
    )
    assert (res.ok, res.started, res.replay) == (True, True, False)
    record = store.call_record("k1")
    assert record is not None
    assert record.state == "started"
    assert [r.key for r in store.in_doubt()] == ["k1"]  # running: in doubt if it crashes now
    assert store.start("k1") is False  # never started twice
    again = store.reserve("k1", [budget(4.0)], start=started)
    assert (again.ok, again.replay, again.started) == (True, True, False)
    assert kinds(store) == ["decision", "execution.started"]

    refused = store.reserve("k2", [budget(7.0)], start=event("execution.started", "k2", "k2:s"))
    assert (refused.ok, refused.started) == (False, False)
    assert store.call_record("k2") is None

    store.finish("k1", ok=True, actual_cost=3.0)
    assert store.counters("budget:") == {budget(0).key: 3.0}
    assert store.in_doubt() == []
    assert store.verify_audit().ok


# ------------------------------------------------------------------ audit log


def test_find_audit_returns_the_record_kept_under_a_dedupe_string(store: Store) -> None:
    store.append_audit(event("note", None, None, text="before"))
    store.append_audit(event("decision", "k1", "k1:decision", decision="require_approval"))
    store.append_audit(event("decision", "k1", "k1:decision", decision="allow"))  # dropped
    assert store.reserve("k2", [budget(1.0)], audit=event("decision", "k2", "k2:decision")).ok

    first = store.find_audit("k1:decision")
    assert first is not None
    assert (first.seq, first.kind, first.call_key) == (2, "decision", "k1")
    assert first.data == {"decision": "require_approval"}  # the first one, not the replay
    reserved = store.find_audit("k2:decision")
    assert reserved is not None
    assert reserved.seq == 3
    assert store.find_audit("k3:decision") is None
    assert store.verify_audit().ok


def test_audit_chain_numbers_links_and_dedupes(store: Store) -> None:
    store.append_audit(event("decision", "k1", "k1:decision", decision="allow"))
    assert store.append_audit(event("decision", "k1", "k1:decision", decision="deny")) is None
    store.append_audit(event("note", None, None, text="no key"))
    store.append_audit(event("note", None, None, text="no key"))  # no dedupe: both kept
    assert store.reserve("k2", [budget(1.0)], audit=event("decision", "k2", "k2:decision")).ok
    store.start("k2", audit=event("execution.started", "k2", "k1:decision"))  # a duplicate
    store.finish("k2", ok=True, audit=event("execution.finished", "k2", "k2:end"))

    records = store.audit_records()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.kind for r in records] == [
        "decision",
        "note",
        "note",
        "decision",
        "execution.finished",
    ]
    assert records[0].data == {"decision": "allow"}
    assert records[0].call_key == "k1"
    assert records[1].call_key is None
    assert records[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
        assert after.ts >= before.ts - 1.0
    assert verify_chain(records).ok
    result = store.verify_audit()
    assert result.ok
    assert result.checked == 5

    assert [r.seq for r in store.audit_records(after=2)] == [3, 4, 5]
    assert [r.seq for r in store.audit_records(after=1, limit=2)] == [2, 3]
    assert store.audit_records(after=5) == []


def test_one_write_appends_several_records_skipping_a_duplicate_in_between(store: Store) -> None:
    store.append_audit(event("decision", "k0", "k0:decision"))
    res = store.reserve_many(
        [("k1", [budget(1.0)]), ("k2", [budget(1.0)])],
        audit=[
            event("decision", "k1", "k1:decision"),
            event("decision", "k0", "k0:decision"),  # recorded before: dropped
            event("decision", "k2", "k2:decision"),
        ],
    )
    assert res.ok
    started = store.reserve(
        "k3",
        [budget(1.0)],
        audit=event("decision", "k3", "k2:decision"),
        start=event("execution.started", "k3", "k3:started"),
    )
    assert started.started

    records = store.audit_records()
    assert [(r.seq, r.call_key) for r in records] == [(1, "k0"), (2, "k1"), (3, "k2"), (4, "k3")]
    assert [r.kind for r in records][-1] == "execution.started"
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert store.verify_audit().ok  # the head names record 4
    store.append_audit(event("note", None, None))
    assert [r.seq for r in store.audit_records(after=4)] == [5]
    assert store.verify_audit().ok


def test_audit_data_round_trips_and_verifies(store: Store) -> None:
    data: dict[str, Any] = {
        "text": 'Grüße — 你好 \U0001f600 "quoted" \\ back',
        "floats": [0.1, 1e-7, 1e300, -0.0, 3.0],
        "nested": {"b": [1, {"c": None}], "a": True},
        "big": 2**62,
    }
    store.append_audit(AuditEvent("odd", data, "k\u00e9y"))
    store.append_audit(AuditEvent("tuple", {"t": (1, 2)}))
    store.append_audit(AuditEvent("empty", {}))
    records = store.audit_records()
    assert records[0].data == data
    assert records[0].call_key == "k\u00e9y"
    assert records[1].data == {"t": [1, 2]} or records[1].data == {"t": (1, 2)}
    assert store.verify_audit().ok
    assert verify_chain(records).ok


def test_audit_data_with_non_string_keys_still_verifies(store: Store) -> None:
    store.append_audit(AuditEvent("ints", {"m": {2: "b", 10: "a"}}))
    assert store.verify_audit().ok
    assert verify_chain(store.audit_records()).ok


class _Built(LazyData):
    """Audit data built on first read, as a decision's is; counts its builds."""

    __slots__ = ("builds", "value")

    def __init__(self, value: dict[str, Any]) -> None:
        super().__init__()
        self.value = value
        self.builds = 0

    def build(self) -> dict[str, Any]:
        self.builds += 1
        return dict(self.value)


def test_lazily_built_audit_data_is_stored_as_if_it_were_a_dict(store: Store) -> None:
    data: dict[str, Any] = {"z": 1.5, "a": [{"y": None, "b": "\u00e9"}], "m": "ok"}
    lazy = _Built(data)
    store.append_audit(AuditEvent("decision", lazy, "k1", "k1:decision"))
    store.append_audit(AuditEvent("decision", dict(data), "k2", "k2:decision"))
    first, second = store.audit_records()
    assert first.data == second.data == data
    assert lazy.builds == 1  # built once, however often the store reads it
    assert store.verify_audit().ok
    assert verify_chain([first, second]).ok


def test_empty_log_verifies(store: Store) -> None:
    result = store.verify_audit()
    assert result.ok
    assert result.checked == 0
    assert store.audit_records() == []


# ------------------------------------------------------------------ threads


def test_threads_never_overspend(store: Store) -> None:
    """16 threads x 10 attempts at a budget of 50: exactly 50 reservations succeed."""
    oks: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(10):
            key = f"t{n}-{i}"
            res = store.reserve(
                key, [budget(1.0, limit=50.0)], audit=event("decision", key, f"{key}:d")
            )
            with lock:
                oks.append(res.ok)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert oks.count(True) == 50
    assert store.counters() == {budget(1).key: 50.0}
    assert len(store.audit_records()) == 50
    assert store.verify_audit().ok


def test_threads_charging_many_counters_in_any_order_never_deadlock(store: Store) -> None:
    """Calls that charge overlapping sets of counters, listed in random orders, some of them
    new: no deadlock, no error, and every counter ends where its successes put it."""
    counters = [exposure(f"e{i}", limit=40.0) for i in range(6)]
    errors: list[BaseException] = []
    oks: list[tuple[str, list[Charge]]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        rng = random.Random(n)
        barrier.wait()
        try:
            for i in range(25):
                charges = rng.sample(counters, rng.randint(1, 4))
                if rng.random() < 0.3:
                    items = [(f"m{n}-{i}-a", charges[:1]), (f"m{n}-{i}-b", charges[1:])]
                    res = store.reserve_many(items)
                else:
                    items = [(f"m{n}-{i}", charges)]
                    res = store.reserve(items[0][0], charges)
                if res.ok:
                    with lock:
                        oks.extend((key, list(ch)) for key, ch in items)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected: dict[str, float] = {}
    for _key, charges in oks:
        for c in charges:
            expected[c.key] = expected.get(c.key, 0.0) + 1.0
    assert store.counters() == expected
    assert all(v <= 40.0 for v in expected.values())


# ------------------------------------------------------------------ durable backends


def test_a_reopened_store_has_everything_and_the_chain_continues(
    durable_url: str, open_api: StoreFactory
) -> None:
    first = open_api(durable_url)
    assert first.reserve("k1", [budget(3.0)], audit=event("decision", "k1", "k1:d")).ok
    assert first.start("k1")
    first.set_level("workflow=w", 1, by="ana", reason="r")
    first.set_kill_switch(Scope(region="eu"), True, by="ops", reason="r")
    first.save_pack("p", "1", "d", "src", by="ana")
    first.activate_pack("p", "1", by="ana")
    first.record_outcome(Outcome("e", "agent", "m", 1.0, 5.0))
    first.close()

    again = open_api(durable_url)
    assert again.counters() == {budget(1).key: 3.0}
    assert [r.key for r in again.in_doubt()] == ["k1"]
    assert again.get_level("workflow=w") == 1
    assert [s.scope for s in again.kill_switches()] == [Scope(region="eu")]
    active = again.active_pack()
    assert active is not None
    assert active.version == "1"
    assert len(again.outcomes()) == 1
    assert again.reserve("k1", [budget(3.0)]).replay
    again.append_audit(event("after.reopen"))
    assert [r.seq for r in again.audit_records()] == [1, 2, 3, 4, 5, 6, 7]
    assert again.verify_audit().ok


def test_two_handles_on_one_database_see_each_other(
    durable_url: str, open_api: StoreFactory
) -> None:
    a = open_api(durable_url)
    b = open_api(durable_url)
    a.set_kill_switch(Scope(agent="mailer"), True, by="ops", reason="incident")
    assert b.snapshot(dial_key="x", counter_keys=[], call_key="k").kill_switches == (
        Scope(agent="mailer"),
    )
    assert a.reserve("k1", [budget(6.0)]).ok
    assert not b.reserve("k2", [budget(6.0)]).ok
    assert b.reserve("k1", [budget(6.0)]).replay
    assert a.start("k1")
    assert not b.start("k1")
    b.append_audit(event("from.b"))
    assert [r.kind for r in a.audit_records()] == ["kill_switch.engaged", "from.b"]


def test_append_returns_the_record(durable: Store) -> None:
    first = durable.append_audit(event("one", "k", "d1", x=1))
    second = durable.append_audit(event("two"))
    assert first is not None
    assert second is not None
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert durable.audit_records() == [first, second]
    assert durable.append_audit(event("one again", "k", "d1")) is None


def test_threads_with_their_own_connections_close_cleanly(durable: Store) -> None:
    def work() -> None:
        durable.append_audit(event("thread"))

    for _ in range(20):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert len(durable.audit_records()) == 20
    assert durable.verify_audit().ok


# ------------------------------------------------------------------ same as MemoryStore


def _random_ops(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    keys = [f"k{i}" for i in range(12)]
    for _ in range(n):
        roll = rng.random()
        key = rng.choice(keys)
        if roll < 0.35:
            charges = [budget(rng.choice([0.1, 0.2, 0.7, 1.5, 2.25]), limit=6.0)]
            for entity in rng.sample(["a", "b", "c"], rng.randint(0, 2)):
                charges.append(exposure(entity, limit=3.0))
            ops.append(("reserve", key, charges, rng.random() < 0.1))
        elif roll < 0.45:
            other = rng.choice(keys)
            ops.append(
                ("reserve_many", [(key, [budget(0.3, limit=6.0)]), (other, [exposure("a", 3.0)])])
            )
        elif roll < 0.6:
            ops.append(("start", key))
        elif roll < 0.8:
            ok = rng.random() < 0.7
            actual = rng.choice([None, 0.05, 1.0, 3.3]) if ok else None
            ops.append(("finish", key, ok, actual))
        elif roll < 0.9:
            ops.append(("release", key))
        else:
            ops.append(("audit", key, rng.choice([None, f"{key}:x", "shared"])))
    return ops


def _apply(store: Store, op: tuple[Any, ...]) -> Any:
    name = op[0]
    if name == "reserve":
        _, key, charges, force = op
        return store.reserve(key, charges, force=force, audit=event("decision", key, f"{key}:d"))
    if name == "reserve_many":
        return store.reserve_many(op[1])
    if name == "start":
        return store.start(op[1], audit=event("started", op[1], f"{op[1]}:s"))
    if name == "finish":
        _, key, ok, actual = op
        store.finish(
            key, ok=ok, actual_cost=actual, result="r" if ok else None, audit=event("end", key)
        )
        return None
    if name == "release":
        store.release(op[1], audit=event("released", op[1]))
        return None
    return store.append_audit(event("note", op[1], op[2]))


def _state(store: Store, keys: Sequence[str]) -> tuple[Any, ...]:
    calls = []
    for key in keys:
        rec = store.call_record(key)
        calls.append(None if rec is None else (rec.state, rec.charges, rec.result))
    records: list[AuditRecord] = store.audit_records()
    return (
        store.counters(),
        calls,
        sorted(r.key for r in store.in_doubt()),
        [(r.seq, r.kind, r.call_key, dict(r.data)) for r in records],
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_behaves_exactly_like_the_memory_store(store: Store, seed: int) -> None:
    reference = MemoryStore()
    ops = _random_ops(random.Random(seed), 150)
    for op in ops:
        expected = _apply(reference, op)
        got = _apply(store, op)
        if op[0] != "audit":  # MemoryStore.append_audit chains lazily and returns None
            assert got == expected, op
    keys = [f"k{i}" for i in range(12)]
    expected_state = _state(reference, keys)
    got_state = _state(store, keys)
    assert got_state[0] == expected_state[0]  # counters, to the last bit
    assert all(math.isfinite(v) for v in got_state[0].values())
    assert got_state[1:] == expected_state[1:]
    assert store.verify_audit().ok


def _use_after_fork(url: str, out: Any) -> None:
    """Runs in a forked child; uses the store object it inherited."""
    try:
        store = _FORKED[url]
        store.append_audit(event("from.child"))
        ok = store.reserve("child", [budget(1.0)]).ok
        store.close()  # closes the child's connections, never the parent's
        out.put(ok)
    except BaseException as exc:
        out.put(repr(exc))


_FORKED: dict[str, Store] = {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(
    durable_url: str, open_stores: StoreFactory
) -> None:
    import multiprocessing

    store = open_stores(durable_url)
    store.append_audit(event("from.parent"))  # the parent's connection exists before the fork
    _FORKED[durable_url] = store
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_use_after_fork, args=(durable_url, out))
    child.start()
    try:
        assert out.get(timeout=60) is True
    finally:
        child.join(timeout=30)
        del _FORKED[durable_url]
    store.append_audit(event("parent.again"))  # the parent's connection still works
    assert [r.kind for r in store.audit_records()] == ["from.parent", "from.child", "parent.again"]
    assert store.counters() == {budget(1).key: 1.0}
    assert store.verify_audit().ok


# ------------------------------------------------------------------ memory store only


def test_the_memory_store_forgets_ephemeral_calls_once_they_end() -> None:
    # Keys starting with "~" are never replayed (the guard's keys for calls made outside a
    # graph): the memory store drops their records when they end, and keeps their audit.
    store = MemoryStore()
    for key, end in (("~a-1", "finish"), ("~a-2", "fail"), ("~a-3", "release")):
        assert store.reserve(key, [budget(1.0)], audit=event("decision", key)).ok
        assert store.call_record(key) is not None
        if end != "release":
            assert store.start(key, audit=event("execution.started", key))
            assert [r.key for r in store.in_doubt()] == [key]  # running: kept, in doubt
        if end == "release":
            store.release(key, audit=event("approval.rejected", key))
        else:
            store.finish(key, ok=end == "finish", audit=event(f"execution.{end}", key))
        assert store.call_record(key) is None
        assert store.in_doubt() == []
    assert store.counters() == {budget(1).key: 1.0}  # only the finished call's charge
    assert kinds(store) == [
        "decision",
        "execution.started",
        "execution.finish",
        "decision",
        "execution.started",
        "execution.fail",
        "decision",
        "approval.rejected",
    ]
    assert store.verify_audit().ok

    # A call that never ended stays in doubt; stable keys are remembered as before.
    assert store.start("~a-4")
    assert [r.key for r in store.in_doubt()] == ["~a-4"]
    assert store.reserve("k1", [budget(1.0)]).ok
    store.finish("k1", ok=True)
    rec = store.call_record("k1")
    assert rec is not None
    assert rec.state == "finished"
    assert store.reserve("k1", [budget(1.0)]).replay
