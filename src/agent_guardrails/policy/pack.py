"""Policy packs: the versioned YAML document that says what each scope's agent may do.

A pack has a ``name`` and ``version``; ``actions`` (risk, sensitivity, kind, cost, exposure
cap, validators, approval rule, fail-open flag); ``levels`` per scope with promotion
ceilings; ``budgets`` per scope and window; and ``gates`` for promotions (stored here,
evaluated by the scorecard). See ``examples/marketing_pack.yaml`` for a complete one.

Scope precedence: for levels, the **most specific** matching rule wins (the one naming the
most dimensions). Two level rules that could match the same call with the same specificity
are an error at load time unless a rule for their combined scope exists. Budgets **stack**:
every budget whose scope matches a call (and whose ``actions`` list includes the call's
action, or is empty) must have room for it.

>>> pack = PolicyPack.from_yaml('''
... name: tiny
... version: 1
... actions:
...   email.send: {risk: medium, sensitive: true}
... levels:
...   - {scope: {workflow: newsletter}, level: execute, ceiling: optimize}
... ''')
>>> pack.level_rule(Scope(workflow="newsletter", region="eu")).level.name
'EXECUTE'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from agent_guardrails.errors import ConfigurationError
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack_rules import (
    MAX_APPROVAL_SECONDS,
    MODEL_ACTION,
    ActionPolicy,
    ApprovalRule,
    BudgetRule,
    CostRule,
    Defaults,
    ExposureRule,
    GateRule,
    KillSwitchPolicy,
    LevelRule,
    ModelPrice,
    PrivacyPolicy,
    _Model,
)
from agent_guardrails.policy.scope import Scope
from agent_guardrails.policy.validators import CompiledValidator, ValidatorRegistry

__all__ = [
    "MAX_APPROVAL_SECONDS",
    "MODEL_ACTION",
    "ActionPolicy",
    "ApprovalRule",
    "BudgetRule",
    "CostRule",
    "ExposureRule",
    "GateRule",
    "LevelRule",
    "PolicyPack",
]


class PolicyPack(_Model):
    """A validated, versioned policy pack. Load with :meth:`from_yaml`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(min_length=1)
    description: str = ""
    defaults: Defaults = Defaults()
    actions: dict[str, ActionPolicy] = Field(default_factory=dict)
    levels: tuple[LevelRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()
    gates: tuple[GateRule, ...] = ()
    model_prices: dict[str, ModelPrice] = Field(default_factory=dict)
    kill_switch: KillSwitchPolicy = KillSwitchPolicy()
    privacy: PrivacyPolicy = PrivacyPolicy()

    _validators: dict[str, tuple[CompiledValidator, ...]] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)
    _registry: ValidatorRegistry | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _default_currency(cls, data: object) -> object:
        """Costs, budgets and model prices without a currency take ``defaults.currency``."""
        if not isinstance(data, Mapping):
            return data
        defaults = data.get("defaults")
        currency = defaults.get("currency") if isinstance(defaults, Mapping) else None
        if not isinstance(currency, str):
            return data
        out = dict(data)

        def fill(item: object) -> object:
            if isinstance(item, int | float) and not isinstance(item, bool):
                return {"amount": item, "currency": currency}
            if isinstance(item, Mapping) and "currency" not in item:
                return {**item, "currency": currency}
            return item

        actions = out.get("actions")
        if isinstance(actions, Mapping):
            out["actions"] = {
                name: {**a, "cost": fill(a["cost"])}
                if isinstance(a, Mapping) and a.get("cost") is not None
                else a
                for name, a in actions.items()
            }
        budgets = out.get("budgets")
        if isinstance(budgets, list):
            out["budgets"] = [fill(b) for b in budgets]
        prices = out.get("model_prices")
        if isinstance(prices, Mapping):
            out["model_prices"] = {k: fill(v) for k, v in prices.items()}
        return out

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        if isinstance(v, float):  # YAML reads 1.10 as the number 1.1: 1.10 and 1.1 collide
            raise ValueError(
                f'the version {v!r} was read as a number: quote it (version: "{v}") so '
                "that 1.10 and 1.1 stay two versions"
            )
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("actions")
    @classmethod
    def _action_names(cls, v: dict[str, ActionPolicy]) -> dict[str, ActionPolicy]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*", name):
                raise ValueError(
                    f"action name {name!r}: use dotted lowercase words such as 'email.send'"
                )
        return v

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(
        cls, source: str | Path, *, registry: ValidatorRegistry | None = None
    ) -> PolicyPack:
        """Load and validate a pack from a file path or from YAML text.

        A ``Path``, or a one-line string naming an existing file or ending in ``.yaml`` /
        ``.yml``, is read as a file; any other string is YAML text. Raises
        :class:`~agent_guardrails.errors.PolicyError` listing every problem with its file,
        line and field.
        """
        from agent_guardrails.policy.loader import load_pack

        return load_pack(source, registry=registry)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, registry: ValidatorRegistry | None = None
    ) -> PolicyPack:
        """Validate a pack from an already-parsed mapping (no line numbers in errors)."""
        from agent_guardrails.policy.loader import load_mapping

        return load_mapping(data, registry=registry)

    def to_yaml(self) -> str:
        """The pack as YAML text (what the store keeps for each version)."""
        if self._source is not None:
            return self._source
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)

    @cached_property
    def digest(self) -> str:
        """A SHA-256 of the pack's normalised content, to tell versions apart."""
        import hashlib
        import json

        body = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def registry(self) -> ValidatorRegistry | None:
        """The validator registry the pack was loaded with (``None``: the default one); a
        version of the pack reloaded from the store is loaded with the same one."""
        return self._registry

    # ------------------------------------------------------------------ lookups

    def action(self, name: str) -> ActionPolicy | None:
        return self.actions.get(name)

    @cached_property
    def lookup(self) -> PackIndex:
        """Precomputed lookups for the hot path (built once per pack object)."""
        return PackIndex(self, self._validators)

    def validators_for(self, action: str) -> tuple[CompiledValidator, ...]:
        return self.lookup.validators.get(action, ())

    def level_rule(self, scope: Scope) -> LevelRule | None:
        """The most specific level rule matching ``scope``, or ``None`` (defaults apply)."""
        return self.lookup.level_rule(scope)

    def budgets_for(self, action: str, scope: Scope) -> tuple[BudgetRule, ...]:
        """Every budget that applies to ``action`` in ``scope`` (budgets stack)."""
        return self.lookup.budgets_for(action, scope)

    def ceiling_for(self, scope: Scope) -> AutonomyLevel:
        rule = self.level_rule(scope)
        return rule.max_level if rule is not None else self.defaults.ceiling

    def initial_level(self, scope: Scope) -> AutonomyLevel:
        rule = self.lookup.level_rule(scope)
        return rule.level if rule is not None else self.defaults.level

    def dial_scope(self, scope: Scope) -> Scope:
        """The scope whose level dial governs a call in ``scope``: the matching rule's."""
        rule = self.level_rule(scope)
        return rule.scope.to_scope() if rule is not None else Scope()

    def named_dial(self, scope: Scope) -> Scope:
        """:meth:`dial_scope` for an operator who names ``scope`` to move its level: a
        scope no level rule matches is refused rather than taken for the global dial (a
        typo such as ``workflow=paid_mdia`` would otherwise move every workflow's level)."""
        dial = self.dial_scope(scope)
        if scope.items() and not dial.items():
            raise ConfigurationError(
                f"no level rule of pack {self.name} v{self.version} matches {scope.key}: its "
                "calls follow the global level. Name 'global' to move that, or add a level "
                "rule for this scope in a new pack version"
            )
        return dial


