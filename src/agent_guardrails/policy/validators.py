"""Policy validators: built-ins for marketing packs and a registry for your own.

A validator is a function ``check(call, params) -> str | None`` that returns ``None`` when the
call passes and a message saying what is wrong when it does not. ``params`` is an instance of
the validator's pydantic model (checked when the pack loads, with line numbers) or ``None``.

Built-ins (names as used in a pack's ``validators:`` list):

- ``banned_terms``: ``{terms: [...], fields: [...], case_sensitive: false}``; fails when a
  term appears as a whole word in any of ``fields`` (default: every string argument).
- ``required_text``: ``{text: "unsubscribe", fields: [body]}`` or ``{pattern: "https://\\S+"}``;
  fails when a field lacks it.
- ``max_length``: ``{field: subject, max: 78}``.
- ``allowed_channels`` / ``allowed_regions``: ``{values: [email, sms]}``; checks the call's
  scope, or the ``channel`` / ``region`` argument when the scope has none.
- ``allowed_values``: ``{field: tier, values: [gold, silver]}``.
- ``consent``: ``{check: crm_consent, entity: contact_id}``; calls the function registered
  with :func:`register_consent_check` for every entity id in that argument (a list counts each).

Register your own before loading the pack that uses it. Your validators and consent checks
are *your code*, which may do I/O (a moderation API, a CRM lookup): on the async paths they
run on one of the library's worker threads (at most 256 at once:
``pipeline.effects.USER_THREADS``; not the event loop's default executor, which LangGraph's
sync tools use), never on the event loop nor on a store's own thread, so a slow or blocking
check delays only its own call; the sync paths run them on those threads too, so that the
pack's ``defaults.check_timeout`` (30 s unless the pack says otherwise; ``null``: no limit,
and then the sync paths call them on the caller's thread) bounds them everywhere. A check
that raises, or has not answered in time, fails closed: the call is denied with
``validator_error:<name>``; unlike a failed check (``validator_failed:<name>``) that is not a
policy violation, so it neither trips the level down nor counts against the policy pass
rate. The built-ins (except ``consent``, which calls your check) are pure and run inline. A
check may be called for a call that the kill-switch then halts: keep checks free of side
effects.

>>> from pydantic import BaseModel
>>> class Params(BaseModel):
...     max_items: int
>>> def small_lists(call, params):
...     n = len(call.args.get("contacts", []))
...     return None if n <= params.max_items else f"{n} contacts > {params.max_items}"
>>> registry = ValidatorRegistry()
>>> registry.register("small_lists", small_lists, params=Params)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from agent_guardrails.engine.decision import CallRequest

__all__ = [
    "ConsentCheck",
    "ValidatorFn",
    "ValidatorRegistry",
    "default_registry",
    "register_consent_check",
    "register_validator",
]

ValidatorFn: TypeAlias = Callable[["CallRequest", Any], "str | None"]
ConsentCheck: TypeAlias = Callable[[str, "str | None"], bool]
"""``check(entity_id, channel) -> bool``: does this contact consent to this channel?"""


@dataclass(frozen=True, slots=True)
class _Registered:
    fn: ValidatorFn
    params: type[BaseModel] | None
    user: bool = True


@dataclass(frozen=True, slots=True)
class CompiledValidator:
    """A validator bound to its parameters, ready to run on calls. ``user``: it runs code
    registered by the application (a custom validator, or ``consent``'s check), which may
    block, so async paths run it on a worker thread."""

    name: str
    fn: ValidatorFn
    params: Any
    user: bool = True

    def __call__(self, call: CallRequest) -> str | None:
        return self.fn(call, self.params)


class ValidatorRegistry:
    """Validators and consent checks known by name.

    Packs are checked against a registry when they load, so register before loading.
    ``ValidatorRegistry()`` starts with the built-ins.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._validators: dict[str, _Registered] = {}
        self._consent: dict[str, ConsentCheck] = {}
        if builtins:
            for name, (fn, params) in _BUILTINS.items():
                self._validators[name] = _Registered(fn, params, user=name == "consent")

    def register(
        self, name: str, fn: ValidatorFn, *, params: type[BaseModel] | None = None
    ) -> None:
        """Make ``fn`` usable in packs as ``name``; ``params`` validates its settings."""
        if not re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
            raise ValueError(
                f"validator name {name!r}: use lowercase letters, digits, '_', '.', '-'"
            )
        _plain_function("validator", name, fn)
        self._validators[name] = _Registered(fn, params)

    def register_consent(self, name: str, check: ConsentCheck) -> None:
        """Make ``check(entity_id, channel) -> bool`` usable as ``consent: {check: name}``."""
        _plain_function("consent check", name, check)
        self._consent[name] = check

    def names(self) -> list[str]:
        return sorted(self._validators)

    def consent_check(self, name: str) -> ConsentCheck:
        try:
            return self._consent[name]
        except KeyError:
            known = ", ".join(sorted(self._consent)) or "none registered"
            raise ValueError(
                f"unknown consent check {name!r} (known: {known}); register it with "
                "register_consent_check(name, fn) before loading the pack"
            ) from None

    def params_model(self, name: str) -> type[BaseModel] | None:
        return self._lookup(name).params

    def compile(self, name: str, raw_params: Mapping[str, Any] | None) -> CompiledValidator:
        """Bind a validator to its settings. Raises ``ValueError`` or pydantic's
        ``ValidationError`` (with field locations) for bad settings."""
        entry = self._lookup(name)
        if entry.params is None:
            if raw_params:
                raise ValueError(f"validator {name!r} takes no settings")
            params: Any = None
        else:
            params = entry.params.model_validate(dict(raw_params or {}))
        if isinstance(params, _ConsentParams):
            params = _BoundConsent(params, self.consent_check(params.check))
        return CompiledValidator(name, entry.fn, params, entry.user)

    def _lookup(self, name: str) -> _Registered:
        try:
            return self._validators[name]
        except KeyError:
            raise ValueError(
                f"unknown validator {name!r}; known validators: {', '.join(self.names())}. "
                "Register custom ones with register_validator(name, fn) before loading"
            ) from None


def _plain_function(what: str, name: str, fn: Callable[..., Any]) -> None:
    """Validators and consent checks are plain functions: an ``async def`` one would hand
    back a coroutine that nobody awaits (read as a failure message), so it is refused."""
    if not callable(fn):
        raise TypeError(f"{what} {name!r}: {fn!r} is not callable")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    ):
        raise TypeError(
            f"{what} {name!r} is an async function; register a plain function instead (it "
            "may block: on async paths it runs on a worker thread, never on the event loop)"
        )


