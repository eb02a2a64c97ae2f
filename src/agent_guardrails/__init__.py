"""agent-guardrails: decide, call by call, how much an agent may do on its own.

>>> from agent_guardrails import AutonomyLevel
>>> AutonomyLevel.parse("optimize")
<AutonomyLevel.OPTIMIZE: 2>
"""

from agent_guardrails.adapters.decorator import guarded, set_default_guardrails, use_guardrails
from agent_guardrails.engine.decision import CallRequest, Decision, DecisionKind
from agent_guardrails.engine.rules import decide
from agent_guardrails.errors import (
    ActionDenied,
    ApprovalRejected,
    ApprovalRequired,
    BudgetExceeded,
    CallInDoubt,
    ConfigurationError,
    ExposureExceeded,
    GuardrailError,
    KillSwitchEngaged,
    PolicyError,
    StoreUnavailable,
    ValidatorFailed,
)
from agent_guardrails.pipeline.approvals import (
    ApprovalAnswer,
    ApprovalRequest,
    Approver,
    ScriptedApprover,
)
from agent_guardrails.pipeline.guardrails import Guardrails
from agent_guardrails.pipeline.results import GuardrailResult, is_result
from agent_guardrails.pipeline.spending import report_cost
from agent_guardrails.policy.levels import AutonomyLevel, LevelRecommendation, recommend_level
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.policy.validators import (
    ValidatorRegistry,
    register_consent_check,
    register_validator,
)
from agent_guardrails.store import open_store

__version__ = "0.1.0"

__all__ = [
    "ActionDenied",
    "ApprovalAnswer",
    "ApprovalRejected",
    "ApprovalRequest",
    "ApprovalRequired",
    "Approver",
    "AutonomyLevel",
    "BudgetExceeded",
    "CallInDoubt",
    "CallRequest",
    "ConfigurationError",
    "Decision",
    "DecisionKind",
    "ExposureExceeded",
    "GuardrailError",
    "GuardrailResult",
    "Guardrails",
    "KillSwitchEngaged",
    "LevelRecommendation",
    "PolicyError",
    "PolicyPack",
    "ScriptedApprover",
    "Scope",
    "StoreUnavailable",
    "ValidatorFailed",
    "ValidatorRegistry",
    "__version__",
    "decide",
    "guarded",
    "is_result",
    "open_store",
    "recommend_level",
    "register_consent_check",
    "register_validator",
    "report_cost",
    "set_default_guardrails",
    "use_guardrails",
]
