-- The SQLite store's own statements (store/sqlite.py): the hot path and the audit chain.
-- Every write runs inside a BEGIN IMMEDIATE transaction, so a read followed by a write in
-- one of them is race-free. Each statement starts at a "-- name:" line.

-- name: schema_version
-- Null when the database is new (ag_meta does not exist yet).
SELECT (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ag_meta');

-- name: read_schema_version
SELECT value FROM ag_meta WHERE key = 'schema_version';

-- name: put_schema_version
INSERT INTO ag_meta (key, value) VALUES ('schema_version', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: snapshot_head
-- The snapshot is one statement: rows tagged 0 the level, 1 an engaged kill-switch (in id
-- order), 2 a counter (the arm below, once per call's number of keys), 3 the call, 4 the
-- active pack's digest. snapshot_head, [snapshot_counters,] snapshot_tail, joined.
SELECT 0, 0, level, NULL, NULL, NULL, NULL FROM ag_levels WHERE dial_key = ?
UNION ALL SELECT 1, id, scope_key, NULL, NULL, NULL, NULL FROM ag_kill_switches WHERE engaged

-- name: snapshot_counters
-- {marks}: one ? per counter key.
UNION ALL SELECT 2, 0, key, used, NULL, NULL, NULL FROM ag_counters WHERE key IN ({marks})

-- name: snapshot_tail
UNION ALL SELECT 3, 0, key, state, charges, result, updated_at FROM ag_calls WHERE key = ?
UNION ALL SELECT 4, 0, digest, NULL, NULL, NULL, NULL FROM ag_packs WHERE active
ORDER BY 1, 2

-- name: call_state
SELECT state FROM ag_calls WHERE key = ?;

-- name: counters_used
-- {marks}: one ? per counter key.
SELECT key, used FROM ag_counters WHERE key IN ({marks});

-- name: new_counter
INSERT INTO ag_counters (key, used, lim, expires_at, updated_at) VALUES (?, ?, ?, ?, ?);

-- name: add_counter
UPDATE ag_counters SET used = used + ?, updated_at = ? WHERE key = ?;

-- name: reserve_call
-- state: 'reserved', or 'started' when reserve(start=...) starts it too.
INSERT INTO ag_calls (key, state, charges, result, updated_at) VALUES (?, ?, ?, NULL, ?)
ON CONFLICT (key) DO UPDATE SET state = excluded.state, charges = excluded.charges,
    result = NULL, updated_at = excluded.updated_at;

-- name: start_new_call
INSERT INTO ag_calls (key, state, charges, result, updated_at)
VALUES (?, 'started', '[]', NULL, ?);

-- name: start_reserved_call
UPDATE ag_calls SET state = 'started', result = NULL, updated_at = ? WHERE key = ?;

-- name: end_held
-- Only a held call ends. SQLite 3.35 and later add RETURNING charges to it; older ones
-- read held_charges first.
UPDATE ag_calls SET state = ?, result = ?, updated_at = ?
WHERE key = ? AND state IN ('reserved', 'started')

-- name: held_charges
SELECT charges FROM ag_calls WHERE key = ? AND state IN ('reserved', 'started');

-- name: audit_head
SELECT seq, hash FROM ag_audit_head WHERE id = 1;

-- name: append
-- A record whose dedupe is already in the log is dropped (no row).
INSERT INTO ag_audit (seq, ts, kind, call_key, data, prev_hash, hash, dedupe)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING;

-- name: move_audit_head
UPDATE ag_audit_head SET seq = ?, hash = ?, prev = ? WHERE id = 1;
