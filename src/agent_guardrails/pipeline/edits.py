"""An approver's edited arguments, read by the tool's own argument schema.

A chat UI sends edited values as text: a list argument (``to``) comes back as the JSON
string ``'["c-1", "c-2"]'``. Each edited argument the tool's schema knows is validated by
its field's type (pydantic, lax mode: ``"5"`` for an ``int`` is 5); a string that does not
fit is then read as JSON (so the JSON text of a list becomes the list). A value that fits
neither way refuses the edit with the field named, and nothing runs. Arguments the schema
does not know pass as given (the tool decides); tools without a pydantic schema take the
edit as given.

>>> from pydantic import BaseModel
>>> class Send(BaseModel):
...     to: list[str]
...     subject: str
>>> parse_edit(Send, {"to": '["c-1", "c-2"]', "subject": "Hi"})
({'to': ['c-1', 'c-2'], 'subject': 'Hi'}, None)
>>> parse_edit(Send, {"to": 42})[1]
'to: Input should be a valid list'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = ["ArgsSchema", "parse_edit", "schema_of"]

ArgsSchema = type[BaseModel]


def schema_of(tool: object | None) -> ArgsSchema | None:
    """The tool's pydantic argument schema, if it has one (a LangChain tool's
    ``args_schema``; ``None`` for a JSON-schema dict or no tool)."""
    schema = getattr(tool, "args_schema", None)
    return schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None


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
