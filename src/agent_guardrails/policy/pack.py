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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.scope import DIMENSIONS, Scope, check_scope_value
from agent_guardrails.policy.validators import CompiledValidator, ValidatorRegistry
from agent_guardrails.policy.windows import parse_duration, validate_window

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

MAX_APPROVAL_SECONDS = 30 * 86_400
"""The longest an approval request may wait (``timeout``) or be expected to take (``sla``)."""

MODEL_ACTION = "model.call"
"""The action name budgets use for model spend (``budgets[].actions: [model.call]``)."""

Level = Annotated[
    AutonomyLevel,
    BeforeValidator(AutonomyLevel.parse),
    PlainSerializer(lambda v: v.name.lower(), return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 3},
                {
                    "type": "string",
                    "enum": [
                        "assist",
                        "execute",
                        "optimize",
                        "orchestrate",
                        "L0",
                        "L1",
                        "L2",
                        "L3",
                    ],
                },
            ],
            "description": "Autonomy level: 0 assist, 1 execute, 2 optimize, 3 orchestrate",
        }
    ),
]


def _duration(value: object) -> float:
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?[smhdw]$"},
            ],
            "description": "seconds, or a duration such as 30m, 24h, 7d",
        }
    ),
]

Window = Annotated[
    str,
    BeforeValidator(lambda v: validate_window(str(v)) if isinstance(v, str | int) else v),
    WithJsonSchema(
        {
            "type": "string",
            "description": "total, hour, day, week, month, or fixed buckets such as 6h, 7d",
            "examples": ["day", "week", "month", "total", "7d"],
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class ScopeModel(_Model):
    """The dimensions a rule constrains; leave a dimension out to match any value."""

    agent: str | None = None
    workflow: str | None = None
    segment: str | None = None
    channel: str | None = None
    region: str | None = None

    @field_validator(*DIMENSIONS, mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator(*DIMENSIONS)
    @classmethod
    def _visible(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v is None else check_scope_value(str(info.field_name), v)

    def to_scope(self) -> Scope:
        return Scope(self.agent, self.workflow, self.segment, self.channel, self.region)


class CostRule(_Model):
    """What one call costs: ``amount`` plus ``per_unit`` times the number in argument ``arg``
    (a list argument counts its items). Write ``cost: 0.01`` for a fixed amount."""

    amount: float = Field(0.0, ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)
    arg: str | None = None
    per_unit: float = Field(1.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"amount": data}
        return data


class ExposureRule(_Model):
    """How often one entity (contact, account) may be touched: at most ``limit`` times per
    ``window``, counting every id in argument ``entity`` (a list counts each).
    Actions with the same ``group`` share their counters."""

    entity: str
    limit: int = Field(ge=0)
    window: Window = "week"
    group: str | None = None


DecisionType = Literal["approve", "edit", "reject", "respond"]


class ApprovalRule(_Model):
    """When a human must approve, who may, and for how long a request stays valid.

    ``when: auto`` asks at levels 1-2 for sensitive or high-risk actions (and at any level
    for in-doubt calls); ``always`` asks at every level that runs the action, 3 included;
    ``never`` does not ask. ``sla``: how fast a human should answer (default: ``timeout``);
    the gates' SLA adherence counts the answers given within it.
    """

    when: Literal["auto", "always", "never"] = "auto"
    roles: tuple[str, ...] = ()
    timeout: Duration = 86_400.0
    sla: Duration | None = None
    allowed_decisions: tuple[DecisionType, ...] = ("approve", "edit", "reject", "respond")

    @field_validator("timeout", "sla")
    @classmethod
    def _bounded(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and v > MAX_APPROVAL_SECONDS:
            raise ValueError(
                f"approval {info.field_name} of {v / 86_400:g} days is too long; at most "
                f"{MAX_APPROVAL_SECONDS // 86_400} days (a request that old is stale)"
            )
        return v


class ValidatorSpec(_Model):
    """One validator use: ``- banned_terms: {terms: [...]}`` or just ``- name``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: object) -> object:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, Mapping) and "name" not in data:
            if len(data) != 1:
                raise ValueError(
                    "write a validator as '- name' or '- name: {settings}' (one key per item)"
                )
            ((name, params),) = data.items()
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                raise ValueError(f"settings of validator {name!r} must be a mapping")
            return {"name": name, "params": dict(params)}
        return data


class ActionPolicy(_Model):
    """What a tool does in business terms and the rules that govern it.

    ``kind``: ``read`` (no side effect), ``execute`` (a governed step: send, tag, book),
    ``optimize`` (reallocates budgets or effort; runs from level 2), ``orchestrate`` (plans
    and runs multi-step campaigns; runs at level 3 only).
    ``on_cap_exceeded: approve`` turns a cap breach at level 2 or above into an approval
    request instead of a denial.
    """

    description: str = ""
    risk: Literal["low", "medium", "high"] = "medium"
    sensitive: bool = False
    kind: Literal["read", "execute", "optimize", "orchestrate"] = "execute"
    cost: CostRule | None = None
    exposure: ExposureRule | None = None
    validators: tuple[ValidatorSpec, ...] = ()
    approval: ApprovalRule = ApprovalRule()
    fail_open: bool = False
    on_cap_exceeded: Literal["deny", "approve"] = "deny"
    personal_data: tuple[str, ...] = ()


class LevelRule(_Model):
    """The starting level for a scope, and the highest level promotion may raise it to."""

    scope: ScopeModel = ScopeModel()
    level: Level
    ceiling: Level | None = None

    @property
    def max_level(self) -> AutonomyLevel:
        return self.ceiling if self.ceiling is not None else AutonomyLevel.ORCHESTRATE


class BudgetRule(_Model):
    """A money cap for a scope and window. Every matching budget must have room."""

    name: str | None = None
    scope: ScopeModel = ScopeModel()
    limit: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)
    window: Window = "day"
    actions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name or f"{self.scope.to_scope().key}/{self.window}"


class GateRule(_Model):
    """The evidence a scope needs to be promoted from ``from`` to ``to``, and the floors
    under which a scope at ``to`` is demoted at once (evaluated by
    :func:`agent_guardrails.engine.gates.evaluate`; see docs/gates.md).

    Every rate is judged on its interval at ``confidence``, never on its point value: a
    minimum (``min_success_rate``, ``min_policy_pass_rate``, ``min_sla_adherence``) passes
    when the interval's lower bound reaches it, a maximum (``max_escalation_rate``) when the
    upper bound stays under it. ``min_policy_pass_rate: 1.0`` is a trip-wire: one failure
    fails it, and ``min_samples`` clean calls prove the bound reported beside it.
    ``min_lift`` is the least lift of KPI ``lift_kpi`` (treatment minus control, as the
    application records it with ``record_outcome``) the interval must prove; ``holdout``
    keeps that fraction of the entities named by argument ``holdout_entity`` at ``from``
    as the control (a stable hash with ``salt`` decides, once and for good). Each of the
    last ``consecutive_windows`` windows of ``window`` must pass; after a demotion, no
    promotion for ``cooldown``."""

    scope: ScopeModel = ScopeModel()
    from_level: Level = Field(alias="from")
    to_level: Level = Field(alias="to")
    min_samples: int = Field(0, ge=0)
    window: Duration = 14 * 86_400.0
    consecutive_windows: int = Field(1, ge=1, le=52)
    confidence: float = Field(0.95, ge=0.5, lt=1)
    cooldown: Duration = 7 * 86_400.0
    min_success_rate: float | None = Field(None, ge=0, le=1)
    min_policy_pass_rate: float | None = Field(None, ge=0, le=1)
    max_escalation_rate: float | None = Field(None, ge=0, le=1)
    min_sla_adherence: float | None = Field(None, ge=0, le=1)
    min_lift: float | None = None
    lift_kpi: str | None = Field(None, min_length=1)
    holdout: float | None = Field(None, gt=0, lt=1)
    holdout_entity: str | None = Field(None, min_length=1)
    salt: str = ""
    demote_below_success_rate: float | None = Field(None, ge=0, le=1)
    demote_below_policy_pass_rate: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _upwards(self) -> GateRule:
        if self.to_level <= self.from_level:
            raise ValueError(
                f"a gate promotes upwards: 'to' ({self.to_level.name.lower()}) must be above "
                f"'from' ({self.from_level.name.lower()})"
            )
        if self.to_level != self.from_level + 1:
            raise ValueError(
                "a gate promotes one level at a time: 'to' must be the level right above "
                f"'from' ({AutonomyLevel(self.from_level + 1).name.lower()})"
            )
        if self.min_lift is not None and self.lift_kpi is None:
            raise ValueError(
                "min_lift needs the KPI it is measured on: add lift_kpi (the metric name the "
                "application records with record_outcome, e.g. lift_kpi: revenue)"
            )
        if (self.holdout is None) != (self.holdout_entity is None):
            raise ValueError(
                "holdout and holdout_entity go together: holdout is the fraction kept at "
                "'from' as the control, holdout_entity the argument naming the entity "
                "(contact, account, campaign) the split hashes"
            )
        return self


class ModelPrice(_Model):
    """Price of a chat model's tokens, for counting model spend against budgets."""

    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)


class Defaults(_Model):
    """What applies where no rule says otherwise."""

    level: Level = AutonomyLevel.ASSIST
    ceiling: Level = AutonomyLevel.ORCHESTRATE
    currency: str = Field("USD", min_length=3, max_length=3)


class KillSwitchPolicy(_Model):
    """What a running graph does when a kill-switch halts a call: ``end`` the run cleanly
    with ``message``, or ``raise`` ``KillSwitchEngaged``."""

    on_halt: Literal["end", "raise"] = "end"
    message: str = "Stopped by a kill-switch. An operator must release it before work resumes."


class PrivacyPolicy(_Model):
    """How tool content is treated in traces when content capture is switched on (it is off
    by default). ``personal_data`` names argument/result fields, at any depth, that are never
    exported raw for any action (each action may add its own); ``treatment`` either ``hash``
    es them (keyed HMAC-SHA-256, see :mod:`agent_guardrails.telemetry.content`) or ``drop`` s
    them."""

    personal_data: tuple[str, ...] = ()
    treatment: Literal["hash", "drop"] = "hash"


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
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

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
