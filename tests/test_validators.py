"""Built-in validators, custom validators on a fresh registry, and consent checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from agent_guardrails import (
    AutonomyLevel,
    CallRequest,
    DecisionKind,
    Guardrails,
    PolicyError,
    PolicyPack,
    Scope,
    ValidatorRegistry,
    decide,
)
from agent_guardrails.engine.decision import ValidatorOutcome
from agent_guardrails.engine.rules import CheckError
from agent_guardrails.pipeline.flow import user_checks
from tests.conftest import NOON_WEDNESDAY, pack_text

REGISTRY = ValidatorRegistry()


def check(
    name: str,
    params: Mapping[str, Any] | None,
    args: Mapping[str, Any],
    scope: Scope = Scope(),
    registry: ValidatorRegistry = REGISTRY,
) -> str | None:
    validator = registry.compile(name, params)
    return validator(CallRequest("tool", "email.send", args, scope))


# ----------------------------------------------------------------------------- banned_terms

BANNED = {"terms": ["guaranteed", "risk-free", "act now"]}


@pytest.mark.parametrize(
    "args",
    [
        {"subject": "A calm update", "body": "Nothing to see"},
        {"subject": "Guaranteedly odd", "body": "no whole word here"},  # not a whole word
        {"subject": "unguaranteed", "body": "riskfree"},
        {"count": 3, "tags": [1, 2]},  # no strings at all
    ],
)
def test_banned_terms_passes_clean_text(args: Mapping[str, Any]) -> None:
    assert check("banned_terms", BANNED, args) is None


@pytest.mark.parametrize(
    ("args", "found", "where"),
    [
        ({"subject": "Results GUARANTEED!"}, "GUARANTEED", "subject"),
        ({"body": "Totally risk-free."}, "risk-free", "body"),
        ({"body": "please Act  now"}, None, None),  # two spaces: not the term
        ({"body": "so act now, friend"}, "act now", "body"),
        ({"lines": ["fine", "guaranteed"]}, "guaranteed", "lines"),
        ({"meta": {"title": "risk-free offer"}}, "risk-free", "meta.title"),
    ],
)
def test_banned_terms_finds_whole_words_case_insensitively(
    args: Mapping[str, Any], found: str | None, where: str | None
) -> None:
    message = check("banned_terms", BANNED, args)
    if found is None:
        assert message is None
    else:
        assert message == f"banned term {found!r} in {where}"


def test_banned_terms_only_looks_in_its_fields() -> None:
    params = {"terms": ["free"], "fields": ["subject"]}
    assert check("banned_terms", params, {"subject": "hi", "body": "free stuff"}) is None
    assert check("banned_terms", params, {"subject": "free stuff"}) is not None


def test_banned_terms_case_sensitive() -> None:
    params = {"terms": ["FREE"], "case_sensitive": True}
    assert check("banned_terms", params, {"body": "free delivery"}) is None
    assert check("banned_terms", params, {"body": "FREE delivery"}) == "banned term 'FREE' in body"


def test_banned_terms_prefers_the_longest_term() -> None:
    params = {"terms": ["act", "act now"]}
    assert check("banned_terms", params, {"body": "act now"}) == "banned term 'act now' in body"


def test_banned_terms_needs_a_non_empty_term() -> None:
    with pytest.raises(ValidationError):
        REGISTRY.compile("banned_terms", {"terms": []})
    with pytest.raises(ValidationError):
        # an empty term used to match at every non-word boundary, e.g. in "a - b"
        REGISTRY.compile("banned_terms", {"terms": ["ok", ""]})


# ----------------------------------------------------------------------------- required_text


def test_required_text() -> None:
    params = {"text": "unsubscribe", "fields": ["body"]}
    assert check("required_text", params, {"body": "Click to UNSUBSCRIBE."}) is None
    assert check("required_text", params, {"body": "no way out"}) == (
        "body must contain 'unsubscribe'"
    )
    assert check("required_text", params, {"subject": "body missing"}) is not None
    assert check("required_text", params, {"body": 42}) is not None


def test_required_text_checks_every_field() -> None:
    params = {"text": "ACME", "fields": ["subject", "body"], "case_sensitive": True}
    assert check("required_text", params, {"subject": "ACME news", "body": "from ACME"}) is None
    assert check("required_text", params, {"subject": "ACME news", "body": "from acme"}) == (
        "body must contain 'ACME'"
    )


def test_required_text_with_a_pattern() -> None:
    params = {"pattern": r"https://\S+", "fields": ["body"]}
    assert check("required_text", params, {"body": "see https://example.com"}) is None
    assert check("required_text", params, {"body": "see http://example.com"}) == (
        r"body must contain '/https://\\S+/'"
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"fields": ["body"]}, "set exactly one of 'text' or 'pattern'"),
        ({"text": "a", "pattern": "b", "fields": ["body"]}, "set exactly one"),
        ({"pattern": "(", "fields": ["body"]}, "not a valid regular expression"),
        ({"text": "a", "fields": []}, "at least 1 item"),
    ],
)
def test_required_text_settings(params: Mapping[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        REGISTRY.compile("required_text", params)


# ----------------------------------------------------------------------------- max_length


@pytest.mark.parametrize(
    ("value", "ok"),
    [("x" * 10, True), ("x" * 11, False), ([1] * 10, True), ([1] * 11, False), (None, True)],
)
def test_max_length(value: object, ok: bool) -> None:
    args = {} if value is None else {"subject": value}
    message = check("max_length", {"field": "subject", "max": 10}, args)
    assert (message is None) is ok
    if not ok:
        assert message == "subject is 11 long; the maximum is 10"


# ----------------------------------------------------------------------------- allowed_*


def test_allowed_values() -> None:
    params = {"field": "tier", "values": ["gold", "silver", "3"]}
    assert check("allowed_values", params, {"tier": "gold"}) is None
    assert check("allowed_values", params, {"tier": 3}) is None  # compared as text
    assert check("allowed_values", params, {}) is None  # not given: nothing to check
    assert check("allowed_values", params, {"tier": "bronze"}) == (
        "tier 'bronze' is not allowed; allowed: gold, silver, 3"
    )


@pytest.mark.parametrize("dim", ["channel", "region"])
def test_allowed_scope_values_read_the_scope_first_then_the_argument(dim: str) -> None:
    name = f"allowed_{dim}s"
    params = {"values": ["email", "eu"]}
    assert check(name, params, {}, Scope(**{dim: "email" if dim == "channel" else "eu"})) is None
    assert check(name, params, {dim: "eu" if dim == "region" else "email"}) is None
    assert check(name, params, {dim: "sms"}) == f"{dim} 'sms' is not allowed; allowed: email, eu"
    assert check(name, params, {}) == f"no {dim} given; allowed: email, eu"
    # the scope wins over the argument
    denied_scope = Scope(**{dim: "sms"})
    allowed_arg = {dim: "email" if dim == "channel" else "eu"}
    assert check(name, params, allowed_arg, denied_scope) is not None


# ----------------------------------------------------------------------------- consent


class ConsentBook:
    """A consent check that records every question it is asked."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, entity: str, channel: str | None) -> bool:
        self.asked.append((entity, channel))
        return entity not in self.refused


