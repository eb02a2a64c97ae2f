"""An approver's edited arguments, read by the tool's own argument schema.

A chat UI sends edited values as text: a list argument (``to``) comes back as the JSON
string ``'["c-1", "c-2"]'``. Each edited argument the tool's schema knows is validated by
its field's type (pydantic, lax mode: ``"5"`` for an ``int`` is 5); a string that does not
fit is then read as JSON (so the JSON text of a list becomes the list). A value that fits
neither way refuses the edit with the field named, and nothing runs. An edit gives the
arguments whole, as the model does: one that leaves out a required argument, or names one
the tool does not take, is refused too (parameters LangGraph fills in, such as a
``ToolRuntime`` or an injected tool call id, are not the approver's to give). Tools without
a pydantic schema take the edit as given.

>>> from pydantic import BaseModel
>>> class Send(BaseModel):
...     to: list[str]
...     subject: str
>>> parse_edit(Send, {"to": '["c-1", "c-2"]', "subject": "Hi"})
({'to': ['c-1', 'c-2'], 'subject': 'Hi'}, None)
>>> parse_edit(Send, {"to": 42, "subject": "Hi"})[1]
'to: Input should be a valid list'
>>> parse_edit(Send, {"to": ["c-1"]})[1]
'subject: a required argument is missing (an edit gives them all)'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from langchain_core.tools import InjectedToolArg
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

__all__ = ["ArgsSchema", "params_of", "parse_edit", "schema_of"]

ArgsSchema = type[BaseModel]


def schema_of(tool: object | None) -> ArgsSchema | None:
    """The tool's pydantic argument schema as the model sees it, if it has one (a LangChain
    tool's ``tool_call_schema``: its ``args_schema`` without the parameters LangGraph
    injects; ``None`` for a JSON-schema dict or no tool)."""
    for name in ("tool_call_schema", "args_schema"):
        try:
            schema = getattr(tool, name, None)
        except Exception:  # a tool whose schema cannot be built: try the next
            continue
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema
    return None


def params_of(schema: ArgsSchema | None) -> Mapping[str, Any] | None:
    """The parameters ``schema`` declares (``None``: not known)."""
    return schema.model_fields if schema is not None else None


def _injected(field: FieldInfo) -> bool:
    """A parameter LangGraph fills in (the tool call's id, the state, the store): never in
    a model's or an approver's arguments."""
    return any(
        isinstance(m, InjectedToolArg) or (isinstance(m, type) and issubclass(m, InjectedToolArg))
        for m in field.metadata
    )


@lru_cache(maxsize=1024)
def _adapter(schema: ArgsSchema, name: str) -> TypeAdapter[Any] | None:
    field = schema.model_fields.get(name)
    if field is None or field.annotation is None:
        return None
    try:
        return TypeAdapter(field.annotation)
    except Exception:  # a type pydantic cannot validate on its own: take the value as given
        return None


def parse_edit(
    schema: ArgsSchema | None, args: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """``(arguments, None)`` read by ``schema``, or ``({}, "field: why")`` when one does not
    fit."""
    if schema is None:
        return dict(args), None
    fields = schema.model_fields
    missing = [
        n for n, f in fields.items() if f.is_required() and not _injected(f) and n not in args
    ]
    if missing:
        return {}, f"{missing[0]}: a required argument is missing (an edit gives them all)"
    unknown = [n for n in args if n not in fields]
    if unknown and fields:
        return {}, f"{unknown[0]}: the tool takes no such argument"
    out: dict[str, Any] = {}
    for name, value in args.items():
        adapter = _adapter(schema, name)
        if adapter is None:
            out[name] = value
            continue
        try:
            out[name] = adapter.validate_python(value)
            continue
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
        if isinstance(value, str):
            try:
                out[name] = adapter.validate_json(value)
                continue
            except ValidationError:
                pass
        return {}, f"{name}: {problem}"
    return out, None
