"""Loading policy packs from YAML with errors that name the file, the line and the field.

Two passes: pydantic checks the structure (types, unknown fields, ranges); then the pack's
own rules are checked (validator names and settings, ambiguous or duplicate scopes, ceilings
below levels, budgets naming unknown actions). Every problem found is reported at once.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agent_guardrails.errors import PolicyError, PolicyProblem
from agent_guardrails.policy.pack import LevelRule, PolicyPack
from agent_guardrails.policy.validators import (
    CompiledValidator,
    ValidatorRegistry,
    default_registry,
)
from agent_guardrails.policy.yaml_safe import (
    Loc,
    compose_text,
    construct,
    decode_bytes,
    field_name,
)

__all__ = ["load_mapping", "load_pack", "load_text", "pack_json_schema"]


def load_pack(source: str | Path, *, registry: ValidatorRegistry | None = None) -> PolicyPack:
    if isinstance(source, Path) or _looks_like_path(source):
        path = Path(source)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PolicyError(
                [PolicyProblem(str(path), None, "", f"cannot read the file: {reason}")]
            ) from None
        text = decode_bytes(raw, str(path))
        return load_text(text, filename=str(path), registry=registry)
    return load_text(source, filename="<string>", registry=registry)


def _looks_like_path(text: str) -> bool:
    if "\n" in text:
        return False
    stripped = text.strip()
    return stripped.endswith((".yaml", ".yml")) or Path(stripped).is_file()


def load_text(
    text: str, *, filename: str = "<string>", registry: ValidatorRegistry | None = None
) -> PolicyPack:
    loader, root = compose_text(text, filename)
    lines, problems = _line_map(root, filename)
    if problems:
        raise PolicyError(problems)
    data = construct(loader, root, filename, text) if root is not None else None
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise PolicyError(
            [
                PolicyProblem(
                    filename, 1, "", f"a pack is a mapping with name, version, ...; got {got}"
                )
            ]
        )
    pack = _build(data, filename, lines, registry or default_registry)
    pack._source = text
    return pack


def load_mapping(
    data: Mapping[str, Any], *, registry: ValidatorRegistry | None = None
) -> PolicyPack:
    return _build(data, "<dict>", {}, registry or default_registry)


def pack_json_schema(registry: ValidatorRegistry | None = None) -> dict[str, Any]:
    """A JSON Schema for pack files (``agent-guardrails policy schema``).

    Validator items are described as written in YAML: ``- name`` or
    ``- name: {settings}``, with each registered validator's settings schema."""
    registry = registry or default_registry
    schema = PolicyPack.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agent-guardrails policy pack"
    names = registry.names()
    by_name: dict[str, Any] = {}
    for name in names:
        model = registry.params_model(name)
        by_name[name] = model.model_json_schema() if model is not None else {"type": "null"}
    schema.setdefault("$defs", {})["ValidatorSpec"] = {
        "title": "Validator",
        "description": "A validator use: '- name' or '- name: {settings}'.",
        "anyOf": [
            {"type": "string", "enum": names},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": by_name,
                "additionalProperties": False,
            },
        ],
    }
    return schema


# ----------------------------------------------------------------------------- lines


def _line_map(root: yaml.Node | None, filename: str) -> tuple[dict[Loc, int], list[PolicyProblem]]:
    """Map each path in the document to its 1-based line; report duplicate keys (which
    plain YAML loading would silently merge)."""
    lines: dict[Loc, int] = {}
    problems: list[PolicyProblem] = []

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    problems.append(
                        PolicyProblem(
                            filename,
                            line,
                            _field((*loc, key)),
                            f"duplicate key (first at line {seen[key]}); each key may appear once",
                        )
                    )
                seen[key] = line
                lines[(*loc, key)] = line
                walk(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))

    if root is not None:
        walk(root, ())
    return lines, problems


