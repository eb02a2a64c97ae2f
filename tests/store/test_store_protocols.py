"""The contract is split by concern; every backend is every one of the protocols, and of
their async twins (``a<name>`` for every method, with the same parameters)."""

from __future__ import annotations

import inspect

from agent_guardrails.store import (
    AsyncAuditLog,
    AsyncDials,
    AsyncLedger,
    AsyncOutcomeLog,
    AsyncPackRegistry,
    AsyncStore,
    AuditLog,
    Dials,
    Ledger,
    OutcomeLog,
    PackRegistry,
    Store,
    async_protocols,
    base,
)
from tests.store.store_helpers import StoreFactory

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
        "open_calls",
        "counters",
    },
    Dials: {"get_level", "set_level", "level_history", "set_kill_switch", "kill_switches"},
    PackRegistry: {"save_pack", "activate_pack", "active_pack", "pack_versions"},
    AuditLog: {"append_audit", "audit_records", "find_audit", "verify_audit"},
    OutcomeLog: {"record_outcome", "outcomes"},
}


ASYNC: dict[type[object], type[object]] = {
    Ledger: AsyncLedger,
    Dials: AsyncDials,
    PackRegistry: AsyncPackRegistry,
    AuditLog: AsyncAuditLog,
    OutcomeLog: AsyncOutcomeLog,
    Store: AsyncStore,
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


def test_each_async_protocol_is_its_sync_twin_awaited() -> None:
    for sync, twin in ASYNC.items():
        assert _methods(twin) == {"a" + name for name in _methods(sync)}, twin.__name__
        for name in _methods(sync):
            method, amethod = getattr(sync, name), getattr(twin, "a" + name)
            assert inspect.iscoroutinefunction(amethod), name
            # The same parameters (names, kinds, defaults) and the same result.
            assert inspect.signature(amethod) == inspect.signature(method), name
    assert AsyncStore.__annotations__ == {"url": "str"}
    assert all(twin in AsyncStore.__mro__ for twin in ASYNC.values())
    for twin in ASYNC.values():
        assert twin.__name__ in async_protocols.__all__


def test_every_backend_is_every_protocol(store_url: str, open_stores: StoreFactory) -> None:
    store = open_stores(store_url)
    assert isinstance(store, Store)
    assert isinstance(store, AsyncStore)
    for protocol, twin in ASYNC.items():
        assert isinstance(store, protocol), protocol.__name__
        assert isinstance(store, twin), twin.__name__
    for name in _methods(Store) | set().union(*map(_methods, CONCERNS)):
        method, amethod = getattr(store, name), getattr(store, "a" + name)
        assert inspect.iscoroutinefunction(amethod), name
        assert inspect.signature(amethod) == inspect.signature(method), name


def test_something_that_is_not_a_store_is_not_one() -> None:
    class OnlyLevels:
        def get_level(self, dial_key: str) -> int | None:
            return None

    assert not isinstance(OnlyLevels(), Store)
    assert not isinstance(OnlyLevels(), Dials)
    assert not isinstance(OnlyLevels(), AsyncDials)
