"""Policy is live: every call is decided under the store's active pack version.

A pack applied or rolled back from the CLI or another process governs the next call of
every running agent, with no restart (DESIGN §3.13). The check is cheap: each call's
snapshot (one store round trip, which the call makes anyway) also reads the active pack's
digest; only when it differs from the pack in hand is the new version read from the store
and loaded (then kept, so flipping between two versions loads each once).

The pack given to ``Guardrails(pack)`` bootstraps the store: it is saved as a version, and
activated when the store has no active pack or when this version was never stored before
(deploying code with a new pack version applies it). Restarting with a version the store
already knows leaves the store's active version as it is, so a rollback made from the CLI
survives restarts. A version is known by its name and version, and is the same version when
its content is the same: an earlier release of the library may have digested the same
content differently (a field it did not have), so a digest that differs is compared by
content before it counts as a conflict, and the store's digest stays the version's name.
A stored version that cannot be loaded here (a validator this process has not registered)
fails closed: calls are refused as if the store were unavailable, with the reason in the
message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from agent_guardrails.errors import ConfigurationError, PackUnloadable, PolicyError
from agent_guardrails.pipeline.effects import Flow, StoreOp
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.store.base import PackVersion, pack_conflict

__all__ = ["LivePolicy", "stored_as"]

_KEEP = 16  # loaded versions kept, by digest


class LivePolicy:
    """The pack calls are decided under, following the store's active version."""

    __slots__ = (
        "_broken",
        "_changed",
        "_loaded",
        "_lock",
        "bootstrapped",
        "digest",
        "first",
        "pack",
    )

    def __init__(self, pack: PolicyPack, changed: Callable[[PolicyPack], None]) -> None:
        self.first = pack  # the constructor's pack, which bootstraps the store
        self.pack = pack
        self.digest = pack.digest
        self.bootstrapped = False
        self._changed = changed
        self._loaded: dict[str, PolicyPack] = {self.digest: pack}
        self._broken: dict[str, PackUnloadable] = {}  # versions that failed to load, by digest
        self._lock = threading.Lock()

    def bootstrap(self, first: PolicyPack) -> Flow[None]:
        """Save ``first`` (the constructor's pack); activate it if the store has no active
        pack or never stored this version. Raises ``StoreUnavailable``."""
        stored: list[PackVersion] = yield StoreOp("pack_versions", first.name)
        known = stored_as(first, stored)
        if known is None:
            yield StoreOp(
                "save_pack",
                first.name,
                first.version,
                first.digest,
                first.to_yaml(),
                by="guardrails",
            )
        elif known.digest != self.digest and self.pack is first:
            with self._lock:  # stored by an earlier release: the store's name for it
                self.digest = known.digest
                self._loaded[known.digest] = first
        active: PackVersion | None = yield StoreOp("active_pack")
        if active is None or known is None:
            reason = "first use" if active is None else "new version deployed"
            yield StoreOp(
                "activate_pack", first.name, first.version, by="guardrails", reason=reason
            )
            active = None
        self.bootstrapped = True
        if active is not None and active.digest != self.digest:
            self._use(self._load(active), active.digest)

    def follow(self, active: str | None) -> Flow[bool]:
        """Given the active pack's digest a snapshot read, switch to that version if it is
        not the one in hand. True when the pack changed (the caller decides again)."""
        if active == self.digest:
            return False
        if active is None:  # no active pack (someone emptied the store): keep the one in hand
            return False
        pack = self._loaded.get(active)
        if active in self._broken:  # loaded and refused before: not parsed on every call
            raise self._broken[active]
        if pack is None:
            pv: PackVersion | None = yield StoreOp("active_pack")
            if pv is None:
                return False
            pack = self._load(pv)
        self._use(pack, active)
        return True

    def _load(self, pv: PackVersion) -> PolicyPack:
        pack = self._loaded.get(pv.digest)
        if pack is not None:
            return pack
        try:
            pack = PolicyPack.from_yaml(pv.source, registry=self.pack.registry)
        except PolicyError as exc:
            broken = PackUnloadable(
                f"the store's active pack {pv.name} version {pv.version} cannot be loaded "
                f"here ({exc.problems[0] if exc.problems else exc}); register its validators "
                "in this process or roll the pack back"
            )
            with self._lock:
                self._broken[pv.digest] = broken
            raise broken from None
        with self._lock:
            if len(self._loaded) >= _KEEP:
                self._loaded.clear()
                self._loaded[self.digest] = self.pack
            self._loaded[pv.digest] = pack
        return pack

    def _use(self, pack: PolicyPack, digest: str) -> None:
        """Decide under ``pack``, stored under ``digest`` (the store's name for it)."""
        with self._lock:
            self.digest = digest
            if pack is self.pack:
                return
            self.pack = pack
        self._changed(pack)


def stored_as(pack: PolicyPack, stored: Sequence[PackVersion]) -> PackVersion | None:
    """The stored version (of ``stored``, the versions of ``pack``'s name) that is ``pack``:
    the same version, with the same content. ``None`` when its version is not stored.
    Raises ``ConfigurationError`` when that version is stored with other content.

    The same content may have another digest: a digest is taken over the pack as this
    release of the library normalises it (every field, defaults included), so an earlier
    release that lacked a field digested the same YAML differently. Such a version is
    compared by content, read again by this release."""
    for version in stored:
        if version.version != pack.version:
            continue
        if version.digest == pack.digest:
            return version
        try:
            again = PolicyPack.from_yaml(version.source, registry=pack.registry)
        except PolicyError as exc:
            raise ConfigurationError(
                f"pack {pack.name} version {pack.version} is already stored, and the stored "
                f"copy cannot be read here ({exc.problems[0] if exc.problems else exc}) to "
                "compare it with this one; give this content a new version"
            ) from None
        if again.digest != pack.digest:
            raise pack_conflict(pack.name, pack.version)
        return version
    return None