def _line_for(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest ancestor that has one."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _field(loc: Loc) -> str:
    return field_name(loc)


# ----------------------------------------------------------------------------- passes


def _build(
    data: Mapping[str, Any],
    filename: str,
    lines: Mapping[Loc, int],
    registry: ValidatorRegistry,
) -> PolicyPack:
    try:
        pack = PolicyPack.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_structural_problem(err, filename, lines, data) for err in exc.errors()]
        raise PolicyError(_sorted(problems)) from None
    problems = []
    compiled: dict[str, tuple[CompiledValidator, ...]] = {}
    for loc, message, result in _semantic_checks(pack, registry):
        if message is not None:
            problems.append(PolicyProblem(filename, _line_for(lines, loc), _field(loc), message))
        if result is not None:
            action, validator = result
            compiled[action] = (*compiled.get(action, ()), validator)
    if problems:
        raise PolicyError(_sorted(problems))
    pack._validators = compiled
    pack._registry = registry
    pack.__dict__.pop("lookup", None)  # rebuild lookups with the compiled validators
    return pack


def _sorted(problems: list[PolicyProblem]) -> list[PolicyProblem]:
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def _structural_problem(
    err: Any, filename: str, lines: Mapping[Loc, int], data: object
) -> PolicyProblem:
    loc = _clean_loc(err["loc"], data)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        message = f"unknown field {loc[-1]!r}{hint}"
    elif kind == "missing":
        message = "required field is missing"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
        if "input" in err and kind not in ("value_error", "assertion_error"):
            message += f" (got {err['input']!r})"
    return PolicyProblem(filename, _line_for(lines, loc), _field(loc), message)


def _clean_loc(raw: Loc, data: object) -> Loc:
    """Drop the union-member tags pydantic inserts into an error location, but keep every
    part that is a real key or index in the document (a model named ``GPT-4`` is no tag)."""
    kept: list[str | int] = []
    node: object = data
    for part in raw:
        is_key = isinstance(node, Mapping) and part in node
        is_index = isinstance(node, list | tuple) and isinstance(part, int) and part < len(node)
        if is_key or is_index:
            node = node[part]  # type: ignore[index]
        elif _is_union_tag(part):
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _is_union_tag(part: str | int) -> bool:
    # pydantic inserts the union member's type name ("float", "CostRule", ...) into locations.
    return isinstance(part, str) and (
        part[:1].isupper()
        or part in ("float", "int", "str", "bool", "function-before[...]")
        or part.startswith(("function-", "lax-", "json-"))
    )


def _allowed_fields(loc: Loc) -> list[str]:
    """The field names (aliases where set) of the model found at ``loc`` in a pack."""
    tp: Any = PolicyPack
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                field = next((f for f in tp.model_fields.values() if f.alias == part), None)
            if field is None:
                return []
            tp = field.annotation
        else:
            args = typing.get_args(tp)
            origin = typing.get_origin(tp)
            if origin in (dict, Mapping) and len(args) == 2:
                tp = args[1]
            elif origin in (tuple, list) and args:
                tp = args[0]
            else:
                return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tp = models[0] if models else members[0]
        else:
            return tp


Check = tuple[Loc, "str | None", "tuple[str, CompiledValidator] | None"]


def _semantic_checks(pack: PolicyPack, registry: ValidatorRegistry) -> Iterator[Check]:
    yield from _check_validators(pack, registry)
    yield from _check_levels(pack)
    yield from _check_budgets(pack)
    yield from _check_exposure_groups(pack)


def _check_validators(pack: PolicyPack, registry: ValidatorRegistry) -> Iterator[Check]:
    for action_name, action in pack.actions.items():
        for i, spec in enumerate(action.validators):
            loc: Loc = ("actions", action_name, "validators", i, spec.name)
            try:
                compiled = registry.compile(spec.name, spec.params)
            except ValidationError as exc:
                for err in exc.errors():
                    sub = loc + _clean_loc(err["loc"], spec.params)
                    msg = str(err["msg"]).removeprefix("Value error, ")
                    if err["type"] == "extra_forbidden":
                        model = registry.params_model(spec.name)
                        allowed = ", ".join(model.model_fields) if model else ""
                        msg = f"unknown setting {err['loc'][-1]!r}; allowed: {allowed}"
                    yield sub, msg, None
                continue
            except ValueError as exc:
                yield ("actions", action_name, "validators", i), str(exc), None
                continue
            yield loc, None, (action_name, compiled)


