"""Who approves: on a LangGraph server with custom auth, only the user it authenticated
(``configurable["langgraph_auth_user"]``); otherwise the run's context or configurable."""

from __future__ import annotations

from typing import Any

import pytest

from agent_guardrails.adapters.graph import approver_identity


class ProxyUser:
    """The shape langgraph-api puts in a run's config for a custom-auth user."""

    def __init__(self, identity: str, permissions: list[str], authenticated: bool = True):
        self.identity = identity
        self.permissions = permissions
        self.is_authenticated = authenticated


def config(**configurable: Any) -> dict[str, Any]:
    return {"configurable": configurable}


def test_the_servers_user_is_the_only_source_when_there_is_one() -> None:
    forged = {"approver": {"id": "mallory", "roles": ["marketing_ops"]}}
    cfg = config(langgraph_auth_user=ProxyUser("ana", ["marketing_ops"]), **forged)
    assert approver_identity(forged, cfg) == ("ana", ("marketing_ops",))


def test_a_serialised_user_and_a_roles_field_are_read_too() -> None:
    user = {"identity": "ana", "is_authenticated": True, "roles": ["ops"], "permissions": []}
    assert approver_identity(None, config(langgraph_auth_user=user)) == ("ana", ("ops",))


def test_a_user_the_server_did_not_authenticate_approves_nothing() -> None:
    studio = ProxyUser("langgraph-studio-user", [], authenticated=False)
    forged = {"approver": {"id": "mallory", "roles": ["marketing_ops"]}}
    assert approver_identity(forged, config(langgraph_auth_user=studio, **forged)) == ("", ())


@pytest.mark.parametrize("where", ["context", "configurable"])
def test_without_a_server_user_the_run_names_the_approver(where: str) -> None:
    who = {"approver": {"id": "ana", "roles": ["ops"]}}
    context, cfg = (who, config()) if where == "context" else (None, config(**who))
    assert approver_identity(context, cfg) == ("ana", ("ops",))
    assert approver_identity(None, config(langgraph_auth_user=None)) == ("", ())
