-- The tables of the SQL stores, the same for SQLite and PostgreSQL (schema version 1, with
-- later versions' additions at the end; what each table holds is described in
-- store/_rows.py). Every statement is idempotent.
-- Placeholders filled in per dialect (store/_statements.py): {p} the table prefix (ag_ or
-- "schema".ag_), {serial} an auto-numbered primary key, {seq_pk} the audit log's key,
-- {without_rowid} SQLite's WITHOUT ROWID for tables keyed by text, {genesis} the hash
-- before the first audit record.

CREATE TABLE IF NOT EXISTS {p}meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}counters (
    key TEXT PRIMARY KEY,
    used DOUBLE PRECISION NOT NULL,
    lim DOUBLE PRECISION NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
){without_rowid};
CREATE INDEX IF NOT EXISTS ag_counters_expires ON {p}counters (expires_at);
CREATE TABLE IF NOT EXISTS {p}calls (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    charges TEXT NOT NULL,
    result TEXT,
    updated_at DOUBLE PRECISION NOT NULL
){without_rowid};
CREATE INDEX IF NOT EXISTS ag_calls_started ON {p}calls (updated_at) WHERE state = 'started';
-- The calls that hold without running (schema 5 on SQLite, 6 on PostgreSQL): the only ones,
-- with started ones, a question can wait on (the approvals inbox, ops/approvals.py).
CREATE INDEX IF NOT EXISTS ag_calls_reserved ON {p}calls (updated_at) WHERE state = 'reserved';
CREATE TABLE IF NOT EXISTS {p}levels (
    dial_key TEXT PRIMARY KEY,
    level INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}level_history (
    id {serial},
    scope_key TEXT NOT NULL,
    old_level INTEGER,
    new_level INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ag_level_history_scope ON {p}level_history (scope_key, id);
CREATE TABLE IF NOT EXISTS {p}kill_switches (
    id {serial},
    scope_key TEXT NOT NULL UNIQUE,
    engaged BOOLEAN NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}packs (
    id {serial},
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    applied_by TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS ag_packs_one_active ON {p}packs (active) WHERE active;
CREATE TABLE IF NOT EXISTS {p}outcomes (
    id {serial},
    entity TEXT NOT NULL,
    cohort TEXT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    scope_key TEXT NOT NULL,
    level INTEGER,
    pack_version TEXT
);
CREATE INDEX IF NOT EXISTS ag_outcomes_metric ON {p}outcomes (metric, at);
CREATE TABLE IF NOT EXISTS {p}audit (
    seq {seq_pk},
    ts DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    call_key TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    dedupe TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS {p}audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT
);
INSERT INTO {p}audit_head (id, seq, hash) VALUES (1, 0, '{genesis}') ON CONFLICT DO NOTHING;
-- Gate evidence (schema 3 on SQLite, 4 on PostgreSQL; store/sql/gate_evidence.sql): what the
-- audit log says about each call, kept by the gates as they read the log (ops/gate_evidence.py),
-- so an evaluation counts rows instead of folding every record again. Ordered by scope and
-- decision time, the order in which a window is counted.
CREATE TABLE IF NOT EXISTS {p}gate_calls (
    scope TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    key TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    level INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    pack_version TEXT NOT NULL,
    policy_failed INTEGER NOT NULL,
    escalated INTEGER NOT NULL,
    asked_at DOUBLE PRECISION,
    answered_at DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    ended INTEGER,
    cohort TEXT,
    entity TEXT,
    PRIMARY KEY (scope, at, key)
){without_rowid};
CREATE INDEX IF NOT EXISTS ag_gate_calls_at ON {p}gate_calls (at);
-- The pack versions of a scope's calls in a window, without reading the calls (the gates).
CREATE INDEX IF NOT EXISTS ag_gate_calls_versions ON {p}gate_calls (scope, pack_version, at);
CREATE TABLE IF NOT EXISTS {p}gate_events (
    seq {seq_pk},
    ts DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ag_outcomes_kpi
    ON {p}outcomes (scope_key, metric, cohort, at, entity, value);
CREATE INDEX IF NOT EXISTS ag_outcomes_entities
    ON {p}outcomes (scope_key, metric, cohort, entity, at);
