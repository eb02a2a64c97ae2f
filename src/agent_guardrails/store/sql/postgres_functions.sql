-- The PL/pgSQL functions PostgresStore installs in its schema (see store/postgres.py).
-- Placeholders filled in when they are installed: {s} the quoted schema, {p} the table
-- prefix ("schema".ag_), {lock} the key of the chain lock (a transaction-scoped advisory
-- lock, one per schema). ag_meta records a digest of this file's text: a release whose
-- functions differ replaces them (CREATE OR REPLACE) the first time it opens a database.

-- Chain what waits in the outbox, in id order, under the chain lock (a transaction-scoped
-- advisory lock: taking it writes nothing, so a session that only waited for it, or only
-- found its own record chained by another, commits without a flush). p_wait: wait for the
-- lock, else give up at once (o_count = -1). p_limit: at most this many rows (NULL: all).
-- p_want: an outbox id whose record to return; p_after: a chain length known before that
-- row was committed (so that a record chained by another session is found by a short
-- range scan). The outbox is read through its primary key only (enable_seqscan = off): it
-- holds few live rows and, between two vacuums, many dead ones, and a sequential scan would
-- read every dead row, every time.
CREATE OR REPLACE FUNCTION {s}.ag_chain_pending(
    p_wait boolean, p_limit bigint, p_want bigint, p_after bigint,
    OUT o_count bigint, OUT o_seq bigint, OUT o_prev text, OUT o_hash text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
DECLARE
    hs bigint;
    hh text;
    hp text;
    nh text;
    head boolean;
    r record;
    ids bigint[] := '{}';
BEGIN
    o_count := 0;
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock({lock});
    ELSIF NOT pg_try_advisory_xact_lock({lock}) THEN
        o_count := -1;  -- another session is chaining
        RETURN;
    END IF;
    IF p_want IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM {p}audit_outbox o WHERE o.id = p_want) THEN
        -- Chained by another session (or dropped there as a duplicate).
        SELECT a.seq, a.prev_hash, a.hash INTO o_seq, o_prev, o_hash
        FROM {p}audit a WHERE a.seq > coalesce(p_after, 0) AND a.src = p_want;
        RETURN;
    END IF;
    SELECT h.seq, h.hash, h.prev INTO hs, hh, hp FROM {p}audit_head h WHERE h.id = 1;
    head := FOUND;
    FOR r IN
        SELECT o.id, o.ts, o.ts_repr, o.kind, o.call_key, o.data, o.dedupe
        FROM {p}audit_outbox o ORDER BY o.id LIMIT p_limit
    LOOP
        IF cardinality(ids) = 0 THEN  -- something to chain: the head must be sound
            IF NOT head THEN
                RAISE EXCEPTION 'the audit chain head row is missing (tampered?); new '
                    'records wait unchained; run ''agent-guardrails audit verify'''
                    USING ERRCODE = 'GR002';
            END IF;
            IF EXISTS (SELECT 1 FROM {p}audit a WHERE a.seq > hs) THEN
                RAISE EXCEPTION 'the audit log has records after the chain head''s record '
                    '% (tampered?); new records wait unchained; run ''agent-guardrails '
                    'audit verify''', hs USING ERRCODE = 'GR002';
            END IF;
        END IF;
        ids := ids || r.id;
        nh := encode(sha256(convert_to(
            hh || '|' || (hs + 1)::text || '|' || r.ts_repr || '|' || r.kind || '|'
            || coalesce(r.call_key, '') || '|' || r.data, 'UTF8')), 'hex');
        -- A dedupe already in the log (or earlier in this batch) drops the record.
        INSERT INTO {p}audit AS a (seq, ts, kind, call_key, data, prev_hash, hash, dedupe, src)
        VALUES (hs + 1, r.ts, r.kind, r.call_key, r.data, hh, nh, r.dedupe, r.id)
        ON CONFLICT (dedupe) DO NOTHING;
        IF FOUND THEN
            hs := hs + 1;
            hp := hh;
            hh := nh;
            o_count := o_count + 1;
            IF r.id = p_want THEN
                o_seq := hs;
                o_prev := hp;
                o_hash := hh;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    DELETE FROM {p}audit_outbox o WHERE o.id = ANY (ids);
    IF o_count > 0 THEN
        UPDATE {p}audit_head h SET seq = hs, hash = hh, prev = hp WHERE h.id = 1;
    END IF;
