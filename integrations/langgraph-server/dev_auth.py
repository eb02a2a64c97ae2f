"""Custom auth for the served example: a DEV STAND-IN, not a way to run in production.

Tokens come from the fixed table below, in ``Authorization: Bearer <token>`` (the SDKs'
``headers=``, curl) or ``X-Api-Key: <token>`` (what Agent Chat UI sends from its "LangSmith
API Key" field). Each token is a user whose ``identity`` is the approver's id and whose
``permissions`` are the approver's roles (``ApproverFromAuthUser`` in ``guarded_agent.py``
makes them the approver agent-guardrails checks). In production, verify a real token (a JWT
from your identity provider) and take the roles from its claims.
"""

from __future__ import annotations

from langgraph_sdk import Auth

DEV_USERS: dict[str, Auth.types.MinimalUserDict] = {
    "dev-ana": {"identity": "ana", "display_name": "Ana", "permissions": ["marketing_ops"]},
    "dev-bob": {"identity": "bob", "display_name": "Bob", "permissions": ["sales"]},
}

auth = Auth()


@auth.authenticate
async def authenticate(
    authorization: str | None, headers: dict[bytes, bytes] | None
) -> Auth.types.MinimalUserDict:
    """The dev user named by the request's bearer token or ``X-Api-Key``; 401 otherwise."""
    token = ""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else ""
    if not token and headers:
        token = headers.get(b"x-api-key", b"").decode(errors="replace").strip()
    user = DEV_USERS.get(token)
    if user is None:
        raise Auth.exceptions.HTTPException(
            status_code=401,
            detail="unknown token: send 'Authorization: Bearer dev-ana' (see dev_auth.py)",
        )
    return user
