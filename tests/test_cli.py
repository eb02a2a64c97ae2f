"""The operator CLI end to end, on a SQLite store file shared by every command."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent_guardrails import CallRequest, Guardrails, Scope
from agent_guardrails.ops.cli import main
from agent_guardrails.ops.demo.run import pack_path

PACK_V1 = """\
name: shop
version: "1"
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 2}
  page.publish: {risk: high, kind: execute}
levels:
  - {scope: {workflow: promo}, level: execute, ceiling: optimize}
budgets:
  - {name: promo-daily, scope: {workflow: promo}, limit: 10, window: day}
"""

PACK_V2 = PACK_V1.replace('version: "1"', 'version: "2"').replace("limit: 10", "limit: 20")


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def run_json(*argv: str) -> Any:
    code, text = run(*argv, "--json")
    assert code == 0, text
    return json.loads(text)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ops.db'}"


@pytest.fixture
def packs(tmp_path: Path) -> tuple[Path, Path]:
    v1 = tmp_path / "v1.yaml"
    v2 = tmp_path / "v2.yaml"
    v1.write_text(PACK_V1)
    v2.write_text(PACK_V2)
    return v1, v2


def test_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nversion: 1\nactions:\n  a.b: {risk: extreme}\nbudgets:\n  - limit: -1\n"
    )
    code, text = run("policy", "validate", str(bad))
    assert code == 1
    lines = text.strip().splitlines()
    assert lines[0].startswith(f"{bad}:4: actions.a.b.risk:")
    assert "'low', 'medium' or 'high'" in lines[0]
    assert lines[1].startswith(f"{bad}:6: budgets[0].limit:")


def test_validate_accepts_the_example_pack() -> None:
    code, text = run("policy", "validate", str(pack_path()))
    assert code == 0
    assert "ok (marketing-default" in text


def test_schema_accepts_the_example_pack_and_rejects_a_bad_one() -> None:
    code, text = run("policy", "schema")
    assert code == 0
    schema = json.loads(text)
    example = yaml.safe_load(pack_path().read_text())
    jsonschema.validate(example, schema)
    example["actions"]["email.send"]["risk"] = "extreme"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)
    example["actions"]["email.send"]["risk"] = "low"
    example["actions"]["email.send"]["validators"] = [{"no_such_validator": {}}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


def test_apply_history_rollback_diff(store_url: str, packs: tuple[Path, Path]) -> None:
    v1, v2 = packs
    assert run("policy", "apply", str(v1), "--by", "ana", "--store", store_url)[0] == 0
    assert run("policy", "apply", str(v2), "--by", "ana", "--store", store_url)[0] == 0
    history = run_json("policy", "history", "--store", store_url)
    assert [(h["version"], h["active"]) for h in history] == [("1", False), ("2", True)]

    code, diff = run("policy", "diff", "1", "2", "--store", store_url)
    assert code == 0
    assert "-  - {name: promo-daily, scope: {workflow: promo}, limit: 10" in diff
    assert "+  - {name: promo-daily, scope: {workflow: promo}, limit: 20" in diff

    assert run_json("policy", "rollback", "--by", "ana", "--store", store_url)["version"] == "1"
    history = run_json("policy", "history", "--store", store_url)
    assert [h["active"] for h in history] == [True, False]


def test_apply_of_an_invalid_pack_keeps_the_active_version(
    store_url: str, packs: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, _ = packs
    run("policy", "apply", str(v1), "--by", "ana", "--store", store_url)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        PACK_V1.replace('version: "1"', 'version: "3"').replace("risk: low", "risk: 7")
    )
    code, text = run("policy", "apply", str(broken), "--by", "ana", "--store", store_url)
    assert code == 1
    assert "actions.crm.tag.risk" in text
    history = run_json("policy", "history", "--store", store_url)
    assert [(h["version"], h["active"]) for h in history] == [("1", True)]


def test_kill_is_seen_by_a_guard_in_another_store_handle(
    store_url: str, packs: tuple[Path, Path]
) -> None:
    v1, _ = packs
    run("policy", "apply", str(v1), "--by", "ana", "--store", store_url)
    guard = Guardrails(v1, store=store_url)
    call = CallRequest("tag", "crm.tag", {}, Scope(workflow="promo"))
    assert guard.run(call, lambda a: "ran") == "ran"

    code, text = run(
        "kill", "workflow=promo", "--by", "oncall", "--reason", "anomaly", "--store", store_url
    )
    assert code == 0
    assert "ENGAGED" in text
    halted = guard.run(call, lambda a: "ran")
    assert isinstance(halted, dict)
    assert halted["status"] == "halted"
    assert halted["reasons"] == ["kill_switch:workflow=promo"]

    status = run_json("status", "--store", store_url)
    assert status["kill_switches"][0]["engaged"] is True
    run("unkill", "workflow=promo", "--by", "oncall", "--reason", "ok", "--store", store_url)
    assert guard.run(call, lambda a: "ran") == "ran"


def test_status_shows_budgets_used_and_left(store_url: str, packs: tuple[Path, Path]) -> None:
    v1, _ = packs
    guard = Guardrails(v1, store=store_url)
    for _ in range(3):
        guard.run(CallRequest("tag", "crm.tag", {}, Scope(workflow="promo")), lambda a: None)
    status = run_json("status", "--store", store_url)
    (budget,) = status["budgets"]
    assert (budget["used"], budget["left"], budget["limit"]) == (6.0, 4.0, 10.0)
    code, table = run("status", "--store", store_url)
    assert code == 0
    assert "promo-daily" in table
    assert "LEVELS" in table


def test_level_set_respects_the_ceiling_and_keeps_history(
    store_url: str, packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    v1, _ = packs
    run("policy", "apply", str(v1), "--by", "ana", "--store", store_url)
    up = ("level", "set", "workflow=promo", "optimize", "--by", "board", "--reason", "minute 12")
    code, _ = run(*up, "--store", store_url)
    assert code == 2  # up without a passing gate (the pack declares none): refused
    changed = run_json(
        *up, "--override", "--evidence", '{"success_rate": 0.97}', "--store", store_url
    )
    assert (changed["old"], changed["new"]) == (None, 2)
    code, _ = run(
        "level",
        "set",
        "workflow=promo",
        "orchestrate",
        "--by",
        "board",
        "--reason",
        "x",
        "--override",
        "--store",
        store_url,
    )
    assert code == 2  # above the ceiling: refused, even with --override
    history = run_json("level", "history", "--store", store_url)
    assert [(h["scope"], h["new"], h["evidence"]) for h in history] == [
        ("workflow=promo", 2, {"success_rate": 0.97, "override": True})
    ]
    guard = Guardrails(v1, store=store_url)
    assert int(guard.level_of(Scope(workflow="promo", region="eu"))) == 2
    # A scope no level rule matches (a typo) is refused, not taken for the global dial.
    typo = ("level", "set", "workflow=prmo", "optimize", "--by", "board", "--reason", "x")
    capsys.readouterr()
    code, _ = run(*typo, "--override", "--store", store_url)
    assert (code, "no level rule" in capsys.readouterr().err) == (2, True)
    code, _ = run("gates", "promote", "workflow=prmo", "--by", "board", "--store", store_url)
    assert (code, "no level rule" in capsys.readouterr().err) == (2, True)
    assert len(run_json("level", "history", "--store", store_url)) == 1


def test_audit_verify_and_export_detect_tampering(
    store_url: str, packs: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, _ = packs
    guard = Guardrails(v1, store=store_url)
    guard.run(CallRequest("tag", "crm.tag", {}, Scope(workflow="promo")), lambda a: None)
    assert run("audit", "verify", "--store", store_url)[0] == 0
    out = tmp_path / "audit.jsonl"
    code, _ = run("audit", "export", "-o", str(out), "--store", store_url)
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert {"decision", "execution.started", "execution.finished"} <= {r["kind"] for r in records}
    tail = run_json("audit", "tail", "-n", "2", "--store", store_url)
    assert [r["seq"] for r in tail] == [len(records) - 1, len(records)]

    guard.store.close()
    db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    table = next(
        name
        for (name,) in db.execute("select name from sqlite_master where type='table'")
        if "audit" in name
    )
    db.execute(f"update {table} set kind = 'forged' where seq = 2")
    db.commit()
    db.close()
    code, text = run("audit", "verify", "--store", store_url)
    assert code == 1
    assert "record 2" in text


def test_bad_store_url_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("status", "--store", "mysql://nope")
    assert code == 2
    assert "unknown store scheme 'mysql'" in capsys.readouterr().err


def test_validate_checks_every_file_and_reports_every_problem(tmp_path: Path) -> None:
    undecodable = tmp_path / "a.yaml"
    undecodable.write_bytes(b"name: x\nversion: '1'\ndescription: \xff\n")
    bad = tmp_path / "b.yaml"
    bad.write_text(
        "name: x\nversion: '1'\nactions: {a.b: {risk: extreme}}\nbudgets: [{limit: -1}]\n"
    )
    missing = tmp_path / "missing.yaml"
    code, text = run(
        "policy", "validate", str(undecodable), str(bad), str(missing), str(pack_path())
    )
    assert code == 1
    lines = text.splitlines()
    assert lines[0].startswith(f"{undecodable}:3: not valid UTF-8")
    assert lines[1].startswith(f"{bad}:3: actions.a.b.risk:")
    assert lines[2].startswith(f"{bad}:4: budgets[0].limit:")
    assert lines[3].startswith(f"{missing}: cannot read the file")
    assert lines[4].startswith(f"{pack_path()}: ok")
    assert len(lines) == 5


def test_bad_files_numbers_and_plugins_get_a_message_not_a_traceback(
    store_url: str, packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    v1, _ = packs
    run("policy", "apply", str(v1), "--by", "ana", "--store", store_url)
    capsys.readouterr()
    for argv in (
        ("audit", "export", "-o", "/nonexistent-dir/audit.jsonl"),
        ("audit", "tail", "-n", "99999999999999999999"),
        ("policy", "validate", str(v1), "--plugin", "no_such_module_here"),
    ):
        store = () if argv[0] == "policy" else ("--store", store_url)
        code, _ = run(*argv, *store)
        err = capsys.readouterr().err
        assert (code, err.startswith("agent-guardrails: ")) == (2, True), (argv, err)

    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    assert main(["audit", "export", "--store", store_url], Gone()) == 0  # | head


def test_who_and_why_must_say_something(
    store_url: str, tmp_path: Path, packs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run("policy", "apply", str(packs[0]), "--by", "ana", "--store", store_url)
    for argv in (
        ("kill", "workflow=x", "--by", " ", "--reason", "spam"),
        ("kill", "workflow=x", "--by", "ops", "--reason", ""),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--store", store_url], io.StringIO())
        assert exit_.value.code == 2
    empty = tmp_path / "none.csv"
    empty.write_text("metric,value,entity\n")
    capsys.readouterr()
    code, _ = run("outcomes", "import", str(empty), "--store", store_url)
    assert (code, "no outcome rows" in capsys.readouterr().err) == (2, True)