END
$fn$;

-- Append one record and chain it (with everything before it) in the caller's transaction,
-- waiting for the chain lock: operator steps (set_level, ...) that must return the record.
CREATE OR REPLACE FUNCTION {s}.ag_append(
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts float8, p_ts_repr text)
RETURNS TABLE (o_seq bigint, o_prev text, o_hash text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_id bigint;
    c record;
BEGIN
    INSERT INTO {p}audit_outbox AS o (ts, ts_repr, kind, call_key, data, dedupe)
    VALUES (p_ts, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe)
    RETURNING o.id INTO v_id;
    SELECT * INTO c FROM {s}.ag_chain_pending(true, NULL, v_id, NULL);
    IF c.o_seq IS NOT NULL THEN
        o_seq := c.o_seq;
        o_prev := c.o_prev;
        o_hash := c.o_hash;
        RETURN NEXT;
    END IF;
END
$fn$;

-- Append one record and chain it if nobody else is chaining (o_count >= 0). Otherwise
-- (o_count = -1) the record is committed to the outbox and the caller waits for the lock
-- with ag_chain_pending(true, NULL, o_id, o_after), by when the session that held it, or
-- the next one, has most likely chained it with others in one commit.
CREATE OR REPLACE FUNCTION {s}.ag_append_try(
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts float8, p_ts_repr text,
    OUT o_id bigint, OUT o_after bigint,
    OUT o_count bigint, OUT o_seq bigint, OUT o_prev text, OUT o_hash text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    c record;
BEGIN
    INSERT INTO {p}audit_outbox AS o (ts, ts_repr, kind, call_key, data, dedupe)
    VALUES (p_ts, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe)
    RETURNING o.id INTO o_id;
    SELECT h.seq INTO o_after FROM {p}audit_head h WHERE h.id = 1;
    SELECT * INTO c FROM {s}.ag_chain_pending(false, NULL, o_id, NULL);
    o_count := c.o_count;
    o_seq := c.o_seq;
    o_prev := c.o_prev;
    o_hash := c.o_hash;
END
$fn$;

-- reserve() of one call whose charges are on different counters, without force: the
-- call row, the audit record (to the outbox), then one conditional UPDATE per counter, the
-- last statements before the commit. The caller sorts the counters by key (code point
-- order, the same as COLLATE "C" everywhere else) so that locks are always taken in one
-- order. Returns 0 for a replay, 1 when reserved; GR003 sends the caller to ag_reserve's
-- general path (a new counter, a charge that does not fit). With p_start_kind (the
-- execution.started record), the call is marked started in the same step.
CREATE OR REPLACE FUNCTION {s}.ag_reserve1(
    p_call text, p_charges text, p_stamp float8, p_ts float8,
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts_repr text,
    p_keys text[], p_amounts float8[], p_limits float8[],
    p_start_kind text, p_start_call_key text, p_start_data text, p_start_dedupe text)
RETURNS int
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
    VALUES (p_call, CASE WHEN p_start_kind IS NULL THEN 'reserved' ELSE 'started' END,
            p_charges, NULL, p_stamp)
    ON CONFLICT (key) DO UPDATE
    SET state = EXCLUDED.state, charges = EXCLUDED.charges, result = NULL,
        updated_at = EXCLUDED.updated_at
    WHERE c.state IN ('failed', 'released');
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF p_kind IS NOT NULL AND p_start_kind IS NOT NULL THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_ts, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe),
               (p_ts, p_ts_repr, p_start_kind, p_start_call_key, p_start_data, p_start_dedupe);
    ELSIF p_kind IS NOT NULL THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_ts, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe);
    ELSIF p_start_kind IS NOT NULL THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_ts, p_ts_repr, p_start_kind, p_start_call_key, p_start_data, p_start_dedupe);
    END IF;
    FOR i IN 1..coalesce(array_length(p_keys, 1), 0) LOOP
        UPDATE {p}counters x SET used = x.used + p_amounts[i], lim = p_limits[i],
            updated_at = p_stamp
        WHERE x.key = p_keys[i] AND x.used + p_amounts[i] <= p_limits[i] + 1e-9::float8;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'GR003', MESSAGE = 'take the general path';
        END IF;
    END LOOP;
    RETURN 1;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_reserve(
    p_calls text[], p_call_charges text[], p_owner int[],
    p_keys text[], p_amounts float8[], p_limits float8[], p_expires bigint[],
    p_force boolean, p_fast boolean, p_stamp float8,
    p_kinds text[], p_call_keys text[], p_data text[], p_dedupes text[],
    p_ts float8, p_ts_repr text)