def consent_registry(book: ConsentBook) -> ValidatorRegistry:
    registry = ValidatorRegistry()
    registry.register_consent("crm", book)
    return registry


def test_consent_calls_the_check_per_entity_and_lists_refusals() -> None:
    book = ConsentBook(refused={"c2", "c4"})
    registry = consent_registry(book)
    params = {"check": "crm", "entity": "to"}
    message = check("consent", params, {"to": ["c1", "c2", "c3", "c4"]}, registry=registry)
    assert message == "no consent for 2 of 4 to value(s): c2, c4"
    assert book.asked == [("c1", None), ("c2", None), ("c3", None), ("c4", None)]


def test_consent_passes_the_channel_from_scope_or_argument() -> None:
    book = ConsentBook(refused=set())
    registry = consent_registry(book)
    params = {"check": "crm", "entity": "contact"}
    assert check("consent", params, {"contact": 7}, Scope(channel="sms"), registry) is None
    assert (
        check("consent", params, {"contact": "c9", "channel": "email"}, registry=registry) is None
    )
    assert book.asked == [("7", "sms"), ("c9", "email")]


def test_consent_shortens_long_refusal_lists() -> None:
    registry = consent_registry(ConsentBook(refused={f"c{i}" for i in range(10)}))
    params = {"check": "crm", "entity": "to"}
    message = check("consent", params, {"to": [f"c{i}" for i in range(10)]}, registry=registry)
    assert message == "no consent for 10 of 10 to value(s): c0, c1, c2 and 7 more"


def test_consent_without_the_entity_fails_closed() -> None:
    registry = consent_registry(ConsentBook(refused=set()))
    message = check("consent", {"check": "crm", "entity": "to"}, {}, registry=registry)
    assert message == "no to given: consent cannot be checked"