class PackIndex:
    """Plain-Python lookups over a validated pack, cached per scope (bounded)."""

    __slots__ = (
        "_budget_cache",
        "_budgets",
        "_by_id",
        "_dial_cache",
        "_level_cache",
        "_levels",
        "memo",
        "validators",
    )

    _MAX_CACHED = 4096

    def __init__(
        self, pack: PolicyPack, validators: Mapping[str, tuple[CompiledValidator, ...]]
    ) -> None:
        self.validators = dict(validators)
        self._levels = [(rule.scope.to_scope(), rule) for rule in pack.levels]
        self._budgets = [(b.scope.to_scope(), b) for b in pack.budgets]
        self._level_cache: dict[Scope, LevelRule | None] = {}
        self._budget_cache: dict[tuple[str, Scope], tuple[BudgetRule, ...]] = {}
        self._dial_cache: dict[Scope, str] = {}
        # (scope, dial key, level rule) by id(scope): the guard interns its scopes, and
        # hashing a scope costs more than the rest of a lookup. Each entry keeps its scope
        # alive, so an id is not reused while its entry exists.
        self._by_id: dict[int, tuple[Scope, str, LevelRule | None]] = {}
        # Values the engine derives from this pack on the hot path (per-action plans, shared
        # charge tuples); the engine owns the keys and bounds the size.
        self.memo: dict[Any, Any] = {}

    def dial_key(self, scope: Scope) -> str:
        """The store key of the level dial governing ``scope`` (its level rule's scope)."""
        hit = self._by_id.get(id(scope))
        if hit is not None and hit[0] is scope:
            return hit[1]
        rule = self.level_rule(scope)
        try:
            key = self._dial_cache[scope]
        except KeyError:
            key = rule.scope.to_scope().key if rule is not None else Scope().key
            if len(self._dial_cache) < self._MAX_CACHED:
                self._dial_cache[scope] = key
        if len(self._by_id) < self._MAX_CACHED:
            self._by_id[id(scope)] = (scope, key, rule)
        return key

    def level_rule(self, scope: Scope) -> LevelRule | None:
        hit = self._by_id.get(id(scope))
        if hit is not None and hit[0] is scope:
            return hit[2]
        try:
            return self._level_cache[scope]
        except KeyError:
            pass
        best: LevelRule | None = None
        best_n = -1
        for rule_scope, rule in self._levels:
            if rule_scope.matches(scope) and rule_scope.specificity > best_n:
                best, best_n = rule, rule_scope.specificity
        if len(self._level_cache) < self._MAX_CACHED:
            self._level_cache[scope] = best
        return best

    def budgets_for(self, action: str, scope: Scope) -> tuple[BudgetRule, ...]:
        key = (action, scope)
        try:
            return self._budget_cache[key]
        except KeyError:
            pass
        found = tuple(
            b
            for rule_scope, b in self._budgets
            if rule_scope.matches(scope) and (not b.actions or action in b.actions)
        )
        if len(self._budget_cache) < self._MAX_CACHED:
            self._budget_cache[key] = found
        return found
