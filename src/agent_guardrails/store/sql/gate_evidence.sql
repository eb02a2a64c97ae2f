-- Gate evidence (ops/gate_evidence.py, store/_gate_evidence_ops.py), shared by the SQLite and
-- PostgreSQL stores: the calls the gates have read from the audit log, the few records that
-- cut or trip their windows, and how far they have read (a checkpoint in {p}meta). Written
-- once, with ? placeholders and {p} before every table name. Each statement starts at a
-- "-- name:" line.

-- name: gate_checkpoint
-- "SEQ HASH MAX_TS": the last record read, its hash, the latest time among those read.
SELECT value FROM {p}meta WHERE key = 'gate_evidence';

-- name: put_gate_checkpoint
INSERT INTO {p}meta (key, value) VALUES ('gate_evidence', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: merge_gate_call
-- A call's first decision record inserts it; later records merge: the flags once set stay
-- set, the last request and start win, the first answer wins, finished wins over failed.
-- Args: scope, at, key, action, level, seq, pack_version, policy_failed, escalated,
-- asked_at, answered_at, started_at, ended, cohort, entity.
INSERT INTO {p}gate_calls AS t (scope, at, key, action, level, seq, pack_version,
    policy_failed, escalated, asked_at, answered_at, started_at, ended, cohort, entity)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    policy_failed = CASE WHEN t.policy_failed = 1 OR excluded.policy_failed = 1 THEN 1 ELSE 0 END,
    escalated = CASE WHEN t.escalated = 1 OR excluded.escalated = 1 THEN 1 ELSE 0 END,
    asked_at = COALESCE(excluded.asked_at, t.asked_at),
    answered_at = COALESCE(t.answered_at, excluded.answered_at),
    started_at = COALESCE(excluded.started_at, t.started_at),
    ended = CASE WHEN t.ended = 1 OR excluded.ended = 1 THEN 1
        ELSE COALESCE(excluded.ended, t.ended) END;

-- name: update_gate_call
-- Later records of a call read before (no row: a call whose decision was never read, as
-- the fold ignores it). Args: policy_failed, escalated, asked_at, answered_at, started_at,
-- ended, ended, key.
UPDATE {p}gate_calls SET
    policy_failed = CASE WHEN policy_failed = 1 OR ? = 1 THEN 1 ELSE 0 END,
    escalated = CASE WHEN escalated = 1 OR ? = 1 THEN 1 ELSE 0 END,
    asked_at = COALESCE(?, asked_at),
    answered_at = COALESCE(answered_at, ?),
    started_at = COALESCE(?, started_at),
    ended = CASE WHEN ended = 1 OR ? = 1 THEN 1 ELSE COALESCE(?, ended) END
WHERE key = ?;

-- name: add_gate_event
INSERT INTO {p}gate_events (seq, ts, kind, data) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING;

-- name: gate_events
SELECT seq, ts, kind, data FROM {p}gate_events ORDER BY seq;

-- name: gate_scopes
-- Every scope with a call, one index probe per scope (a loose index scan).
WITH RECURSIVE s (scope) AS (
    SELECT MIN(scope) FROM {p}gate_calls
    UNION ALL
    SELECT (SELECT MIN(g.scope) FROM {p}gate_calls g WHERE g.scope > s.scope)
    FROM s WHERE s.scope IS NOT NULL
)
SELECT scope FROM s WHERE scope IS NOT NULL;

-- name: gate_counts
-- One scope's calls decided in [start, end), in one pass: decided, policy failures,
-- escalations, answers, runs with an end, runs that ended well, runs started before the
-- grace with no end, policy failures at Execute or above, calls with a cohort. (The pack
-- versions are read from an index below: comparing each row's text cost a third of
-- this pass.) Args: the grace time, scope, start, end.
-- (COUNT of an expression counts the rows where it is not NULL: a - b where both are set.)
SELECT COUNT(*), SUM(policy_failed), SUM(escalated),
    COUNT(answered_at - asked_at),
    COUNT(started_at + ended),
    SUM(CASE WHEN started_at IS NOT NULL THEN ended ELSE 0 END),
    COUNT(CASE WHEN ended IS NULL AND started_at < ? THEN 1 END),
    SUM(CASE WHEN level >= 1 THEN policy_failed ELSE 0 END),
    COUNT(CASE WHEN cohort IN ('control', 'treatment') THEN entity END)
FROM {p}gate_calls WHERE scope = ? AND at >= ? AND at < ?;

-- name: gate_versions
-- The pack versions of one scope's calls decided in [start, end), through
-- ag_gate_calls_versions: each version the scope ever had, one index probe apiece (a
-- loose index scan), kept if one of its calls falls in the window (one probe more).
-- Args: scope, scope, scope, start, end.
WITH RECURSIVE v (version) AS (
    SELECT MIN(pack_version) FROM {p}gate_calls WHERE scope = ?
    UNION ALL
    SELECT (
        SELECT MIN(g.pack_version) FROM {p}gate_calls g
        WHERE g.scope = ? AND g.pack_version > v.version
    )
    FROM v WHERE v.version IS NOT NULL
)
SELECT version FROM v
WHERE version IS NOT NULL AND EXISTS (
    SELECT 1 FROM {p}gate_calls c
    WHERE c.scope = ? AND c.pack_version = v.version AND c.at >= ? AND c.at < ?
);

-- name: gate_answered_actions
-- The actions of the calls answered by a human. Args: scope, start, end.
SELECT DISTINCT action FROM {p}gate_calls
WHERE scope = ? AND at >= ? AND at < ? AND asked_at IS NOT NULL AND answered_at IS NOT NULL;

-- name: gate_within_sla
-- Of one scope's calls of one action decided in [start, end), how many were answered
-- within the SLA. Args: the SLA in seconds, scope, action, start, end.
SELECT COUNT(*) FROM {p}gate_calls
WHERE answered_at - asked_at <= ? AND scope = ? AND action = ? AND at >= ? AND at < ?;

-- name: gate_violations
-- Policy failures at Execute or above, by audit record. Args: scope, start, end.
SELECT seq FROM {p}gate_calls
WHERE scope = ? AND at >= ? AND at < ? AND policy_failed = 1 AND level >= 1 ORDER BY seq;

-- name: gate_split
-- The entities of each cohort. Args: scope, start, end.
SELECT cohort, COUNT(DISTINCT entity{bytewise}) FROM {p}gate_calls
WHERE scope = ? AND at >= ? AND at < ? AND entity IS NOT NULL
    AND cohort IN ('control', 'treatment')
GROUP BY cohort;

-- name: gate_split_entities
-- The same, entity by entity (to join the scopes of one dial). Args: scope, start, end.
SELECT DISTINCT cohort, entity FROM {p}gate_calls
WHERE scope = ? AND at >= ? AND at < ? AND entity IS NOT NULL
    AND cohort IN ('control', 'treatment');

-- name: kpi_shift
-- One value of a cohort's KPI in [start, end): the sums below are taken around it, so
-- the sum of squared deviations keeps its precision in one pass. Args: dial key, metric,
-- cohort, start, end.
SELECT value FROM {p}outcomes
WHERE scope_key = ? AND metric = ? AND cohort = ? AND at >= ? AND at < ? LIMIT 1;

-- name: kpi_cohort
-- One cohort's KPI in [start, end): count, the sum of value - shift and of its square.
-- Args: shift, shift, shift, dial key, metric, cohort, start, end.
SELECT COUNT(*), SUM(value - ?), SUM((value - ?) * (value - ?))
FROM {p}outcomes
WHERE scope_key = ? AND metric = ? AND cohort = ? AND at >= ? AND at < ?;

-- name: kpi_entities
-- One cohort's entities in [start, end), from the outcomes in the window (by time).
-- Args: dial key, metric, cohort, start, end.
SELECT COUNT(DISTINCT entity{bytewise}) FROM {p}outcomes
WHERE scope_key = ? AND metric = ? AND cohort = ? AND at >= ? AND at < ?;

-- name: kpi_entities_in_order
-- The same, read in entity order through ag_outcomes_entities (+at keeps the time index
-- out): no sort, but every outcome of the cohort is read. For a window that holds most of
-- the cohort's outcomes. Args: dial key, metric, cohort, start, end.
SELECT COUNT(DISTINCT entity{bytewise}) FROM {p}outcomes
WHERE scope_key = ? AND metric = ? AND cohort = ? AND +at >= ? AND +at < ?;

-- name: kpi_span
-- The first and last time of a cohort's outcomes (two index probes). Args: dial key,
-- metric, cohort, twice.
SELECT
    (SELECT MIN(at) FROM {p}outcomes WHERE scope_key = ? AND metric = ? AND cohort = ?),
    (SELECT MAX(at) FROM {p}outcomes WHERE scope_key = ? AND metric = ? AND cohort = ?);

-- name: prune_gate_calls
-- Args: the cutoff (decision time).
DELETE FROM {p}gate_calls WHERE at < ?;

-- name: gate_audit_head
SELECT seq, hash FROM {p}audit_head WHERE id = 1;