RETURNS int
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    n int := coalesce(array_length(p_keys, 1), 0);
    fresh text[];
    wk text[] := '{}';
    wa float8[] := '{}';
    ks text[];
    us float8[];
    u float8;
    i int;
    j int;
    r record;
BEGIN
    -- New keys, and keys whose last attempt failed or was released, (re)reserve; keys
    -- reserved, started or finished replay and touch nothing.
    IF cardinality(p_calls) = 1 THEN
        INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
        VALUES (p_calls[1], 'reserved', p_call_charges[1], NULL, p_stamp)
        ON CONFLICT (key) DO UPDATE
        SET state = 'reserved', charges = EXCLUDED.charges, result = NULL,
            updated_at = EXCLUDED.updated_at
        WHERE c.state IN ('failed', 'released');
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        fresh := p_calls;
    ELSE
        WITH ins AS (
            INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
            SELECT DISTINCT ON (t.k) t.k, 'reserved', t.ch, NULL, p_stamp
            FROM unnest(p_calls, p_call_charges) WITH ORDINALITY AS t(k, ch, o)
            ORDER BY t.k, t.o DESC
            ON CONFLICT (key) DO UPDATE
            SET state = 'reserved', charges = EXCLUDED.charges, result = NULL,
                updated_at = EXCLUDED.updated_at
            WHERE c.state IN ('failed', 'released')
            RETURNING c.key
        )
        SELECT coalesce(array_agg(ins.key), '{}') INTO fresh FROM ins;
        IF cardinality(fresh) = 0 THEN
            RETURN 0;
        END IF;
    END IF;
    -- The audit records go to the outbox (no lock, no chain: see ag_chain_pending), before
    -- any hot counter row is locked, so the locks are held for as short a time as possible.
    IF cardinality(p_kinds) = 1 THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_ts, p_ts_repr, p_kinds[1], p_call_keys[1], p_data[1], p_dedupes[1]);
    ELSIF cardinality(p_kinds) > 1 THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        SELECT p_ts, p_ts_repr, t.k, t.ck, t.d, t.dd
        FROM unnest(p_kinds, p_call_keys, p_data, p_dedupes) WITH ORDINALITY AS t(k, ck, d, dd, o)
        ORDER BY t.o;
    END IF;
    IF p_fast AND n = 1 THEN
        -- The common case: one counter, charged once.
        UPDATE {p}counters x SET used = x.used + p_amounts[1], lim = p_limits[1],
            updated_at = p_stamp
        WHERE x.key = p_keys[1] AND x.used + p_amounts[1] <= p_limits[1] + 1e-9::float8;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'GR003', MESSAGE = 'take the general path';
        END IF;
    ELSIF p_fast THEN
        -- Every counter is charged once and should exist: one conditional update each, in
        -- key order. Anything else (a new counter, a charge that does not fit) raises
        -- GR003, and the caller runs the general path below.
        FOR r IN
            SELECT t.k, t.a, t.l FROM unnest(p_keys, p_amounts, p_limits, p_owner) AS t(k, a, l, o)
            WHERE p_calls[t.o] = ANY (fresh) ORDER BY t.k COLLATE "C"
        LOOP
            UPDATE {p}counters x SET used = x.used + r.a, lim = r.l, updated_at = p_stamp
            WHERE x.key = r.k AND x.used + r.a <= r.l + 1e-9::float8;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'GR003', MESSAGE = 'take the general path';
            END IF;
        END LOOP;
    ELSE
        -- What the fresh calls want of each counter (charges on one counter add up).
        FOR i IN 1..n LOOP
            IF p_calls[p_owner[i]] = ANY (fresh) THEN
                j := array_position(wk, p_keys[i]);
                IF j IS NULL THEN
                    wk := wk || p_keys[i];
                    wa := wa || (0::float8 + p_amounts[i]);
                ELSE
                    wa[j] := wa[j] + p_amounts[i];
                END IF;
            END IF;
        END LOOP;
        IF cardinality(wk) > 0 THEN
            INSERT INTO {p}counters AS c (key, used, lim, expires_at, updated_at)
            SELECT DISTINCT ON (t.k) t.k, 0, t.l, t.e, p_stamp
            FROM unnest(p_keys, p_limits, p_expires) WITH ORDINALITY AS t(k, l, e, o)
            WHERE t.k = ANY (wk)
              AND NOT EXISTS (SELECT 1 FROM {p}counters x WHERE x.key = t.k)
            ORDER BY t.k, t.o
            ON CONFLICT (key) DO NOTHING;
            -- Lock in key order: two reservations never wait for each other in a cycle.
            SELECT array_agg(l.key), array_agg(l.used) INTO ks, us
            FROM (SELECT x.key, x.used FROM {p}counters x WHERE x.key = ANY (wk)
                  ORDER BY x.key COLLATE "C" FOR UPDATE) l;
            IF NOT p_force THEN
                FOR i IN 1..n LOOP
                    IF p_calls[p_owner[i]] = ANY (fresh) THEN
                        u := us[array_position(ks, p_keys[i])];
                        IF u + wa[array_position(wk, p_keys[i])]
                           > p_limits[i] + 1e-9::float8 THEN
                            RAISE EXCEPTION USING ERRCODE = 'GR001',
                                MESSAGE = 'a charge does not fit',
                                DETAIL = i::text || ' ' || encode(float8send(u), 'hex');
                        END IF;
                    END IF;
                END LOOP;
            END IF;
            FOR j IN 1..cardinality(wk) LOOP
                UPDATE {p}counters x SET used = x.used + wa[j], updated_at = p_stamp
                WHERE x.key = wk[j];
            END LOOP;
        END IF;
    END IF;
    RETURN cardinality(fresh);
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_start(
    p_key text, p_now float8,
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts_repr text)
RETURNS boolean
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    UPDATE {p}calls c SET state = 'started', result = NULL, updated_at = p_now
    WHERE c.key = p_key AND c.state = 'reserved';
    IF NOT FOUND THEN
        INSERT INTO {p}calls AS c (key, state, charges, result, updated_at)
        VALUES (p_key, 'started', '[]', NULL, p_now)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            -- the row exists: started by another worker, or reserved by a transaction that
            -- committed while this one waited for it
            UPDATE {p}calls c SET state = 'started', result = NULL, updated_at = p_now
            WHERE c.key = p_key AND c.state = 'reserved';
            IF NOT FOUND THEN
                RETURN false;
            END IF;
        END IF;
    END IF;
    IF p_kind IS NOT NULL THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_now, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe);
    END IF;
    RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.ag_settle(
    p_key text, p_ok boolean, p_release boolean, p_actual float8, p_result text, p_now float8,
    p_kind text, p_call_key text, p_data text, p_dedupe text, p_ts_repr text)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    st text;
    ch text;
    r record;