# --------------------------------------------------------------------------- built-ins


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _strings(args: Mapping[str, Any], fields: Iterable[str] | None) -> Iterable[tuple[str, str]]:
    """(field, text) pairs from the named fields, or from every string-valued argument.

    Lists of strings are searched item by item; nested mappings one level deep.
    """
    for name in fields or args:
        value = args.get(name)
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, str):
                    yield name, item
        elif isinstance(value, Mapping):
            for sub, item in value.items():
                if isinstance(item, str):
                    yield f"{name}.{sub}", item


class _BannedTerms(_Params):
    # An empty term would match at every non-word boundary ("a - b"), so terms are non-empty.
    terms: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    fields: tuple[str, ...] = ()
    case_sensitive: bool = False

    @cached_property
    def rx(self) -> re.Pattern[str]:
        """The compiled pattern (built once; a plain attribute afterwards)."""
        alternatives = "|".join(re.escape(t) for t in sorted(self.terms, key=len, reverse=True))
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags)


def _banned_terms(call: CallRequest, p: _BannedTerms) -> str | None:
    rx = p.rx
    args = call.args
    for name in p.fields or args:
        value = args.get(name)
        if isinstance(value, str):  # the usual case, without _strings()' generator
            if m := rx.search(value):
                return f"banned term {m.group(0)!r} in {name}"
        elif value is not None:
            for label, text in _strings(args, (name,)):
                if m := rx.search(text):
                    return f"banned term {m.group(0)!r} in {label}"
    return None


