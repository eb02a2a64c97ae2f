-- Retention (store/_archive.py, store/_operators.py): archiving the audit log's prefix and
-- pruning ended calls, shared by the SQLite and PostgreSQL stores. Written once, with ?
-- placeholders and {p} before every table name. Each statement starts at a "-- name:" line.

-- name: audit_archived_through
-- Where the kept chain starts: "SEQ HASH" of the last archived record (no row: nothing
-- archived, the chain starts at the genesis hash).
SELECT value FROM {p}meta WHERE key = 'audit_archived_through';

-- name: put_audit_archived_through
INSERT INTO {p}meta (key, value) VALUES ('audit_archived_through', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: archive_batch
-- The next records to archive. Args: after this seq, at most this many.
SELECT seq, ts, kind, call_key, data, prev_hash, hash FROM {p}audit
WHERE seq > ? ORDER BY seq LIMIT ?;

-- name: audit_hash_at
SELECT hash FROM {p}audit WHERE seq = ?;

-- name: delete_archived
-- Args: the last archived seq.
DELETE FROM {p}audit WHERE seq <= ?;

-- name: prune_calls
-- Calls that ended before the cutoff; never a reserved or started one (live or in doubt).
DELETE FROM {p}calls
WHERE state IN ('finished', 'failed', 'released') AND updated_at < ?;
