"""What of a tool call's content (its arguments and result) may leave the process in a trace.

Content is **private by default**: nothing of a call's arguments or result is recorded in a
span unless the application opts in, with ``Guardrails(capture_content=True)`` or the
environment variable ``AGENT_GUARDRAILS_CAPTURE_CONTENT=true``. With opt-in, in this order:

1. the application's ``redact`` hook (``redact(tool, value) -> value``) runs first, on the
   arguments mapping and on the result;
2. every field the pack marks as personal data (``privacy.personal_data`` for all actions,
   ``actions.<name>.personal_data`` for one), at any depth of dicts and lists, is hashed or
   dropped (``privacy.treatment``);
3. the value is serialised as JSON, cut at :data:`MAX_CONTENT` characters.

Hashes are ``sha256:`` plus 16 hex digits of an HMAC-SHA-256 keyed by ``hash_key`` (or the
variable ``AGENT_GUARDRAILS_HASH_KEY``): the same e-mail address hashes the same way across
calls and processes sharing the key, so an operator can follow one contact without seeing it.
Without a key the HMAC key is empty, which still hides the value from a casual reader but
lets anyone who guesses an address confirm it: set a key in production.

Other things a span carries never include content: reason codes are recorded, the decision's
human-readable message is not (validator messages may quote argument values), and exposure
counters are reported as numbers left, not by the entity they count.

>>> policy = ContentPolicy(capture=True, personal_data=frozenset({"to"}), hash_key=b"k")
>>> policy.arguments("send_email", {"to": "ann@example.com", "subject": "Hi"}, ())
'{"subject": "Hi", "to": "sha256:...'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CAPTURE_ENV",
    "HASH_KEY_ENV",
    "MAX_CONTENT",
    "ContentPolicy",
    "Redactor",
    "capture_from_env",
]

CAPTURE_ENV = "AGENT_GUARDRAILS_CAPTURE_CONTENT"
HASH_KEY_ENV = "AGENT_GUARDRAILS_HASH_KEY"
MAX_CONTENT = 8192
"""Longest content attribute, in characters; longer values end with ``...``."""

Redactor = Callable[[str, Any], Any]
"""``redact(tool_name, value) -> value``: called on arguments and results before export."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def capture_from_env() -> bool:
    """``AGENT_GUARDRAILS_CAPTURE_CONTENT`` as a boolean (unset: False)."""
    raw = os.environ.get(CAPTURE_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{CAPTURE_ENV}={raw!r} is not a boolean: use true or false (content stays private "
        "unless it is true)"
    )


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """Decides what of a call's content a span may carry (see the module docstring)."""

    capture: bool = False
    redact: Redactor | None = None
    personal_data: frozenset[str] = frozenset()
    treatment: Literal["hash", "drop"] = "hash"
    hash_key: bytes = field(default=b"", repr=False)

    def arguments(self, tool: str, args: Mapping[str, Any], extra: Iterable[str]) -> str | None:
        """The arguments as exportable JSON, or ``None`` when content is not captured.
        ``extra`` are the action's own personal-data fields."""
        if not self.capture:
            return None
        return self._export(tool, dict(args), extra)

    def result(self, tool: str, value: object, extra: Iterable[str]) -> str | None:
        """The tool's result as exportable JSON, or ``None`` when content is not captured."""
        if not self.capture:
            return None
        return self._export(tool, value, extra)

    def _export(self, tool: str, value: object, extra: Iterable[str]) -> str:
        if self.redact is not None:
            value = self.redact(tool, value)
        fields = self.personal_data.union(f.lower() for f in extra)
        if fields:
            value = self._scrub(value, fields)
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 3] + "..."

    def _scrub(self, value: object, fields: frozenset[str]) -> object:
        if isinstance(value, Mapping):
            out: dict[str, object] = {}
            for k, v in value.items():
                if str(k).lower() in fields:
                    if self.treatment == "hash":
                        out[str(k)] = self._hash(v)
                else:
                    out[str(k)] = self._scrub(v, fields)
            return out
        if isinstance(value, list | tuple):
            return [self._scrub(v, fields) for v in value]
        return value

    def _hash(self, value: object) -> object:
        if isinstance(value, list | tuple):
            return [self._hash(v) for v in value]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        digest = hmac.new(self.hash_key, text.encode(), hashlib.sha256).hexdigest()
        return f"sha256:{digest[:16]}"

    @classmethod
    def build(
        cls,
        *,
        capture: bool | None,
        redact: Redactor | None,
        personal_data: Iterable[str],
        treatment: Literal["hash", "drop"],
        hash_key: str | bytes | None,
    ) -> ContentPolicy:
        """A policy from constructor arguments, falling back to the environment."""
        key = hash_key if hash_key is not None else os.environ.get(HASH_KEY_ENV, "")
        return cls(
            capture=capture_from_env() if capture is None else capture,
            redact=redact,
            personal_data=frozenset(f.lower() for f in personal_data),
            treatment=treatment,
            hash_key=key.encode() if isinstance(key, str) else key,
        )