class _RequiredText(_Params):
    text: str | None = None
    pattern: str | None = None
    fields: tuple[str, ...] = Field(min_length=1)
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> _RequiredText:
        if (self.text is None) == (self.pattern is None):
            raise ValueError("set exactly one of 'text' or 'pattern'")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return self

    @cached_property
    def rx(self) -> re.Pattern[str]:
        """The compiled text or pattern (built once)."""
        return _required_text_rx(self)


def _required_text_rx(p: _RequiredText) -> re.Pattern[str]:
    flags = 0 if p.case_sensitive else re.IGNORECASE
    needle = p.pattern if p.pattern is not None else re.escape(p.text or "")
    return re.compile(needle, flags)


def _required_text(call: CallRequest, p: _RequiredText) -> str | None:
    rx = p.rx
    for name in p.fields:
        value = call.args.get(name)
        if not isinstance(value, str) or not rx.search(value):
            what = p.text if p.text is not None else f"/{p.pattern}/"
            return f"{name} must contain {what!r}"
    return None


class _MaxLength(_Params):
    field: str
    max: int = Field(ge=0)


def _max_length(call: CallRequest, p: _MaxLength) -> str | None:
    value = call.args.get(p.field)
    if value is None:
        return None
    if isinstance(value, str | list | tuple | dict) and len(value) > p.max:
        return f"{p.field} is {len(value)} long; the maximum is {p.max}"
    return None


class _AllowedValues(_Params):
    field: str
    values: tuple[str, ...] = Field(min_length=1)


def _allowed_values(call: CallRequest, p: _AllowedValues) -> str | None:
    value = call.args.get(p.field)
    if value is not None and str(value) not in p.values:
        return f"{p.field} {value!r} is not allowed; allowed: {', '.join(p.values)}"
    return None


class _AllowedScopeValues(_Params):
    values: tuple[str, ...] = Field(min_length=1)


def _scoped(dim: str) -> ValidatorFn:
    def check(call: CallRequest, p: _AllowedScopeValues) -> str | None:
        value = getattr(call.scope, dim) or call.args.get(dim)
        if value is None:
            return f"no {dim} given; allowed: {', '.join(p.values)}"
        if str(value) not in p.values:
            return f"{dim} {value!r} is not allowed; allowed: {', '.join(p.values)}"
        return None

    return check


class _ConsentParams(_Params):
    check: str
    entity: str
    channel_arg: str = "channel"


@dataclass(frozen=True, slots=True)
class _BoundConsent:
    params: _ConsentParams
    fn: ConsentCheck


def _consent(call: CallRequest, bound: _BoundConsent) -> str | None:
    p = bound.params
    value = call.args.get(p.entity)
    if value is None:
        return f"no {p.entity} given: consent cannot be checked"
    ids = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    channel = call.scope.channel or call.args.get(p.channel_arg)
    refused = [i for i in ids if not bound.fn(i, None if channel is None else str(channel))]
    if refused:
        shown = ", ".join(refused[:3]) + (
            f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        )
        return f"no consent for {len(refused)} of {len(ids)} {p.entity} value(s): {shown}"
    return None


_BUILTINS: dict[str, tuple[ValidatorFn, type[BaseModel] | None]] = {
    "banned_terms": (_banned_terms, _BannedTerms),
    "required_text": (_required_text, _RequiredText),
    "max_length": (_max_length, _MaxLength),
    "allowed_values": (_allowed_values, _AllowedValues),
    "allowed_channels": (_scoped("channel"), _AllowedScopeValues),
    "allowed_regions": (_scoped("region"), _AllowedScopeValues),
    "consent": (_consent, _ConsentParams),
}

default_registry = ValidatorRegistry()
"""The registry packs use unless given another."""


def register_validator(
    name: str, fn: ValidatorFn, *, params: type[BaseModel] | None = None
) -> None:
    """Register a custom validator in the default registry (see :class:`ValidatorRegistry`)."""
    default_registry.register(name, fn, params=params)


def register_consent_check(name: str, check: ConsentCheck) -> None:
    """Register ``check(entity_id, channel) -> bool`` for ``consent`` validators."""
    default_registry.register_consent(name, check)
