"""The contract is split by concern; every backend is every one of the protocols."""

from __future__ import annotations

import inspect

from agent_guardrails.store import AuditLog, Dials, Ledger, OutcomeLog, PackRegistry, Store, base

CONCERNS: dict[type[object], set[str]] = {
    Ledger: {
        "snapshot",
        "reserve",
        "reserve_many",
        "start",
        "finish",
        "release",
        "call_record",
        "in_doubt",
        "counters",
    },
    Dials: {"get_level", "set_level", "level_history", "set_kill_switch", "kill_switches"},
    PackRegistry: {"save_pack", "activate_pack", "active_pack", "pack_versions"},
    AuditLog: {"append_audit", "audit_records", "find_audit", "verify_audit"},
    OutcomeLog: {"record_outcome", "outcomes"},
}


def _methods(protocol: type) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def test_each_protocol_has_exactly_its_concern() -> None:
    for protocol, names in CONCERNS.items():
        assert _methods(protocol) == names, protocol.__name__
    assert _methods(Store) == {"close"}
    assert Store.__annotations__ == {"url": "str"}
    assert all(issubclass(Store, protocol) for protocol in CONCERNS)
    for name in ("Ledger", "Dials", "PackRegistry", "AuditLog", "OutcomeLog", "Store"):
        assert name in base.__all__


def test_every_backend_is_every_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    for protocol in CONCERNS:
        assert isinstance(store, protocol), protocol.__name__


def test_something_that_is_not_a_store_is_not_one() -> None:
    class OnlyLevels:
        def get_level(self, dial_key: str) -> int | None:
            return None

    assert not isinstance(OnlyLevels(), Store)
    assert not isinstance(OnlyLevels(), Dials)
