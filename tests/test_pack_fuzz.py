"""Fuzzing the pack loader: every mutation of the example pack loads or is a PolicyError.

Each mutation is built from a fixed seed, so a failure names a case that can be re-run.
A malformed pack must end in problems with a file and a message, never in another
exception (a traceback for the user of ``agent-guardrails policy validate``).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_guardrails.errors import PolicyError
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.demo.run import pack_path
from agent_guardrails.policy.loader import load_pack

BASE = pack_path().read_bytes()
LINES = BASE.splitlines(keepends=True)
FILENAME = "fuzz.yaml"

Mutation = Callable[[random.Random], bytes]


def _byte_flip(rng: random.Random) -> bytes:
    data = bytearray(BASE)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _truncate(rng: random.Random) -> bytes:
    return BASE[: rng.randrange(len(BASE))]


def _delete_line(rng: random.Random) -> bytes:
    lines = list(LINES)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def _duplicate_line(rng: random.Random) -> bytes:
    lines = list(LINES)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"".join(lines)


def _replace_value(rng: random.Random, values: list[bytes]) -> bytes:
    """Put one of ``values`` in place of a value on a random ``key: value`` line."""
    lines = list(LINES)
    candidates = [
        i for i, line in enumerate(lines) if b": " in line and not line.lstrip().startswith(b"#")
    ]
    i = rng.choice(candidates)
    key, _, _ = lines[i].partition(b": ")
    lines[i] = key + b": " + rng.choice(values) + b"\n"
    return b"".join(lines)


ALIASES = [
    b"&a [x, *a]",
    b"&a {k: *a}",
    b"&a [[[*a]]]",
    b"*undefined",
    b"&b 5",
    b"&c [1, 2]",
]
DEEP = [b"[" * n + b"]" * n for n in (10, 63, 65, 300)] + [
    b"{a: " * n + b"1" + b"}" * n for n in (64, 70, 500)
]
TAGS = [
    b"!!python/object:os.system {}",
    b"!!python/object/apply:os.system ['true']",
    b"!!python/name:builtins.eval ''",
    b"!!python/tuple [1, 2]",
    b"!custom value",
    b"!!binary aGVsbG8=",
    b"!!set {a, b}",
    b"!!int abc",
    b"!!float nope",
    b"!!bool maybe",
    b"!!timestamp 2026-13-45",
    b"!!str [1]",
]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]
DATES = [b"2026-13-45", b"2026-02-30", b"2026-01-01", b"2026-01-01T25:61:61Z", b"0000-00-00"]
NUMBERS = [b"1e999999", b"-1e999999", b"9" * 5000, b"9" * 400, b".nan", b".inf", b"-.inf", b"0x"]
WRONG_TYPES = [b"[]", b"{}", b"null", b"true", b"~", b"''", b"[1, {a: b}]", b"-3", b"0", b"1:20:30"]
CONTROL = [b'"a\\u200bb"', b'"a\\x00b"', b'"line\\nbreak"', b'"rtl\\u202eoverride"', b'"\\t"']


def _insert_bad_utf8(rng: random.Random) -> bytes:
    i = rng.randrange(len(BASE))
    return BASE[:i] + rng.choice(BAD_UTF8) + BASE[i:]


def _billion_laughs(rng: random.Random) -> bytes:
    width = rng.randint(8, 12)
    doc = [b"lol0: &l0 [lol, lol]\n"]
    for k in range(1, rng.randint(6, 10)):
        refs = b", ".join(b"*l%d" % (k - 1) for _ in range(width))
        doc.append(b"lol%d: &l%d [%s]\n" % (k, k, refs))
    return BASE + b"".join(doc)


def _whole_document(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"",
            b"# nothing\n",
            b"[1, 2]\n",
            b"just text\n",
            b"---\na: 1\n---\nb: 2\n",
            b"\xef\xbb\xbf",
        ]
        + [b"name: x\nversion: '1'\nx: " + t + b"\n" for t in TAGS]
    )


MUTATIONS: dict[str, tuple[Mutation, int]] = {
    "byte_flip": (_byte_flip, 60),
    "truncate": (_truncate, 30),
    "delete_line": (_delete_line, 30),
    "duplicate_line": (_duplicate_line, 30),
    "alias": (lambda rng: _replace_value(rng, ALIASES), 25),
    "deep": (lambda rng: _replace_value(rng, DEEP), 15),
    "tag": (lambda rng: _replace_value(rng, TAGS), 25),
    "bad_utf8": (_insert_bad_utf8, 20),
    "date": (lambda rng: _replace_value(rng, DATES), 15),
    "number": (lambda rng: _replace_value(rng, NUMBERS), 20),
    "wrong_type": (lambda rng: _replace_value(rng, WRONG_TYPES), 25),
    "control_char": (lambda rng: _replace_value(rng, CONTROL), 15),
    "billion_laughs": (_billion_laughs, 3),
    "document": (_whole_document, 10),
}


def cases() -> Iterator[tuple[str, bytes]]:
    for name, (mutate, count) in MUTATIONS.items():
        for seed in range(count):
            yield f"{name}-{seed}", mutate(random.Random(f"{name}-{seed}"))


CASES = list(cases())


def test_there_are_at_least_300_mutations() -> None:
    assert len(CASES) >= 300


def _check(data: bytes, path: Path) -> PolicyError | None:
    path.write_bytes(data)
    try:
        load_pack(path)
    except PolicyError as exc:
        error = exc
    else:
        return None
    assert error.problems
    for problem in error.problems:
        assert problem.file == str(path)
        assert problem.message.strip()
        assert "\n" not in str(problem)
    return error


def test_every_mutation_loads_or_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    failures: list[str] = []
    refused = 0
    for case, data in CASES:
        try:
            refused += _check(data, path) is not None
        except Exception as exc:  # any other exception is the bug we look for
            failures.append(f"{case}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)
    assert refused > len(CASES) // 2  # the mutations do break packs


@pytest.mark.parametrize(
    "family", ["alias", "deep", "tag", "bad_utf8", "date", "number", "control_char"]
)
def test_refusals_name_a_line(family: str, tmp_path: Path) -> None:
    """Problems from these families point at a line (the user can find them)."""
    path = tmp_path / FILENAME
    for case, data in CASES:
        if case.startswith(f"{family}-"):
            exc = _check(data, path)
            if exc is not None:
                assert all(p.line is not None for p in exc.problems), (case, exc)


def test_the_cli_reports_every_problem_of_every_file(tmp_path: Path) -> None:
    """``policy validate`` checks every file (undecodable ones included) and prints one line
    per problem, exiting 1 when any failed."""
    picked = [c for c in CASES if c[0].endswith(("-0", "-1", "-2"))]
    paths: list[str] = []
    expected: list[str] = []
    for i, (case, data) in enumerate(picked):
        path = tmp_path / f"{i:03d}-{case}.yaml"
        exc = _check(data, path)
        paths.append(str(path))
        if exc is None:
            expected.append(f"{path}: ok ")
        else:
            expected.extend(str(p) for p in exc.problems)
    assert any(p.endswith("bad_utf8-0.yaml") for p in paths)
    out = io.StringIO()
    code = main(["policy", "validate", *paths], out)
    lines = out.getvalue().splitlines()
    assert code == 1
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want)
