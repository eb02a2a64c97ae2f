"""Safe, bounded YAML reading for policy packs: every failure is a one-line problem.

Packs are plain data, so :class:`PackLoader` (derived from ``yaml.SafeLoader``) accepts only
the core tags (strings, numbers, booleans, null, lists, mappings), leaves dates as text (a
bad date then reaches the pack's own checks as a string, with its field), refuses
self-referential aliases, alias expansion beyond :data:`MAX_NODES` nodes (a "billion laughs"
document) and nesting deeper than :data:`MAX_DEPTH` levels. Each refusal names the line and,
where there is one, the field.
"""

from __future__ import annotations

import unicodedata
from typing import Any, cast

import yaml
from yaml.constructor import SafeConstructor

from agent_guardrails.errors import PolicyError, PolicyProblem

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Loc",
    "PackLoader",
    "compose_text",
    "construct",
    "decode_bytes",
    "field_name",
]

Loc = tuple[str | int, ...]

MAX_DEPTH = 64
"""The deepest nesting of lists and mappings a pack may have."""

MAX_NODES = 100_000
"""The most nodes a pack may have once every alias is expanded."""

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _CORE + name for name in ("null", "bool", "int", "float", "str", "seq", "map", "merge")
) | {_CORE + "timestamp", "!"}
_TIMESTAMP = _CORE + "timestamp"


class PackYAMLError(yaml.MarkedYAMLError):
    """A document the pack loader refuses; ``field`` is where it happened (may be empty)."""

    def __init__(self, message: str, mark: Any, field: str = "") -> None:
        super().__init__(problem=message, problem_mark=mark)
        self.field = field


class PackLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with limits; dates stay strings; only core tags are accepted."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, int] = {}
        self._path: list[str | int] = []
        self.locations: dict[int, Loc] = {}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        part = _loc_part(index)
        if part is not None:
            self._path.append(part)
        try:
            return self._compose_bounded(parent, index)
        finally:
            if part is not None:
                self._path.pop()

    def _compose_bounded(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        field = field_name(tuple(self._path))
        if isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if name in self._open_anchors:
                raise PackYAMLError(
                    f"alias *{name} refers to the node that contains it (a self-referential "
                    "alias); a pack must be a finite tree",
                    event.start_mark,
                    field,
                )
            alias = super().compose_node(parent, cast(int, index))
            self._count(self._sizes.get(id(alias), 1), event.start_mark, field)
            return alias
        tag: str | None = getattr(event, "tag", None)
        if tag is not None and tag not in _ALLOWED_TAGS:
            raise PackYAMLError(
                f"tag {_short_tag(tag)} is not allowed in a policy pack; write plain YAML "
                "(strings, numbers, booleans, lists and mappings)",
                event.start_mark,
                field,
            )
        is_collection = isinstance(event, yaml.CollectionStartEvent)
        if is_collection and self._depth >= MAX_DEPTH:
            raise PackYAMLError(
                f"nested more than {MAX_DEPTH} levels deep; a pack is a shallow document",
                event.start_mark,
                field,
            )
        anchor = event.anchor if isinstance(event, yaml.NodeEvent) else None
        if anchor is not None:
            self._open_anchors.add(str(anchor))
        before = self._expanded
        self._count(1, event.start_mark, field)
        self._depth += is_collection
        try:
            node = super().compose_node(parent, cast(int, index))
        finally:
            self._depth -= is_collection
            if anchor is not None:
                self._open_anchors.discard(str(anchor))
        if anchor is not None:
            self._sizes[id(node)] = self._expanded - before
        self.locations.setdefault(id(node), tuple(self._path))
        return node

    def _count(self, nodes: int, mark: Any, field: str) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise PackYAMLError(
                f"aliases expand the document beyond {MAX_NODES:,} nodes; "
                "a pack does not need that many",
                mark,
                field,
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            # An explicit core tag on a value it cannot read (``!!int abc``, a 5000-digit int).
            tag = _short_tag(str(node.tag))
            value = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PackYAMLError(
                f"cannot read {_clip(value)!r} as {tag}: {detail}",
                node.start_mark,
                field_name(self.locations.get(id(node), ())),
            ) from None


# Dates stay text: drop the implicit timestamp resolver, read an explicit !!timestamp as str.
PackLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _timestamp_as_text(loader: PackLoader, node: yaml.Node) -> str:
    return SafeConstructor.construct_yaml_str(loader, node)


PackLoader.add_constructor(_TIMESTAMP, _timestamp_as_text)


def compose_text(text: str, filename: str) -> tuple[PackLoader, yaml.Node | None]:
    """Parse ``text`` into a node tree (``None`` for an empty document).

    Raises :class:`PolicyError` with one problem for a syntax error or a refused document."""
    try:
        loader = PackLoader(text)
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise PolicyError([yaml_problem(exc, filename, text)]) from None
    return loader, node


def construct(loader: PackLoader, node: yaml.Node, filename: str, text: str) -> Any:
    """Build Python data from a composed tree; errors become a :class:`PolicyError`."""
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise PolicyError([yaml_problem(exc, filename, text)]) from None


def decode_bytes(data: bytes, filename: str) -> str:
    """Decode a pack file as UTF-8; invalid bytes are one problem naming their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise PolicyError(
            [
                PolicyProblem(
                    filename,
                    line,
                    "",
                    f"not valid UTF-8: byte(s) {bad} at column {column} (offset {exc.start}); "
                    "save the file as UTF-8",
                )
            ]
        ) from None


def yaml_problem(exc: yaml.YAMLError, filename: str, text: str) -> PolicyProblem:
    """One problem for a YAML error, with its line where PyYAML knows it."""
    if isinstance(exc, PackYAMLError):
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        return PolicyProblem(filename, line, exc.field, str(exc.problem))
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or str(exc)
        if exc.context and exc.problem:
            what = f"{exc.context}, {exc.problem}"
        return PolicyProblem(filename, line, "", f"not valid YAML: {what}")
    if isinstance(exc, yaml.reader.ReaderError):
        position = int(exc.position)
        line = text.count("\n", 0, position) + 1
        char = exc.character
        code = f"U+{ord(char):04X}" if isinstance(char, str) else f"0x{int(char):02X}"
        return PolicyProblem(
            filename,
            line,
            "",
            f"not valid YAML: character {code} is not allowed in a YAML document",
        )
    return PolicyProblem(filename, None, "", f"not valid YAML: {exc}")


def field_name(loc: Loc) -> str:
    """``actions.email.send.validators[0]`` for a location; odd keys are shown quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _plain(part) else repr(part)
            out += f".{text}" if out else text
    return out


def _plain(text: str) -> bool:
    return text != "" and all(
        ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp") for ch in text
    )


def _loc_part(index: object) -> str | int | None:
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    if isinstance(index, yaml.ScalarNode):
        return str(index.value)
    if isinstance(index, yaml.Node):
        return "<key>"
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _clip(value: object, limit: int = 40) -> object:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value