def test_an_unknown_consent_check_is_a_load_error() -> None:
    registry = consent_registry(ConsentBook(refused=set()))
    text = pack_text(
        """
        actions:
          email.send:
            validators:
              - consent: {check: crm_v2, entity: to}
        """
    )
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(text, registry=registry)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (6, "actions.email.send.validators[0]")
    assert "unknown consent check 'crm_v2' (known: crm)" in problem.message


def test_consent_in_a_pack_denies_the_call_naming_the_refused_contacts() -> None:
    book = ConsentBook(refused={"c2"})
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            defaults: {level: execute}
            actions:
              email.send:
                risk: low
                validators:
                  - consent: {check: crm, entity: to}
            """
        ),
        registry=consent_registry(book),
    )
    call = CallRequest("send", "email.send", {"to": ["c1", "c2"]}, Scope(channel="email"))
    decision = decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=NOON_WEDNESDAY)
    assert decision.kind is DecisionKind.DENY
    assert decision.reasons == ("validator_failed:consent",)
    assert "c2" in decision.message
    assert book.asked == [("c1", "email"), ("c2", "email")]


# ----------------------------------------------------------------------------- custom


class SmallLists(BaseModel):
    max_items: int


def small_lists(call: CallRequest, params: SmallLists) -> str | None:
    n = len(call.args.get("contacts", []))
    return None if n <= params.max_items else f"{n} contacts > {params.max_items}"


CUSTOM = pack_text(
    """
    defaults: {level: execute}
    actions:
      audience.build:
        risk: low
        validators:
          - small_lists: {max_items: 2}
    """
)


def test_a_custom_validator_on_a_fresh_registry() -> None:
    registry = ValidatorRegistry()
    registry.register("small_lists", small_lists, params=SmallLists)
    pack = PolicyPack.from_yaml(CUSTOM, registry=registry)

    def run(contacts: list[str]) -> tuple[DecisionKind, tuple[str, ...]]:
        call = CallRequest("build", "audience.build", {"contacts": contacts})
        d = decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=NOON_WEDNESDAY)
        return d.kind, d.reasons

    assert run(["a", "b"]) == (DecisionKind.ALLOW, ("allowed",))
    assert run(["a", "b", "c"]) == (DecisionKind.DENY, ("validator_failed:small_lists",))


def test_a_custom_validator_is_unknown_to_other_registries() -> None:
    with pytest.raises(PolicyError, match="unknown validator 'small_lists'"):
        PolicyPack.from_yaml(CUSTOM)  # the default registry has never heard of it
    with pytest.raises(PolicyError, match="unknown validator 'banned_terms'"):
        PolicyPack.from_yaml(
            pack_text("actions:\n  a.b:\n    validators: [{banned_terms: {terms: [x]}}]\n"),
            registry=ValidatorRegistry(builtins=False),
        )


def test_custom_validator_settings_are_checked_at_load_with_lines() -> None:
    registry = ValidatorRegistry()
    registry.register("small_lists", small_lists, params=SmallLists)
    with pytest.raises(PolicyError) as info:
        PolicyPack.from_yaml(
            CUSTOM.replace("{max_items: 2}", "{max_items: lots}"), registry=registry
        )
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (
        8,
        "actions.audience.build.validators[0].small_lists.max_items",
    )


def test_a_validator_without_settings() -> None:
    registry = ValidatorRegistry(builtins=False)
    registry.register("no_urls", lambda call, _p: "url" if "http" in str(call.args) else None)
    assert registry.names() == ["no_urls"]
    assert check("no_urls", None, {"body": "http://x"}, registry=registry) == "url"
    with pytest.raises(ValueError, match="validator 'no_urls' takes no settings"):
        registry.compile("no_urls", {"strict": True})


def test_a_validator_that_raises_fails_closed() -> None:
    def broken(call: CallRequest, _params: object) -> str | None:
        raise ConnectionError("CRM down")

    registry = ValidatorRegistry()
    registry.register("crm_lookup", broken)
    pack = PolicyPack.from_yaml(
        pack_text(
            """
            defaults: {level: execute}
            actions:
              crm.tag: {risk: low, validators: [crm_lookup]}
            """
        ),
        registry=registry,
    )
    call = CallRequest("tag", "crm.tag", {"id": "c1"})
    decision = decide(call, pack, level=AutonomyLevel.EXECUTE, used={}, now=NOON_WEDNESDAY)
    assert decision.kind is DecisionKind.DENY
    assert decision.reasons == ("validator_error:crm_lookup",)  # could not answer
    assert "ConnectionError: CRM down" in decision.message
    assert [(v.passed, v.error) for v in decision.validators] == [(False, True)]
    assert decision.as_dict()["validators"][0]["error"] is True


@pytest.mark.parametrize("name", ["Brand", "brand voice", "9lives", ""])
def test_validator_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="use lowercase letters"):
        ValidatorRegistry().register(name, small_lists)


def test_an_async_validator_or_consent_check_is_refused_at_registration() -> None:
    """An ``async def`` check would hand back a coroutine nobody awaits (read as a failure
    message): registering one fails at once, saying what to do instead."""

    async def acheck(call: Any, params: Any) -> str | None:
        return None

    async def aconsent(contact: str, channel: str | None) -> bool:
        return True

    class AsyncCallable:
        async def __call__(self, call: Any, params: Any) -> str | None:
            return None

    registry = ValidatorRegistry()
    for fn in (acheck, AsyncCallable()):
        with pytest.raises(TypeError, match="is an async function; register a plain function"):
            registry.register("acheck", fn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="consent check 'crm' is an async function"):
        registry.register_consent("crm", aconsent)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not callable"):
        registry.register("nothing", None)  # type: ignore[arg-type]
    assert "acheck" not in registry.names()


def _checked_pack(
    timeout: str, **checks: Callable[[CallRequest, object], str | None]
) -> PolicyPack:
    """``crm.tag`` guarded by ``checks`` (registered under their names, run in that order),
    with ``defaults.check_timeout: timeout``."""
    registry = ValidatorRegistry()
    for name, check in checks.items():
        registry.register(name, check)
    return PolicyPack.from_yaml(
        pack_text(
            f"""
            defaults: {{level: execute, check_timeout: {timeout}}}
            actions:
              crm.tag: {{risk: low, validators: [{", ".join(checks)}]}}
            """
        ),
        registry=registry,
    )


def _two_checks(gate: threading.Event, seen: list[str], timeout: str = "0.2s") -> PolicyPack:
    """``crm.tag`` with two checks: ``quick`` refuses at once; ``slow`` waits for ``gate``."""

    def quick(call: CallRequest, _params: object) -> str | None:
        seen.append(threading.current_thread().name)
        return "quick says no"

    def slow(call: CallRequest, _params: object) -> str | None:
        gate.wait(10)
        return None

    return _checked_pack(timeout, quick=quick, slow=slow)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_checks_that_do_not_answer_in_time_fail_closed_and_answers_stand(mode: str) -> None:
    gate, seen = threading.Event(), list[str]()
    pack = _two_checks(gate, seen)
    request = CallRequest("tag", "crm.tag", {"id": "c1"})
    checks = user_checks(pack, request)
    assert checks is not None
    assert checks.timeout == 0.2
    try:
        began = time.monotonic()
        said = checks.run(None) if mode == "sync" else asyncio.run(checks.arun(None))
        waited = time.monotonic() - began
    finally:
        gate.set()
    assert said[0] == "quick says no"  # what answered in time stands
    assert isinstance(said[1], CheckError)
    assert "did not answer within 0.2 s" in said[1]
    assert 0.15 < waited < 5
    assert seen
    assert seen[0].startswith("agent-guardrails-user")
    decision = decide(request, pack, level=AutonomyLevel.EXECUTE, used={}, now=1.0, checked=said)
    assert decision.reasons == ("validator_failed:quick", "validator_error:slow")


def test_without_a_check_timeout_sync_checks_run_on_the_callers_thread() -> None:
    gate, seen = threading.Event(), list[str]()
    gate.set()
    pack = _two_checks(gate, seen, timeout="null")
    assert pack.defaults.check_timeout is None
    checks = user_checks(pack, CallRequest("tag", "crm.tag", {"id": "c1"}))
    assert checks is not None
    assert checks.run(None) == {0: "quick says no", 1: None}
    assert seen == [threading.current_thread().name]


@pytest.mark.parametrize("value", ["1d", 86_400, "90s", 0.05])
def test_a_check_timeout_up_to_a_day_loads(value: object) -> None:
    pack = PolicyPack.from_dict(
        {"name": "t", "version": "1", "defaults": {"check_timeout": value}, "actions": {}}
    )
    assert pack.defaults.check_timeout is not None
    assert 0 < pack.defaults.check_timeout <= 86_400


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan"), float("inf"), "2d", 1e10])
def test_a_bad_check_timeout_is_refused_at_load(value: object) -> None:
    with pytest.raises(PolicyError, match="check_timeout"):
        PolicyPack.from_dict(
            {"name": "t", "version": "1", "defaults": {"check_timeout": value}, "actions": {}}
        )


def test_checks_not_begun_when_the_call_timed_out_are_not_run() -> None:
    """The first check hangs past the timeout; once the call was decided without it, the
    worker does not go on to call the second one (the application's API, for nothing)."""
    gate, called = threading.Event(), threading.Event()

    def hangs(call: CallRequest, _params: object) -> str | None:
        gate.wait(10)
        return None

    def second(call: CallRequest, _params: object) -> str | None:
        called.set()
        return None

    pack = _checked_pack("0.1s", hangs=hangs, second=second)
    checks = user_checks(pack, CallRequest("tag", "crm.tag", {"id": "c1"}))
    assert checks is not None
    said = checks.run(None)
    assert all(isinstance(m, CheckError) for m in said.values())
    gate.set()
    assert not called.wait(0.5), "the second check ran after the call was decided"


def _slow_pack(name: str, seconds: float, timeout: str) -> Guardrails:
    def slow(call: CallRequest, _params: object) -> str | None:
        time.sleep(seconds)
        return None

    return Guardrails(_checked_pack(timeout, **{name: slow}), store="memory://")


def test_many_calls_checked_at_once_do_not_time_out_waiting_for_each_other() -> None:
    """100 sync calls at once, each check taking 0.6 s, a timeout of 2 s: every check starts
    at once on its own worker thread, so none is denied for waiting behind the others."""
    guard = _slow_pack("slowish", 0.6, "2s")
    request = CallRequest("tag", "crm.tag", {"id": "c"})
    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda i: guard.run(request, lambda a: "ran"), range(100)))
    assert results == ["ran"] * 100
    guard.close()


