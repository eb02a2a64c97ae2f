"""The policy layer (pure data): packs and their YAML loading, validators, scopes, windows
and autonomy levels.

>>> from agent_guardrails.policy import PolicyPack
>>> PolicyPack.from_yaml("name: p\\nversion: 1").version
'1'
"""

from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import (
    MODEL_ACTION,
    ActionPolicy,
    ApprovalRule,
    BudgetRule,
    CostRule,
    ExposureRule,
    GateRule,
    LevelRule,
    PolicyPack,
)
from agent_guardrails.policy.scope import DIMENSIONS, Scope

__all__ = [
    "DIMENSIONS",
    "MODEL_ACTION",
    "ActionPolicy",
    "ApprovalRule",
    "AutonomyLevel",
    "BudgetRule",
    "CostRule",
    "ExposureRule",
    "GateRule",
    "LevelRule",
    "PolicyPack",
    "Scope",
]
