-- The PostgreSQL store's own statements (store/postgres.py), around the functions of
-- postgres_functions.sql. {s} is the quoted schema, {p} the table prefix ("schema".ag_),
-- {lock} the chain lock's key. Statements with ? placeholders are run through psycopg (?
-- becomes %s; %b marks an array sent in binary); the hot_* statements, with $n
-- placeholders, are prepared once per connection and run through libpq directly.
-- Each statement starts at a "-- name:" line.

-- name: current_schema
SELECT current_schema();

-- name: lock_schema
-- Taken while the schema is created or upgraded, so that processes opening one database
-- at the same time do not race.
SELECT pg_advisory_xact_lock(hashtextextended(?, 0));

-- name: schema_exists
SELECT 1 FROM pg_namespace WHERE nspname = ?;

-- name: meta_exists
SELECT to_regclass(?);

-- name: read_meta
SELECT key, value FROM {p}meta;

-- name: put_meta
INSERT INTO {p}meta (key, value) VALUES ('schema_version', ?), ('functions', ?)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: lock_chain
SELECT pg_advisory_xact_lock({lock});

-- name: reserve
-- ag_reserve: reserve_many, and reserve off its fast path. Arrays go in binary: psycopg's
-- text format escapes every quote of the JSON payloads with a regular expression, which
-- cost more than the round trip.
SELECT {s}.ag_reserve(%b::text[], %b::text[], %b::int4[], %b::text[], %b::float8[],
    %b::float8[], %b::int8[], ?, ?, ?, %b::text[], %b::text[], %b::text[], %b::text[], ?, ?);

-- name: start_reserved
UPDATE {p}calls SET state = 'started', updated_at = ? WHERE key = ? AND state = 'reserved';

-- name: outbox
INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
VALUES (?, ?, ?, ?, ?, ?);

-- name: append
-- Append one record and chain it, waiting for the chain lock (operator steps).
SELECT o_seq, o_prev, o_hash FROM {s}.ag_append(?, ?, ?, ?, ?, ?);

-- name: append_try
-- Append one record and chain it if nobody else is chaining (append_audit).
SELECT o_id, o_after, o_count, o_seq, o_prev, o_hash FROM {s}.ag_append_try(?, ?, ?, ?, ?, ?);

-- name: chain
-- Args: wait for the lock?, at most this many records (NULL: all), an outbox id whose
-- record to return, a chain length known before it.
SELECT o_count, o_seq, o_prev, o_hash FROM {s}.ag_chain_pending(?, ?, ?, ?);

-- name: hot_reserve1
SELECT {s}.ag_reserve1($1::text, $2::text, $3::float8, $4::float8, $5::text, $6::text,
    $7::text, $8::text, $9::text, $10::text[], $11::float8[], $12::float8[], $13::text,
    $14::text, $15::text, $16::text);

-- name: hot_start
SELECT {s}.ag_start($1::text, $2::float8, $3::text, $4::text, $5::text, $6::text, $7::text);

-- name: hot_snapshot
-- The snapshot for the hot path (libpq, text format) as one JSON array: the level, the
-- engaged kill-switches, the counters asked for (keys, then values, in key order), the
-- active pack's digest, and the call's row (key, state, charges, result, updated_at) or
-- null. Args: dial key, counter keys, counter keys again, call key (each placeholder once:
-- the async pool's driver numbers them in order).
SELECT json_build_array(
    (SELECT level FROM {p}levels WHERE dial_key = $1::text),
    ARRAY(SELECT scope_key FROM {p}kill_switches WHERE engaged ORDER BY id),
    ARRAY(SELECT key FROM {p}counters WHERE key = ANY($2::text[]) ORDER BY key),
    ARRAY(SELECT used FROM {p}counters WHERE key = ANY($3::text[]) ORDER BY key),
    (SELECT digest FROM {p}packs WHERE active),
    (SELECT json_build_array(c.key, c.state, c.charges, c.result, c.updated_at)
     FROM {p}calls c WHERE c.key = $4::text))::text;

-- name: hot_chain
-- The chain step after a hot-path write: at most this many records, never waiting.
SELECT o_count FROM {s}.ag_chain_pending(false, $1::bigint, NULL, NULL);

-- name: hot_settle
SELECT {s}.ag_settle($1::text, $2::bool, $3::bool, $4::float8, $5::text, $6::float8,
    $7::text, $8::text, $9::text, $10::text, $11::text);