BEGIN
    -- Recorded whatever the call's state (an unknown call only audits); first, so that no
    -- counter row is locked meanwhile.
    IF p_kind IS NOT NULL THEN
        INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe)
        VALUES (p_now, p_ts_repr, p_kind, p_call_key, p_data, p_dedupe);
    END IF;
    SELECT c.state, c.charges INTO st, ch FROM {p}calls c WHERE c.key = p_key FOR UPDATE;
    IF FOUND AND st IN ('reserved', 'started') THEN
        IF p_release OR NOT p_ok OR p_actual IS NOT NULL THEN
            FOR r IN
                SELECT e->>'key' AS k, (e->>'amount')::float8 AS a, e->>'kind' AS kind
                FROM json_array_elements(ch::json) WITH ORDINALITY AS t(e, n)
                ORDER BY e->>'key' COLLATE "C", t.n
            LOOP
                IF p_release OR NOT p_ok THEN
                    UPDATE {p}counters x SET used = x.used - r.a, updated_at = p_now
                    WHERE x.key = r.k;
                ELSIF r.kind = 'budget' THEN
                    UPDATE {p}counters x SET used = x.used + (p_actual - r.a), updated_at = p_now
                    WHERE x.key = r.k;
                END IF;
            END LOOP;
        END IF;
        IF p_release THEN
            UPDATE {p}calls c SET state = 'released', updated_at = p_now WHERE c.key = p_key;
        ELSE
            UPDATE {p}calls c
            SET state = CASE WHEN p_ok THEN 'finished' ELSE 'failed' END,
                result = p_result, updated_at = p_now
            WHERE c.key = p_key;
        END IF;
    END IF;
END
$fn$;
