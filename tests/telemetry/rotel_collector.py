"""A real OTLP collector for tests: run ``rotel-agent`` on free ports and read back what it got.

``rotel`` (a dev dependency, ``pip install rotel``) ships a Rust OTLP collector binary inside its
wheel, at ``site-packages/rotel/rotel-agent``. :func:`start_rotel` runs it in the foreground::

    rotel-agent start --otlp-grpc-endpoint 127.0.0.1:P1 --otlp-http-endpoint 127.0.0.1:P2
        --exporter blackhole --debug-log traces --debug-log-verbosity detailed
        --pid-file <workdir>/rotel-agent.pid --log-file <workdir>/rotel-agent.log

(no ``--daemon``, so it neither forks nor writes the pid or log file; both paths point into the
work directory anyway so nothing lands in ``/tmp``), with ``NO_COLOR=1`` (its own log lines are
ANSI-coloured otherwise) and without any ``ROTEL_*`` variable of ours, since every flag above can
also come from one. stdout and stderr go to ``<workdir>/rotel-output.log``. rotel has no query
API: the only record of what it received is that output, which :func:`parse_rotel_output` reads.

Output format (rotel 0.0.1a15, agent ``0.0.1-alpha10``; modelled on the OpenTelemetry
collector's debug exporter). Each export request it receives is printed as one block, with one
``print!`` (so blocks never interleave with each other or with log lines), at receive time::

    2026-11-23T22:39:07.433612Z  INFO Starting Rotel. grpc_endpoint="127.0.0.1:P1" ...
    ResourceSpans #0                         <- numbering restarts at 0 in every block
    Resource SchemaURL: <url>
    Resource attributes:                     <- only when there are some
         -> service.name: Str(svc)           <- 5 spaces, "-> ", key, ": ", typed value
    ScopeSpans #0
    ScopeSpans SchemaURL: <url>
    InstrumentationScope <name> <version>   <- version may be empty (trailing space)
    InstrumentationScope attributes:         <- only when there are some
         -> scope.attr: Str(sv)
    Span #0
        Trace ID       : 32 hex digits
        Parent ID      : 16 hex digits, or empty for a root span
        ID             : 16 hex digits
        Name           : <name>
        Kind           : SPAN_KIND_INTERNAL | _SERVER | _CLIENT | _PRODUCER | _CONSUMER
        TraceState     : vendor=abc          <- only when not empty
    Start time: <unix nanos>                 <- not indented
    End time: <unix nanos>
        Status code    : STATUS_CODE_UNSET | STATUS_CODE_OK | STATUS_CODE_ERROR
        Status message : <description, may be empty>
    Attributes:                              <- only when there are some
         -> s: Str(hello world)
         -> i: Int(42)
         -> f: Double(1.5)                   <- Rust formatting: 2.0 is "2", also inf, NaN
         -> b: Bool(true)
         -> arr: Slice(Str(a), Str(b, c))    <- elements joined by ", ", never quoted
    Events:                                  <- only when there are some
    SpanEvent #0
         -> Name: <name>
         -> Timestamp: <unix nanos>
         -> DroppedAttributesCount: 0
         -> Attributes::                     <- double colon; only when there are some
              -> ev.s: Str(v)                <- 10 spaces
    Links:                                   <- only when there are some
    SpanLink #0
         -> Trace ID: <hex>
         -> ID: <hex>
         -> TraceState: <may be empty>
         -> DroppedAttributesCount: 0
         -> Attributes::
              -> link.attr: Str(x)
    Span #1
    ...
    ResourceSpans #1                         <- several resources can share one block

Other values: ``Map(k:Str(v), k2:Int(1))``, ``Bytes([1, 2])`` (Rust ``Debug`` of the bytes) and
``Empty``. Span-level dropped counts and flags are not printed.

Nothing is escaped, so the parser copes with ambiguity as follows:

* A string (or span name, status message, event name) containing a newline continues on the
  next lines verbatim. A line that is not part of the structure above continues the last value;
  an attribute value whose text does not end in ``)`` yet takes the next line whatever it looks
  like (so a string holding ``\\nSpan #0\\n`` is read right as long as that line does not end the
  value). rotel's own log lines (``<RFC 3339 time>  INFO ...``) only come between blocks and are
  skipped.
* Inside ``Slice(...)``/``Map(...)`` a ``Str(...)`` may contain ``)`` or ``, ``: the parser tries
  every place it could end and keeps the first reading that accounts for the whole value. A
  top-level ``Str(...)`` is unambiguous.

A block is written with one ``write(2)``, but a reader may still catch it half written, so
:meth:`RotelCollector.spans` only trusts a read that ends in a newline and after which the file
did not grow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeAlias

AttributeValue: TypeAlias = (
    str | int | float | bool | bytes | list["AttributeValue"] | dict[str, "AttributeValue"] | None
)
"""A decoded ``AnyValue``: ``Str``/``Int``/``Double``/``Bool`` become ``str``/``int``/``float``/
``bool``, ``Slice`` a ``list``, ``Map`` a ``dict``, ``Bytes`` ``bytes`` and ``Empty`` ``None``."""

Attributes: TypeAlias = dict[str, AttributeValue]
SpanCondition: TypeAlias = Callable[[list["ReceivedSpan"]], bool]

HOST = "127.0.0.1"
RESERVED_PORTS = frozenset({4317, 4318})  # the OTLP defaults: a developer's own collector
DEFAULT_TIMEOUT = 10.0
_POLL_INTERVAL = 0.02
_OUTPUT_TAIL_LINES = 60


# --------------------------------------------------------------------------------------------
# What a test gets back


@dataclass(frozen=True)
class ReceivedEvent:
    """One span event as rotel printed it."""

    name: str
    timestamp_unix_nano: int
    attributes: Attributes


@dataclass(frozen=True)
class ReceivedLink:
    """One span link as rotel printed it; ids are lower-case hex."""

    trace_id: str
    span_id: str
    trace_state: str
    attributes: Attributes


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as rotel printed it.

    Ids are lower-case hex (``opentelemetry.trace.format_trace_id``/``format_span_id``);
    ``parent_span_id`` is ``None`` for a root span. ``kind`` and ``status_code`` drop rotel's
    ``SPAN_KIND_``/``STATUS_CODE_`` prefix, so they equal ``SpanKind.X.name`` and
    ``StatusCode.X.name`` (``"INTERNAL"``, ``"SERVER"``, ... and ``"UNSET"``, ``"OK"``,
    ``"ERROR"``).
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    status_code: str
    status_message: str
    attributes: Attributes
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    resource: Attributes
    scope_name: str
    scope_version: str
    scope_attributes: Attributes
    trace_state: str
    start_time_unix_nano: int
    end_time_unix_nano: int

    @property
    def service_name(self) -> str | None:
        value = self.resource.get("service.name")
        return value if isinstance(value, str) else None


class RotelError(RuntimeError):
    """rotel could not be found, started or understood."""


class RotelNotInstalledError(RotelError):
    """The ``rotel-agent`` binary is missing."""


class RotelStartError(RotelError):
    """``rotel-agent`` did not come up on its ports."""


class RotelParseError(RotelError):
    """rotel printed something the parser cannot read."""


class SpansNotReceivedError(AssertionError):
    """The spans a test waited for did not reach the collector in time."""


# --------------------------------------------------------------------------------------------
# Attribute values


_TAGS = ("Str", "Int", "Double", "Bool", "Bytes", "Slice", "Map")
_TAG_AT = re.compile(r"(?:Str|Int|Double|Bool|Bytes|Slice|Map)\(|Empty")


def parse_attribute_value(text: str) -> AttributeValue:
    """Decode one printed value, e.g. ``Slice(Str(a), Int(2))`` -> ``["a", 2]``."""
    if text.startswith("Str(") and text.endswith(")"):
        return text[4:-1]  # the only unambiguous case for a string; also the common one
    for value, end in _parse_any(text, 0):
        if end == len(text):
            return value
    raise RotelParseError(f"cannot read attribute value {text!r}")


def _parse_any(s: str, i: int) -> Iterator[tuple[AttributeValue, int]]:
    """Every way to read one value starting at ``s[i]``, as (value, end); shortest first."""
    if s.startswith("Empty", i):
        yield None, i + 5
        return
    tag = next((t for t in _TAGS if s.startswith(t + "(", i)), None)
    if tag is None:
        return
    start = i + len(tag) + 1
    if tag == "Str":
        end = s.find(")", start)
        while end != -1:
            yield s[start:end], end + 1
            end = s.find(")", end + 1)
    elif tag == "Slice":
        if s.startswith(")", start):
            yield [], start + 1
        else:
            yield from _parse_slice_items(s, start, [])
    elif tag == "Map":
        if s.startswith(")", start):
            yield {}, start + 1
        else:
            yield from _parse_map_items(s, start, {})
    else:
        end = s.find(")", start)
        if end == -1:
            return
        try:
            scalar = _scalar(tag, s[start:end])
        except ValueError:
            return
        yield scalar, end + 1


def _parse_slice_items(
    s: str, i: int, done: list[AttributeValue]
) -> Iterator[tuple[AttributeValue, int]]:
    for value, end in _parse_any(s, i):
        if s.startswith(", ", end):
            yield from _parse_slice_items(s, end + 2, [*done, value])
        if s.startswith(")", end):
            yield [*done, value], end + 1


def _parse_map_items(s: str, i: int, done: Attributes) -> Iterator[tuple[AttributeValue, int]]:
    colon = s.find(":", i)
    while colon != -1:
        if _TAG_AT.match(s, colon + 1):
            key = s[i:colon]
            for value, end in _parse_any(s, colon + 1):
                if s.startswith(", ", end):
                    yield from _parse_map_items(s, end + 2, {**done, key: value})
                if s.startswith(")", end):
                    yield {**done, key: value}, end + 1
        colon = s.find(":", colon + 1)


def _scalar(tag: str, raw: str) -> AttributeValue:
    """``Int``/``Double``/``Bool``/``Bytes`` contents; ValueError if they are not that."""
    if tag == "Int":
        return int(raw)
    if tag == "Double":
        return float(raw)  # Rust prints inf, -inf and NaN, which float() reads too
    if tag == "Bool" and raw in ("true", "false"):
        return raw == "true"
    if tag == "Bytes" and raw.startswith("[") and raw.endswith("]"):  # Rust Debug of Vec<u8>
        inner = raw[1:-1].strip()
        return bytes(int(b) for b in inner.split(",")) if inner else b""
    raise ValueError(f"not a {tag}: {raw!r}")


# --------------------------------------------------------------------------------------------
# The output parser


_LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\s+(?:TRACE|DEBUG|INFO|WARN|ERROR)\s"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RESOURCE = re.compile(r"^ResourceSpans #\d+$")
_SCOPE_SPANS = re.compile(r"^ScopeSpans #\d+$")
_SCHEMA = re.compile(r"^(?:Resource|ScopeSpans) SchemaURL:")
_SCOPE = re.compile(r"^InstrumentationScope (.*)$")
_SPAN = re.compile(r"^Span #\d+$")
_SPAN_FIELD = re.compile(
    r"^    (Trace ID|Parent ID|ID|Name|Kind|TraceState|Status code|Status message|Flags"
    r"|DroppedAttributesCount|DroppedEventsCount|DroppedLinksCount|Start time|End time)"
    r" *: ?(.*)$"
)
_TIME = re.compile(r"^(Start time|End time): ?(.*)$")
_EVENT = re.compile(r"^SpanEvent #\d+$")
_LINK = re.compile(r"^SpanLink #\d+$")
_SUB_FIELD = re.compile(
    r"^     -> (Name|Timestamp|DroppedAttributesCount|Trace ID|ID|TraceState): ?(.*)$"
)
_SUB_ATTRIBUTES = re.compile(r"^     -> Attributes::?$")
_ATTRIBUTE = re.compile(
    r"^(?P<indent> {5}| {10})-> (?P<key>.*?): "
    r"(?P<value>(?:Str|Int|Double|Bool|Bytes|Slice|Map)\(.*|Empty)$"
)


@dataclass
class _EventDraft:
    name: str = ""
    timestamp: str = "0"
    attributes: Attributes = field(default_factory=dict)


@dataclass
class _LinkDraft:
    trace_id: str = ""
    span_id: str = ""
    trace_state: str = ""
    attributes: Attributes = field(default_factory=dict)


@dataclass
class _ScopeDraft:
    name: str = ""
    version: str = ""
    attributes: Attributes = field(default_factory=dict)


@dataclass
class _SpanDraft:
    resource: Attributes
    scope: _ScopeDraft
    fields: dict[str, str] = field(default_factory=dict)
    attributes: Attributes = field(default_factory=dict)
    events: list[_EventDraft] = field(default_factory=list)
    links: list[_LinkDraft] = field(default_factory=list)

    def build(self) -> ReceivedSpan:
        f = self.fields
        return ReceivedSpan(
            name=f.get("Name", ""),
            trace_id=f.get("Trace ID", ""),
            span_id=f.get("ID", ""),
            parent_span_id=f.get("Parent ID") or None,
            kind=f.get("Kind", "").removeprefix("SPAN_KIND_"),
            status_code=f.get("Status code", "").removeprefix("STATUS_CODE_"),
            status_message=f.get("Status message", ""),
            attributes=dict(self.attributes),
            events=[
                ReceivedEvent(e.name, _int(e.timestamp), dict(e.attributes)) for e in self.events
            ],
            links=[
                ReceivedLink(link.trace_id, link.span_id, link.trace_state, dict(link.attributes))
                for link in self.links
            ],
            resource=dict(self.resource),
            scope_name=self.scope.name,
            scope_version=self.scope.version,
            scope_attributes=dict(self.scope.attributes),
            trace_state=f.get("TraceState", ""),
            start_time_unix_nano=_int(f.get("Start time", "0")),
            end_time_unix_nano=_int(f.get("End time", "0")),
        )


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


class _Pending:
    """A value still being read: more lines may continue it."""

    def __init__(self, first_line: str, commit: Callable[[str], None], *, typed: bool) -> None:
        self.lines = [first_line]
        self.commit_to = commit
        self.typed = typed

    def needs_more(self) -> bool:
        """A typed value is not finished before its closing parenthesis."""
        text = self.lines[-1]
        return self.typed and text != "Empty" and not text.endswith(")")

    def commit(self) -> None:
        self.commit_to("\n".join(self.lines))


class _Parser:
    def __init__(self) -> None:
        self.spans: list[_SpanDraft] = []
        self.state = "none"
        self.pending: _Pending | None = None
        self.resource: Attributes = {}
        self.scope = _ScopeDraft()
        self.span: _SpanDraft | None = None
        self.event: _EventDraft | None = None
        self.link: _LinkDraft | None = None

    def feed(self, line: str) -> None:
        if self.pending is not None and self.pending.needs_more():
            self.pending.lines.append(line)
            return
        if self._structure(line):
            return
        if _LOG_LINE.match(line):  # only ever between blocks
            self._flush()
            self.state = "none"
        elif self.pending is not None:
            self.pending.lines.append(line)

    def finish(self) -> list[ReceivedSpan]:
        self._flush()
        return [draft.build() for draft in self.spans]

    def _flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.commit()

    def _text(self, first: str, commit: Callable[[str], None]) -> None:
        self._flush()
        self.pending = _Pending(first, commit, typed=False)

    def _attribute(self, line: str, target: Attributes, indent: int) -> bool:
        match = _ATTRIBUTE.match(line)
        if match is None or len(match["indent"]) != indent:
            return False
        self._flush()
        key = match["key"]

        def commit(raw: str) -> None:
            try:
                target[key] = parse_attribute_value(raw)
            except RotelParseError as error:
                raise RotelParseError(f"attribute {key!r}: {error}") from None

        self.pending = _Pending(match["value"], commit, typed=True)
        return True

    def _structure(self, line: str) -> bool:
        """Handle ``line`` if it is part of the block structure in the current state."""
        state = self.state
        if _RESOURCE.match(line):
            self._flush()
            self.resource, self.scope, self.span = {}, _ScopeDraft(), None
            self.state = "resource"
            return True
        if state == "none":
            return False
        if _SCOPE_SPANS.match(line):
            self._flush()
            self.scope, self.span = _ScopeDraft(), None
            self.state = "scope"
            return True
        if _SPAN.match(line):
            self._flush()
            self.span = _SpanDraft(resource=self.resource, scope=self.scope)
            self.spans.append(self.span)
            self.state = "span"
            return True
        if state in ("resource", "resource_attributes"):
            if _SCHEMA.match(line):
                self._flush()
                return True
            if line == "Resource attributes:":
                self._flush()
                self.state = "resource_attributes"
                return True
            return state == "resource_attributes" and self._attribute(line, self.resource, 5)
        if state in ("scope", "scope_attributes"):
            if _SCHEMA.match(line):
                self._flush()
                return True
            if line == "InstrumentationScope attributes:":
                self._flush()
                self.state = "scope_attributes"
                return True
            if state == "scope" and (match := _SCOPE.match(line)):
                self._flush()
                name, _, version = match[1].rpartition(" ")
                self.scope.name, self.scope.version = (name, version) if name else (version, "")
                return True
            return state == "scope_attributes" and self._attribute(line, self.scope.attributes, 5)
        span = self.span
        if span is None:
            return False
        if line == "Attributes:" and state == "span":
            self._flush()
            self.state = "span_attributes"
            return True
        if line == "Events:" and state in ("span", "span_attributes"):
            self._flush()
            self.state = "events"
            return True
        if line == "Links:" and state in ("span", "span_attributes", "event", "event_attributes"):
            self._flush()
            self.state = "links"
            return True
        if state == "span":
            match = _SPAN_FIELD.match(line) or _TIME.match(line)
            if match is None:
                return False
            name = match[1]

            def commit_field(raw: str) -> None:
                span.fields[name] = raw

            self._text(match[2], commit_field)
            return True
        if state == "span_attributes":
            return self._attribute(line, span.attributes, 5)
        if _EVENT.match(line) and state in ("events", "event", "event_attributes"):
            self._flush()
            self.event = _EventDraft()
            span.events.append(self.event)
            self.state = "event"
            return True
        if _LINK.match(line) and state in ("links", "link", "link_attributes"):
            self._flush()
            self.link = _LinkDraft()
            span.links.append(self.link)
            self.state = "link"
            return True
        if state == "event" and self.event is not None:
            return self._event_line(line, self.event)
        if state == "link" and self.link is not None:
            return self._link_line(line, self.link)
        if state == "event_attributes" and self.event is not None:
            return self._attribute(line, self.event.attributes, 10)
        if state == "link_attributes" and self.link is not None:
            return self._attribute(line, self.link.attributes, 10)
        return False

    def _event_line(self, line: str, event: _EventDraft) -> bool:
        if _SUB_ATTRIBUTES.match(line):
            self._flush()
            self.state = "event_attributes"
            return True
        match = _SUB_FIELD.match(line)
        if match is None:
            return False
        name = match[1]

        def commit(raw: str) -> None:
            if name == "Name":
                event.name = raw
            elif name == "Timestamp":
                event.timestamp = raw

        self._text(match[2], commit)
        return True

    def _link_line(self, line: str, link: _LinkDraft) -> bool:
        if _SUB_ATTRIBUTES.match(line):
            self._flush()
            self.state = "link_attributes"
            return True
        match = _SUB_FIELD.match(line)
        if match is None:
            return False
        name = match[1]

        def commit(raw: str) -> None:
            if name == "Trace ID":
                link.trace_id = raw
            elif name == "ID":
                link.span_id = raw
            elif name == "TraceState":
                link.trace_state = raw

        self._text(match[2], commit)
        return True


def parse_rotel_output(text: str) -> list[ReceivedSpan]:
    """Every span in rotel's ``--debug-log traces --debug-log-verbosity detailed`` output, in
    the order it printed them (see the module docstring for the format)."""
    parser = _Parser()
    lines = _ANSI.sub("", text).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        parser.feed(line)
    return parser.finish()


# --------------------------------------------------------------------------------------------
# The collector process


def find_rotel_agent() -> Path:
    """The ``rotel-agent`` binary inside the installed ``rotel`` package (never downloaded)."""
    spec = importlib.util.find_spec("rotel")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "rotel-agent"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    where = ", ".join(locations) or "no `rotel` package is installed"
    raise RotelNotInstalledError(
        f"the rotel-agent collector binary was not found ({where}). It comes with the `rotel` "
        "dev dependency: run `make test` (it installs `.[dev]`), or "
        "`.venv/bin/pip install -e '.[dev]'`."
    )


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in taken and port not in RESERVED_PORTS:
            return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _child_environment() -> dict[str, str]:
    """Ours minus every ``ROTEL_*`` setting (each flag has one) and ``RUST_LOG``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ROTEL_") and key != "RUST_LOG"
    }
    env["NO_COLOR"] = "1"
    return env


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Last resort when a collector is garbage collected or the interpreter exits unstopped."""
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


class RotelCollector:
    """One ``rotel-agent`` process on two free ports of 127.0.0.1.

    Use :func:`start_rotel`, which starts it; it is a context manager that stops it on exit.
    """

    def __init__(self, workdir: Path, *, binary: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.binary = binary
        self.output_path = self.workdir / "rotel-output.log"
        self.grpc_port = 0
        self.http_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._output_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], RotelCollector] | None = None

    # endpoints -------------------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:P``: the base URL (``OTEL_EXPORTER_OTLP_ENDPOINT`` style)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def http_traces_endpoint(self) -> str:
        """The full traces URL, which the OTLP/HTTP ``OTLPSpanExporter(endpoint=...)`` wants."""
        return f"{self.http_endpoint}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:P``, for the OTLP/gRPC ``OTLPSpanExporter(endpoint=...,
        insecure=True)``."""
        return f"http://{HOST}:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    # life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT, *, attempts: int = 5) -> Self:
        """Start rotel and wait until both ports accept connections.

        Ports are picked free but may be taken by someone else before rotel binds them (other
        test runs share this machine); rotel then exits at once and this retries on new ports.
        """
        if self._process is not None:
            raise RotelError("this rotel collector was already started")
        binary = self.binary if self.binary is not None else find_rotel_agent()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise RotelNotInstalledError(
                f"no executable rotel-agent at {binary}; it comes with the `rotel` dev "
                "dependency: run `make test` (it installs `.[dev]`)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for attempt in range(1, attempts + 1):
            self.grpc_port = _free_port(set())
            self.http_port = _free_port({self.grpc_port})
            self._launch(binary)
            outcome = self._wait_until_listening(deadline)
            if outcome == "ready":
                return self
            self._stop_process()
            output = self.output()
            if outcome == "exited" and "in use" in output and attempt < attempts:
                continue  # lost a port race; try new ports
            raise RotelStartError(
                f"rotel-agent did not start listening on {HOST}:{self.grpc_port} (gRPC) and "
                f"{HOST}:{self.http_port} (HTTP) within {timeout:.1f}s ({outcome}, exit code "
                f"{self.returncode}).\ncommand: {' '.join(self._command(binary))}\n"
                f"rotel output:\n{_tail(output)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "start",
            "--otlp-grpc-endpoint",
            f"{HOST}:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"{HOST}:{self.http_port}",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            # Only written with --daemon, which we never pass; keep them out of /tmp anyway.
            "--pid-file",
            str(self.workdir / "rotel-agent.pid"),
            "--log-file",
            str(self.workdir / "rotel-agent.log"),
        ]

    def _launch(self, binary: Path) -> None:
        self._output_file = self.output_path.open("wb")
        self._process = subprocess.Popen(
            self._command(binary),
            stdin=subprocess.DEVNULL,
            stdout=self._output_file,
            stderr=subprocess.STDOUT,
            env=_child_environment(),
            cwd=self.workdir,
        )
        self._finalizer = weakref.finalize(self, _reap, self._process)

    def _wait_until_listening(self, deadline: float) -> str:
        process = self._process
        assert process is not None
        pending = [self.grpc_port, self.http_port]
        while True:
            if process.poll() is not None:
                return "exited"
            pending = [port for port in pending if not _accepts(port)]
            if not pending:
                # Someone else could hold a port we picked: make sure rotel is still up.
                time.sleep(0.01)
                return "ready" if process.poll() is None else "exited"
            if time.monotonic() >= deadline:
                return "timed out"
            time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop rotel: SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        self._stop_process(timeout)

    def _stop_process(self, timeout: float = 5.0) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # what arrived ----------------------------------------------------------------------------

    def output(self) -> str:
        """Everything rotel printed so far (ANSI colours removed)."""
        try:
            data = self.output_path.read_bytes()
        except FileNotFoundError:
            return ""
        return _ANSI.sub("", data.decode("utf-8", errors="replace"))

    def _settled_output(self) -> str | None:
        """The output, or None if rotel may be in the middle of writing a block."""
        try:
            data = self.output_path.read_bytes()
            size_after = self.output_path.stat().st_size
        except FileNotFoundError:
            return ""
        if size_after != len(data) or (data and not data.endswith(b"\n")):
            return None
        return data.decode("utf-8", errors="replace")

    def spans(
        self,
        wait_for: int | SpanCondition | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[ReceivedSpan]:
        """The spans rotel received so far, in arrival order.

        Export is asynchronous, so ``wait_for`` waits (up to ``timeout`` seconds) until at least
        that many spans arrived, or until the callable returns true for the spans so far; then
        returns all of them. On timeout (or if rotel died) raises :class:`SpansNotReceivedError`
        with what did arrive and rotel's output. Without ``wait_for`` returns at once.
        """
        condition, description = _condition(wait_for)
        deadline = time.monotonic() + timeout
        received: list[ReceivedSpan] = []
        while True:
            exited = not self.running
            text = self._settled_output()
            if text is not None:
                received = parse_rotel_output(text)
                if condition(received):
                    return received
            if exited or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_INTERVAL)
        why = (
            f"rotel exited (code {self.returncode})"
            if exited
            else f"nothing more arrived within {timeout:.1f}s"
        )
        names = [span.name for span in received]
        raise SpansNotReceivedError(
            f"waited for {description} at the rotel collector but it received "
            f"{len(received)} span(s) {names}: {why}.\n"
            f"rotel output ({self.output_path}):\n{_tail(self.output())}"
        )

    def span(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> ReceivedSpan:
        """The one span called ``name``, waiting for it to arrive."""

        def named(spans: list[ReceivedSpan]) -> bool:
            return any(span.name == name for span in spans)

        named.__name__ = f"name == {name!r}"
        matches = [
            span for span in self.spans(wait_for=named, timeout=timeout) if span.name == name
        ]
        if len(matches) != 1:
            raise AssertionError(f"expected one span named {name!r}, rotel received {len(matches)}")
        return matches[0]


def _condition(wait_for: int | SpanCondition | None) -> tuple[SpanCondition, str]:
    if wait_for is None:
        return (lambda _spans: True), "a settled output"
    if isinstance(wait_for, int):
        count = wait_for
        return (lambda spans: len(spans) >= count), f"{count} span(s)"
    return wait_for, f"spans satisfying {getattr(wait_for, '__name__', repr(wait_for))}"


def _tail(text: str, lines: int = _OUTPUT_TAIL_LINES) -> str:
    kept = text.splitlines()
    if len(kept) <= lines:
        return text or "(no output)"
    return f"... ({len(kept) - lines} earlier lines)\n" + "\n".join(kept[-lines:])


def start_rotel(
    tmp_path: Path, *, binary: Path | None = None, timeout: float = DEFAULT_TIMEOUT
) -> RotelCollector:
    """Start a rotel collector whose files live in a fresh directory under ``tmp_path``.

    The result is running and is a context manager that stops it::

        with start_rotel(tmp_path) as rotel:
            exporter = OTLPSpanExporter(endpoint=rotel.http_traces_endpoint)
            ...
            spans = rotel.spans(wait_for=2)
    """
    workdir = Path(tempfile.mkdtemp(prefix="rotel-", dir=tmp_path))
    return RotelCollector(workdir, binary=binary).start(timeout)


__all__ = [
    "AttributeValue",
    "Attributes",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedSpan",
    "RotelCollector",
    "RotelError",
    "RotelNotInstalledError",
    "RotelParseError",
    "RotelStartError",
    "SpansNotReceivedError",
    "find_rotel_agent",
    "parse_attribute_value",
    "parse_rotel_output",
    "start_rotel",
]
