"""The parts of a policy pack: actions (cost, exposure cap, validators, approval rule),
level rules, budgets, gates, model prices, defaults, the kill-switch and privacy settings,
as validated models. :class:`~agent_guardrails.policy.pack.PolicyPack` is made of them and
re-exports the public ones (``from agent_guardrails.policy.pack import GateRule`` keeps
working).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.scope import DIMENSIONS, Scope, check_scope_value
from agent_guardrails.policy.windows import parse_duration, validate_window

__all__ = [
    "MAX_APPROVAL_SECONDS",
    "MODEL_ACTION",
    "ActionPolicy",
    "ApprovalRule",
    "BudgetRule",
    "CostRule",
    "Defaults",
    "ExposureRule",
    "GateRule",
    "KillSwitchPolicy",
    "LevelRule",
    "ModelPrice",
    "PrivacyPolicy",
    "ScopeModel",
    "ValidatorSpec",
]

MAX_APPROVAL_SECONDS = 30 * 86_400
"""The longest an approval request may wait (``timeout``) or be expected to take (``sla``)."""
MAX_CHECK_SECONDS = 86_400.0
"""The longest ``defaults.check_timeout``: a day."""

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
    """What applies where no rule says otherwise.

    ``check_timeout``: how long the application's own checks of one call (custom
    validators, ``consent``'s check: code that may call an API) may take in all, e.g. ``5s``;
    each that has not answered by then fails closed (the call is denied with
    ``validator_error:<name>``, as when a check raises; neither lowers the level). ``null``
    waits as long as they take."""

    level: Level = AutonomyLevel.ASSIST
    ceiling: Level = AutonomyLevel.ORCHESTRATE
    currency: str = Field("USD", min_length=3, max_length=3)
    check_timeout: Duration | None = 30.0

    @field_validator("check_timeout")
    @classmethod
    def _bounded_check_timeout(cls, v: float | None) -> float | None:
        if v is not None and v > MAX_CHECK_SECONDS:
            raise ValueError(
                f"check_timeout {v:g} s is longer than a day; a check that slow is not "
                "answering: write at most 1d, or null for no limit"
            )
        return v


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