def test_hung_checks_do_not_starve_the_others() -> None:
    """40 calls whose check never answers (until the test ends) fail closed in time; a call
    of another pack's check, made meanwhile, is checked and runs."""
    gate = threading.Event()

    def never(call: CallRequest, _params: object) -> str | None:
        gate.wait(30)
        return None

    hung = Guardrails(_checked_pack("0.2s", never=never), store="memory://")
    quick = _slow_pack("instant", 0.0, "1s")
    request = CallRequest("tag", "crm.tag", {"id": "c"})
    try:
        with ThreadPoolExecutor(40) as pool:
            denied: list[Any] = list(
                pool.map(lambda i: hung.run(request, lambda a: "ran"), range(40))
            )
        assert {r["reasons"][0] for r in denied} == {"validator_error:never"}
        assert quick.run(request, lambda a: "ran") == "ran"
    finally:
        gate.set()
        hung.close()
        quick.close()


def test_a_validator_outcome_still_unpacks_as_three_fields() -> None:
    name, passed, message = ValidatorOutcome("crm", False, CheckError("it raised"))
    assert (name, passed, message) == ("crm", False, "it raised")
    assert ValidatorOutcome("crm", False, "no").error is False
    assert ValidatorOutcome("crm", False, CheckError("it raised")).error is True