def _check_levels(pack: PolicyPack) -> Iterator[Check]:
    if pack.defaults.ceiling < pack.defaults.level:
        yield ("defaults", "ceiling"), "ceiling is below the default level", None
    rules = list(enumerate(pack.levels))
    by_scope: dict[str, int] = {}
    for i, rule in rules:
        if rule.ceiling is not None and rule.ceiling < rule.level:
            yield (
                ("levels", i, "ceiling"),
                f"ceiling {rule.ceiling.name.lower()} is below level {rule.level.name.lower()}; "
                "the ceiling is the highest level promotion may reach",
                None,
            )
        key = rule.scope.to_scope().key
        if key in by_scope:
            yield (
                ("levels", i, "scope"),
                f"duplicate level rule for scope {key} (also levels[{by_scope[key]}]); "
                "keep one rule per scope",
                None,
            )
        else:
            by_scope[key] = i
    yield from _check_ambiguity(rules, by_scope)


def _check_ambiguity(
    rules: list[tuple[int, LevelRule]], by_scope: dict[str, int]
) -> Iterator[Check]:
    """Two rules of equal specificity that could both match one call are ambiguous, unless a
    rule for exactly their combined scope exists (it is more specific, so it wins)."""
    for a_pos, (i, a) in enumerate(rules):
        sa = a.scope.to_scope()
        for j, b in rules[a_pos + 1 :]:
            sb = b.scope.to_scope()
            if sa == sb or sa.specificity != sb.specificity or not sa.compatible(sb):
                continue
            merged = sa.merge(sb)
            if merged.key in by_scope:
                continue
            yield (
                ("levels", j, "scope"),
                f"ambiguous: levels[{i}] ({sa.key}) and levels[{j}] ({sb.key}) both match calls "
                f"in {merged.key} with equal specificity; add a level rule for scope "
                f"{merged.key} or make one rule more specific",
                None,
            )


def _check_budgets(pack: PolicyPack) -> Iterator[Check]:
    seen: dict[tuple[str, str, str, tuple[str, ...]], int] = {}
    names: dict[str, int] = {}
    for i, budget in enumerate(pack.budgets):
        if budget.name is not None:
            if budget.name in names:
                yield (
                    ("budgets", i, "name"),
                    f"duplicate budget name {budget.name!r} (also budgets[{names[budget.name]}]);"
                    " a budget's name keys its counter, so each name may appear once",
                    None,
                )
            else:
                names[budget.name] = i
        for k, action in enumerate(budget.actions):
            if action not in pack.actions:
                yield (
                    ("budgets", i, "actions", k),
                    f"unknown action {action!r}; actions in this pack: "
                    f"{', '.join(sorted(pack.actions)) or 'none'}",
                    None,
                )
        ident = (
            budget.scope.to_scope().key,
            budget.window,
            budget.currency,
            tuple(sorted(budget.actions)),
        )
        if ident in seen:
            yield (
                ("budgets", i),
                "duplicate budget: same scope, window, currency and actions as "
                f"budgets[{seen[ident]}]",
                None,
            )
        else:
            seen[ident] = i


def _check_exposure_groups(pack: PolicyPack) -> Iterator[Check]:
    """Actions in one exposure ``group`` share counters, so they must count in one window
    (a day and a week bucket that start together would otherwise share a counter key)."""
    first: dict[str, tuple[str, str]] = {}
    for name, action in pack.actions.items():
        exposure = action.exposure
        if exposure is None or exposure.group is None:
            continue
        other = first.setdefault(exposure.group, (name, exposure.window))
        if other[1] != exposure.window:
            yield (
                ("actions", name, "exposure", "window"),
                f"exposure group {exposure.group!r} counts per {other[1]} in action {other[0]}; "
                f"actions sharing a group share its counters, so use window {other[1]} here too",
                None,
            )
