-- Statements shared by the SQLite and PostgreSQL stores: the operator steps (levels and
-- their history, kill-switches, packs, outcomes), call and counter reads, and audit reads.
-- Written once, with ? placeholders and {p} before every table name; store/_statements.py
-- renders them for each dialect (%s placeholders and "schema".ag_ on PostgreSQL).
-- Each statement starts at a "-- name:" line; the comment lines after it describe it.
-- Column lists are in the order store/_rows.py maps them.

-- name: call_record
SELECT key, state, charges, result, updated_at FROM {p}calls WHERE key = ?;

-- name: in_doubt
-- Calls that started and never ended, oldest first.
SELECT key, state, charges, result, updated_at FROM {p}calls
WHERE state = 'started' ORDER BY updated_at, key;

-- name: open_calls
-- Calls that hold (reserved) or run (started): each SELECT is one partial index's.
SELECT key, state, charges, result, updated_at FROM {p}calls WHERE state = 'reserved'
UNION ALL
SELECT key, state, charges, result, updated_at FROM {p}calls WHERE state = 'started';

-- name: counters
-- Args: the prefix's length, the prefix.
SELECT key, used FROM {p}counters
WHERE substr(key, 1, CAST(? AS INTEGER)) = ? ORDER BY key;

-- name: get_level
SELECT level FROM {p}levels WHERE dial_key = ?;

-- name: put_level
INSERT INTO {p}levels (dial_key, level, updated_at) VALUES (?, ?, ?)
ON CONFLICT (dial_key) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at;

-- name: add_level_history
INSERT INTO {p}level_history
    (scope_key, old_level, new_level, actor, reason, evidence, changed_at)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: level_history
SELECT scope_key, old_level, new_level, actor, reason, evidence, changed_at
FROM {p}level_history ORDER BY id;

-- name: level_history_of
SELECT scope_key, old_level, new_level, actor, reason, evidence, changed_at
FROM {p}level_history WHERE scope_key = ? ORDER BY id;

-- name: put_kill_switch
INSERT INTO {p}kill_switches (scope_key, engaged, actor, reason, changed_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (scope_key) DO UPDATE SET engaged = excluded.engaged, actor = excluded.actor,
    reason = excluded.reason, changed_at = excluded.changed_at;

-- name: kill_switches
SELECT scope_key, engaged, actor, reason, changed_at FROM {p}kill_switches ORDER BY id;

-- name: find_pack
-- One stored version, with its row id first (activate_pack needs it).
SELECT id, name, version, digest, source, active, applied_by, applied_at
FROM {p}packs WHERE name = ? AND version = ?;

-- name: add_pack
INSERT INTO {p}packs (name, version, digest, source, active, applied_by, applied_at)
VALUES (?, ?, ?, ?, false, ?, ?);

-- name: deactivate_other_packs
UPDATE {p}packs SET active = false WHERE active AND id <> ?;

-- name: activate_pack
UPDATE {p}packs SET active = true WHERE id = ?;

-- name: active_pack
SELECT name, version, digest, source, active, applied_by, applied_at
FROM {p}packs WHERE active ORDER BY id LIMIT 1;

-- name: pack_versions
SELECT name, version, digest, source, active, applied_by, applied_at
FROM {p}packs ORDER BY id;

-- name: pack_versions_of
SELECT name, version, digest, source, active, applied_by, applied_at
FROM {p}packs WHERE name = ? ORDER BY id;

-- name: add_outcome
INSERT INTO {p}outcomes (entity, cohort, metric, value, at, scope_key, level, pack_version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: outcomes
SELECT entity, cohort, metric, value, at, scope_key, level, pack_version FROM {p}outcomes
WHERE at >= ? ORDER BY id;

-- name: outcomes_of
SELECT entity, cohort, metric, value, at, scope_key, level, pack_version FROM {p}outcomes
WHERE at >= ? AND metric = ? ORDER BY id;

-- name: audit_records
-- Args: after, limit (the dialect's "no limit" value when there is none).
SELECT seq, ts, kind, call_key, data, prev_hash, hash FROM {p}audit
WHERE seq > ? ORDER BY seq LIMIT ?;

-- name: audit_first_page
-- The first page of a verification: the lowest records, whatever their seq.
SELECT seq, ts, kind, call_key, data, prev_hash, hash FROM {p}audit ORDER BY seq LIMIT ?;

-- name: find_audit
SELECT seq, ts, kind, call_key, data, prev_hash, hash FROM {p}audit WHERE dedupe = ?;

-- name: verify_head
-- The chain head and where the kept chain starts (retention.sql: audit_archived_through);
-- one row, NULLs where there is no head. Verification then reads the records a page at a
-- time (audit_records), in the same snapshot.
SELECT h.seq, h.hash,
    (SELECT m.value FROM {p}meta m WHERE m.key = 'audit_archived_through')
FROM (SELECT 1) AS one
LEFT JOIN {p}audit_head h ON h.id = 1;