def test_a_cancelled_async_call_runs_no_more_of_its_checks() -> None:
    """The caller gave up on the call (its task was cancelled) while its first check ran:
    the second check, not begun, is not run."""
    gate, first, called = threading.Event(), threading.Event(), threading.Event()

    def slow(call: CallRequest, _params: object) -> str | None:
        first.set()
        gate.wait(10)
        return None

    def second(call: CallRequest, _params: object) -> str | None:
        called.set()
        return None

    pack = _checked_pack("5s", slow=slow, second=second)
    checks = user_checks(pack, CallRequest("tag", "crm.tag", {"id": "c1"}))
    assert checks is not None

    async def cancelled() -> None:
        task = asyncio.ensure_future(checks.arun(None))
        await asyncio.to_thread(first.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    gate.set()
    assert not called.wait(0.5), "the second check ran after its caller was cancelled"


def test_a_hung_check_does_not_keep_the_process_from_exiting(tmp_path: Any) -> None:
    """The worker threads are daemons: a check that never returns does not hold the
    process at exit (the interpreter joins a ThreadPoolExecutor's threads)."""
    script = tmp_path / "hung.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            from agent_guardrails import CallRequest, Guardrails, PolicyPack, ValidatorRegistry

            def never(call, params):
                threading.Event().wait()  # never answers
                return None

            registry = ValidatorRegistry()
            registry.register("never", never)
            pack = PolicyPack.from_yaml(
                "name: t\\nversion: 1\\ndefaults: {level: execute, check_timeout: 0.1s}\\n"
                "actions:\\n  crm.tag: {risk: low, validators: [never]}\\n",
                registry=registry,
            )
            guard = Guardrails(pack, store="memory://")
            print(guard.run(CallRequest("tag", "crm.tag", {}), lambda a: "ran")["reasons"])
            """
        )
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "validator_error:never" in done.stdout
    assert time.monotonic() - began < 30
