"""``postgresql://...``: the store for many workers on many machines (psycopg 3).

URLs are libpq URLs (``postgresql://user:password@host:5432/dbname?sslmode=require``) plus
one option of ours:

``schema=NAME``
    Keep every table (and the store's functions) in schema ``NAME``, created if missing.
    Without it they go into the connection's current schema (usually ``public``; libpq's
    ``options=-csearch_path%3DNAME`` works too). Several independent stores can share one
    database in different schemas. The test suite gives every test a throw-away schema
    this way and drops it afterwards.

``connect_timeout`` defaults to 10 seconds and ``application_name`` to
``agent-guardrails`` unless the URL sets them; connections use ``client_encoding`` UTF8.
Needs ``pip install 'agent-guardrails[postgres]'``. The tables are the ones described in
:mod:`agent_guardrails.store._sql`, plus ``ag_audit_outbox`` (below).

**Schema versions and upgrades.** ``ag_meta`` records the schema version
(:data:`SCHEMA_VERSION`, 2; SQLite keeps its own) and a digest of the PL/pgSQL functions
below. Opening a store creates what is missing, under a transaction-scoped advisory lock so
many processes may open one database at once. A version 1 database (every append chained
at once under the chain-head row's lock) is upgraded in place, in one transaction: the
outbox table and the ``ag_audit.src`` column are added (no rewrite, no data moved; its
chain goes on from its head) and the functions replaced. Workers of the previous release
still running keep working on the upgraded database (the functions they call keep their
signatures and now append through the outbox; only their operator steps, which lock the
head row before the chain lock, can deadlock with chaining and fail), and a previous
release refuses to *open* a version 2 database: restart old workers with the new release.

How it keeps the contract:

- **One connection per thread**, in autocommit mode, opened on first use and closed when
  the thread ends or on :meth:`PostgresStore.close`. A broken connection is dropped and the
  next call opens a new one. (psycopg_pool is not used.)
- **Durable commits.** ``synchronous_commit`` is left as the server has it (``on``): a
  committed reservation or audit record survives a crash of the database server.
- **Each hot-path step is one statement: one round trip, one transaction.** ``reserve``
  (also with ``start=``, which marks the call started in the same step), ``start``,
  ``finish`` and ``release`` call functions the store installs in its schema
  (``ag_reserve1``, ``ag_start``, ``ag_settle``), prepared once per connection and run
  through libpq directly (:meth:`PostgresStore._exec`): psycopg's ``execute`` cost about
  100 µs of Python per call more, which on a small machine is CPU the database needs.
  ``reserve_many`` and a reservation that leaves the fast path use ``ag_reserve``;
  ``snapshot`` is one ``SELECT``. The functions run with ``plan_cache_mode =
  force_generic_plan``: re-planning their statements on every call cost more than running
  them.
- **Reserving**: insert the call row (``ON CONFLICT``: a key already reserved, started or
  finished is a replay and touches nothing else; a failed or released one reserves
  again), put the audit records in the outbox, then one conditional ``UPDATE ... WHERE
  used + amount <= limit`` per counter, in key order (code point order: ``COLLATE "C"``
  wherever locks are taken), the last statements before the commit, so a hot counter row
  stays locked for as short a time as possible. If a counter is new or a charge does not
  fit, the function raises and the whole statement rolls back. The client then runs the
  general path (``ag_reserve`` without its fast path): create the missing counter rows,
  lock every counter ``FOR UPDATE`` in key order, check every charge against what the
  batch wants of its counter, and raise ``GR001`` naming the first charge that does not
  fit (the client turns that into ``ReserveResult(ok=False, breach=..., used=...)``), or
  add the amounts. Nothing is ever read, decided in Python and written back.
- **One audit chain, chained in batches.** Issue 3 measured the old design, where every
  append locked one chain-head row until its commit was flushed: a second hot lock that
  serialised every audited commit across all budgets (1.4-2.0k/s whatever the number of
  budgets). Now the hot path only *inserts* its records into ``ag_audit_outbox`` (ordered
  by an identity column; no hash, no shared lock), and ``ag_chain_pending`` moves them,
  in id order, into ``ag_audit``: it numbers each record, hashes it with
  :func:`~agent_guardrails.store.base.chain_hash`'s text
  ``prev|seq|repr(ts)|kind|call_key|data`` (``repr(ts)`` and the canonical JSON computed
  in Python when the record was written), advances ``ag_audit_head`` and deletes the rows
  from the outbox, all in one transaction, under a transaction-scoped advisory lock (one
  chainer at a time; the lock itself writes nothing). The chain stays one gap-free
  sequence. Chaining happens

  * after a store's own hot-path writes, at most every :attr:`PostgresStore.CHAIN_INTERVAL`
    seconds per store and up to :attr:`PostgresStore.CHAIN_BATCH` records, only if no one
    else is chaining (``pg_try_advisory_xact_lock``: nobody waits, and a failure there
    never fails the write that triggered it);
  * before the log is read: ``audit_records``, ``find_audit`` (when the record is not
    chained yet), ``verify_audit`` and so ``agent-guardrails audit verify/export``;
  * by ``append_audit`` and the operator steps (``set_level``, kill-switches, packs,
    outcomes), which return or need their record: ``append_audit`` commits its record and
    chains it at once when the lock is free, else waits for the lock, by when the holder
    (or the next waiter) has chained every waiting record in one commit;
  * when a store is closed, for what it left waiting.

  Duplicates: the hot path does not check ``dedupe`` (the outbox has no unique index);
  chaining inserts with ``ON CONFLICT (dedupe) DO NOTHING``, so the first record with a
  ``dedupe`` string (in chain order, which is commit-then-id order) is kept and any later
  one, from any process, is dropped before it gets a number. ``append_audit`` returns
  ``None`` for such a duplicate. A record's position is fixed when it is chained: records
  written by one thread keep their order; records committed concurrently by different
  processes are chained in id order as far as they are visible, else in the next batch.
- **Tamper evidence, honestly.** A chained record is as tamper-evident as before (edits,
  deletions, insertions, reordering and a deleted or rewound head are detected and the
  first bad record named, also while more records are chained after the damage). A
  record still waiting in the outbox (normally for well under a second, and never when
  the log is read: every read chains first) is *not*: editing or deleting it straight in
  the database leaves no trace, and a forged row inserted there is chained like any other
  (but cannot displace a recorded ``dedupe``). If the head row is missing or a record
  was forged after it, chaining refuses (``GR002``): the hot path goes on and its records
  wait in the outbox, ``append_audit`` fails closed naming the problem, and
  ``verify_audit`` reports the damage, until an operator repairs the log.
- **Locks** are always taken in the same order (call row, counter rows by key; the chain
  lock only by chaining and operator steps, which take nothing the hot path holds first),
  so two calls never deadlock. The hot path never waits for chaining.
- **Throughput** (``python benchmarks/store.py``): one hot budget is bounded by its row
  lock, held until each commit is flushed, like a plain ``UPDATE`` of one row; over many
  budgets, by CPU. Every record is written twice (outbox, then log), off the hot locks.

Errors from the server or the network raise
:class:`~agent_guardrails.errors.StoreUnavailable` with the driver's message. Passwords are
never included: ``store.url`` has them replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import ConfigurationError, StoreUnavailable
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store import _sql
from agent_guardrails.store._sql import (
    AUDIT_COLS,
    CALL_COLS,
    LEVEL_COLS,
    OUTCOME_COLS,
    PACK_COLS,
    SWITCH_COLS,
    PerThread,
)
from agent_guardrails.store.base import (
    AuditEvent,
    AuditRecord,
    CallRecord,
    KillSwitch,
    LevelChange,
    Outcome,
    PackVersion,
    ReserveResult,
    Snapshot,
    VerifyResult,
    canonical_json,
    check_charges,
    check_finite,
    level_data,
    pack_conflict,
)

__all__ = ["PostgresStore", "parse_postgres_url"]

_HINT = "write postgresql://user@host:5432/dbname (optionally ?schema=NAME)"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DENIED = "GR001"  # raised by ag_reserve when a charge does not fit
_TAMPERED = "GR002"  # raised by ag_chain_pending: the head row is missing or behind the log
_GENERAL = "GR003"  # raised by ag_reserve's fast path: run the general path
# The hot-path statements PostgresStore._exec prepares on each connection.
_RESERVE1, _START, _SETTLE = b"ag_reserve1", b"ag_start", b"ag_settle"

# PostgreSQL's schema version, recorded in ag_meta (SQLite's is _sql.SCHEMA_VERSION, 1).
# 1: the tables of _sql, every append chained at once under the chain-head row's lock.
# 2: adds ag_audit_outbox and ag_audit.src: the hot path appends to the outbox and
#    ag_chain_pending chains in batches. Opening a version 1 database upgrades it in place.
SCHEMA_VERSION = 2
_UPGRADE_2 = """
CREATE TABLE IF NOT EXISTS {p}audit_outbox (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    ts_repr TEXT NOT NULL,
    kind TEXT NOT NULL,
    call_key TEXT,
    data TEXT NOT NULL,
    dedupe TEXT
) WITH (autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_scale_factor = 0,
       autovacuum_vacuum_cost_delay = 0);
ALTER TABLE {p}audit ADD COLUMN IF NOT EXISTS src BIGINT;
DROP FUNCTION IF EXISTS {s}.ag_chain(text, text, text, text, float8, text)
"""

# Functions installed in the store's schema. {s} is the quoted schema, {p} the table prefix,
# {lock} the key of the chain lock (a transaction-scoped advisory lock, one per schema).
_FUNCTIONS = r"""
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
"""


_FUNCTIONS_DIGEST = hashlib.sha256(_FUNCTIONS.encode()).hexdigest()[:16]


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def parse_postgres_url(url: str) -> tuple[str, str | None]:
    """The libpq URL to connect with (our options removed, defaults added) and the schema."""
    scheme, sep, _rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        raise ConfigurationError(f"bad PostgreSQL URL {_sql.redact_url(url)!r}: {_HINT}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(
            f"bad PostgreSQL URL {_sql.redact_url(url)!r}: {exc}; {_HINT}"
        ) from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in pairs}
    if not parts.hostname and not parts.path.strip("/") and not names & {"host", "dbname"}:
        raise ConfigurationError(
            f"PostgreSQL URL {_sql.redact_url(url)!r} names no server and no database: {_HINT}"
        )
    schema: str | None = None
    keep: list[tuple[str, str]] = []
    for key, value in pairs:
        if key == "schema":
            if not _IDENT.match(value):
                raise ConfigurationError(
                    f"bad schema {value!r} in PostgreSQL URL: use letters, digits and "
                    "underscores, starting with a letter or underscore (at most 63)"
                )
            schema = value
        else:
            keep.append((key, value))
    if "connect_timeout" not in names:
        keep.append(("connect_timeout", "10"))
    if "application_name" not in names:
        keep.append(("application_name", "agent-guardrails"))
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(keep), parts.fragment))
    return conninfo, schema


def _by_key(charge: Charge) -> str:
    return charge.key


def _encoded(event: AuditEvent | None) -> tuple[bytes | None, ...]:
    """An audit event's ``kind, call_key, data, dedupe`` parameters, as UTF-8 text."""
    if event is None:
        return (None, None, None, None)
    text, _data = _sql.audit_payload(event)
    return (
        event.kind.encode(),
        None if event.call_key is None else event.call_key.encode(),
        text.encode(),
        None if event.dedupe is None else event.dedupe.encode(),
    )


def _text_array(values: Sequence[str]) -> bytes:
    """A ``text[]`` literal: every element quoted, backslashes and quotes escaped."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(quoted) + "}").encode()


def _float_array(values: Sequence[float]) -> bytes:
    """A ``float8[]`` literal; ``repr`` round-trips exactly (``inf`` and ``nan`` too)."""
    return ("{" + ",".join(repr(float(v)) for v in values) + "}").encode()


def _chain_lock(schema: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of ``schema``'s audit chain."""
    digest = hashlib.sha256(f"agent_guardrails:audit:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class PostgresStore:
    """A :class:`~agent_guardrails.store.base.Store` in a PostgreSQL database.

    >>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/test?schema=guardrails")
    ... # doctest: +SKIP
    """

    #: Seconds between the chain steps a store takes after its own hot-path writes.
    CHAIN_INTERVAL = 0.5
    #: At most this many records chained by one such step (reads chain everything).
    CHAIN_BATCH = 5000

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "the PostgreSQL store needs psycopg 3: pip install 'agent-guardrails[postgres]'"
            ) from None
        self._pg: Any = psycopg
        self._ok = psycopg.pq.ExecStatus.COMMAND_OK
        self._rows = psycopg.pq.ExecStatus.TUPLES_OK
        self._sqlstate = psycopg.pq.DiagnosticField.SQLSTATE
        self.url = _sql.redact_url(url)
        self._conninfo, schema = parse_postgres_url(url)
        self._conns: PerThread[Any] = PerThread(self._connect, self._close_conn)
        self._scopes: dict[str, Scope] = {}
        self._prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
        # time.monotonic() of the next chain step after a hot-path write (see _appended)
        self._chain_due = time.monotonic() + self.CHAIN_INTERVAL
        self._unchained = False  # this store appended to the outbox since it last chained
        try:
            self._open(schema)
        except BaseException:
            self._conns.close_all()
            raise

    def _open(self, schema: str | None) -> None:
        with self._errors():
            if schema is None:
                row = self._conn().execute("SELECT current_schema()").fetchone()
                if row is None or row[0] is None:
                    raise ConfigurationError(
                        f"{self.url}: the connection has no current schema (search_path); "
                        "add ?schema=NAME to the URL"
                    )
                schema = str(row[0])
            self.schema = schema
            self._s = _quote(schema)
            self._p = f"{self._s}.ag_"
            self._lock = _chain_lock(schema)
            self._prepare_sql()
            self._create_schema()

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> Any:
        try:
            # UTF8 whatever the server's encoding: the hot path encodes its own parameters.
            conn = self._pg.connect(self._conninfo, autocommit=True, client_encoding="UTF8")
        except self._pg.Error as exc:
            raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc
        try:
            # Timestamps must come back exactly as written: they are hashed into the chain.
            conn.execute("SET extra_float_digits = 3")
        except self._pg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc
        return conn

    @staticmethod
    def _close_conn(conn: Any) -> None:
        conn.close()

    def _conn(self) -> Any:
        try:
            return self._conns.get()
        except RuntimeError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def _fail(self, exc: BaseException) -> NoReturn:
        """Raise StoreUnavailable for a driver error; drop this thread's connection if the
        error broke it, so the next call reconnects."""
        conn = self._conns.peek()
        if conn is not None and (conn.closed or conn.broken):
            self._conns.discard()
        raise StoreUnavailable(f"{self.url}: {_message(exc)}") from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors become StoreUnavailable (see :meth:`_fail`)."""
        try:
            yield
        except self._pg.Error as exc:
            self._fail(exc)

    @contextlib.contextmanager
    def _tx(self, *, serialise: bool = False) -> Iterator[Any]:
        """A transaction on this thread's connection. ``serialise`` takes the chain lock
        first, for read-modify-write steps that append (and chain) an audit record anyway."""
        with self._errors():
            conn = self._conn()
            with conn.transaction():
                if serialise:
                    conn.execute(self._q_lock_chain)
                yield conn

    def _prepare_sql(self) -> None:
        p, s = self._p, self._s
        self._q_lock_chain = f"SELECT pg_advisory_xact_lock({self._lock})"
        self._q_append = f"SELECT o_seq, o_prev, o_hash FROM {s}.ag_append(%s, %s, %s, %s, %s, %s)"
        self._q_append_try = (
            "SELECT o_id, o_after, o_count, o_seq, o_prev, o_hash "
            f"FROM {s}.ag_append_try(%s, %s, %s, %s, %s, %s)"
        )
        self._q_chain = (
            f"SELECT o_count, o_seq, o_prev, o_hash FROM {s}.ag_chain_pending(%s, %s, %s, %s)"
        )
        # Arrays go in binary: psycopg's text format escapes every quote of the JSON
        # payloads with a regular expression, which cost more than the round trip.
        self._q_reserve = (
            f"SELECT {s}.ag_reserve(%b::text[], %b::text[], %b::int4[], %b::text[], "
            "%b::float8[], %b::float8[], %b::int8[], %s, %s, %s, %b::text[], %b::text[], "
            "%b::text[], %b::text[], %s, %s)"
        )
        # The hot path's statements, run through libpq directly (see _exec).
        self._hot = {
            _RESERVE1: (
                f"SELECT {s}.ag_reserve1($1::text, $2::text, $3::float8, $4::float8, $5::text, "
                "$6::text, $7::text, $8::text, $9::text, $10::text[], $11::float8[], "
                "$12::float8[], $13::text, $14::text, $15::text, $16::text)"
            ).encode(),
            _START: (
                f"SELECT {s}.ag_start($1::text, $2::float8, $3::text, $4::text, $5::text, "
                "$6::text, $7::text)"
            ).encode(),
            _SETTLE: (
                f"SELECT {s}.ag_settle($1::text, $2::bool, $3::bool, $4::float8, $5::text, "
                "$6::float8, $7::text, $8::text, $9::text, $10::text, $11::text)"
            ).encode(),
        }
        self._q_start_reserved = (
            f"UPDATE {p}calls SET state = 'started', updated_at = %s "
            "WHERE key = %s AND state = 'reserved'"
        )
        self._q_outbox = (
            f"INSERT INTO {p}audit_outbox (ts, ts_repr, kind, call_key, data, dedupe) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        )
        self._q_snapshot = (
            f"SELECT (SELECT level FROM {p}levels WHERE dial_key = %(dial)s), "
            f"ARRAY(SELECT scope_key FROM {p}kill_switches WHERE engaged ORDER BY id), "
            f"ARRAY(SELECT key FROM {p}counters WHERE key = ANY(%(keys)s::text[]) ORDER BY key), "
            f"ARRAY(SELECT used FROM {p}counters WHERE key = ANY(%(keys)s::text[]) "
            "ORDER BY key), "
            f"(SELECT digest FROM {p}packs WHERE active), "
            "c.key, c.state, c.charges, c.result, c.updated_at "
            f"FROM (SELECT 1) AS one LEFT JOIN {p}calls c ON c.key = %(call)s"
        )
        self._q_call = f"SELECT {CALL_COLS} FROM {p}calls WHERE key = %s"

    def _create_schema(self) -> None:
        """Create the schema, tables and functions if they are missing or out of date.

        ``ag_meta`` holds the schema version (:data:`SCHEMA_VERSION`) and a digest of the
        functions' text, so a new release upgrades the tables and replaces the functions
        (``CREATE OR REPLACE``) the first time it opens an existing database, in one
        transaction. DDL runs under an advisory lock taken for this schema, so processes
        opening the store at the same time do not race. A release that knows an older
        version refuses to open the database (:meth:`_schema_state`).
        """
        conn = self._conn()
        if self._schema_state(conn) == (SCHEMA_VERSION, _FUNCTIONS_DIGEST):
            return
        functions_sql = (
            _FUNCTIONS.replace("{s}", self._s)
            .replace("{p}", self._p)
            .replace("{lock}", str(self._lock))
        )
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"agent_guardrails:{self.schema}",),
            )
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if exists is None:
                conn.execute(f"CREATE SCHEMA {self._s}")
            version, functions = self._schema_state(conn)
            if version != SCHEMA_VERSION:
                # Every statement is idempotent: a new database gets version 1's tables and
                # then version 2's additions; a version 1 database gets the additions.
                for statement in _sql.schema_statements("postgresql", self._p):
                    conn.execute(statement)
                conn.execute(_UPGRADE_2.replace("{s}", self._s).replace("{p}", self._p))
            if functions != _FUNCTIONS_DIGEST or version != SCHEMA_VERSION:
                conn.execute(functions_sql)
            conn.execute(
                f"INSERT INTO {self._p}meta (key, value) "
                "VALUES ('schema_version', %s), ('functions', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION), _FUNCTIONS_DIGEST),
            )

    def _schema_state(self, conn: Any) -> tuple[int | None, str | None]:
        """The schema version and functions digest recorded in ``ag_meta`` (None: absent)."""
        found = conn.execute("SELECT to_regclass(%s)", (f"{self._p}meta",)).fetchone()
        if found is None or found[0] is None:
            return None, None
        meta = dict(conn.execute(f"SELECT key, value FROM {self._p}meta").fetchall())
        version = int(meta["schema_version"]) if "schema_version" in meta else None
        if version is not None and version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.url} (schema {self.schema}) was written by a newer agent-guardrails "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade agent-guardrails"
            )
        return version, meta.get("functions")

    @staticmethod
    def _audit_args(event: AuditEvent | None, ts: float) -> tuple[Any, ...]:
        """The ``p_kind, p_call_key, p_data, p_dedupe, p_ts_repr`` arguments."""
        if event is None:
            return (None, None, None, None, None)
        text, _data = _sql.audit_payload(event)
        return (event.kind, event.call_key, text, event.dedupe, repr(ts))

    def _exec(
        self, conn: Any, name: bytes, params: Sequence[bytes | None], *, expect: str = ""
    ) -> Any:
        """Run hot-path statement ``name`` (prepared on this connection on first use) with
        text parameters, through libpq directly (``Connection.pgconn``, psycopg's documented
        low-level interface): one round trip, as ``conn.execute`` would, with about 100 µs
        less Python per call, which is most of what a process spends per reservation. The
        result, or ``None`` when the statement raised SQLSTATE ``expect``; any other error
        raises :class:`StoreUnavailable`."""
        pgconn = conn.pgconn
        prepared = self._prepared.get(conn)
        if prepared is None:
            prepared = self._prepared[conn] = set()
        for attempt in (1, 2):
            if name not in prepared:
                res = pgconn.prepare(name, self._hot[name])
                if res.status != self._ok and res.error_field(self._sqlstate) != b"42P05":
                    self._raw_fail(conn, res)  # (42P05: it was prepared already)
                prepared.add(name)
            res = pgconn.exec_prepared(name, params)
            if res.status == self._rows:
                return res
            state = (res.error_field(self._sqlstate) or b"").decode()
            if state == expect:
                return None
            if state == "26000" and attempt == 1:  # the server forgot it (DISCARD ALL)
                prepared.discard(name)
                continue
            self._raw_fail(conn, res)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raw_fail(self, conn: Any, res: Any) -> NoReturn:
        """:meth:`_fail` for an error result of :meth:`_exec`."""
        message = res.error_message.decode(errors="replace")
        if message.startswith(("ERROR:", "FATAL:")):
            message = message.split(":", 1)[1]
        message = " ".join(message.split()) or "the statement failed"
        if conn.broken or conn.closed:
            self._conns.discard()
        raise StoreUnavailable(f"{self.url}: {message}")

    def _appended(self, conn: Any) -> None:
        """After a hot-path write put audit records in the outbox: a chain step, at most
        every :attr:`CHAIN_INTERVAL` seconds per store and only if no other session is at it.
        It never waits and never fails the caller, whose write is committed already: a step
        that fails leaves the records waiting, and the next audit read says why."""
        self._unchained = True
        now = time.monotonic()
        if now < self._chain_due:
            return
        self._chain_due = now + self.CHAIN_INTERVAL
        try:
            conn.execute(self._q_chain, (False, self.CHAIN_BATCH, None, None))
        except self._pg.Error:
            if conn.closed or conn.broken:
                self._conns.discard()

    def _chain_all(self, conn: Any) -> None:
        """Chain every waiting record, waiting for the chain lock: before reading the log."""
        conn.execute(self._q_chain, (True, None, None, None))
        self._unchained = False

    def _append(self, conn: Any, event: AuditEvent, ts: float) -> AuditRecord | None:
        text, data = _sql.audit_payload(event)
        row = conn.execute(
            self._q_append, (event.kind, event.call_key, text, event.dedupe, ts, repr(ts))
        ).fetchone()
        if row is None:
            return None
        seq, prev, digest = row
        return AuditRecord(int(seq), ts, event.kind, event.call_key, data, prev, digest)

    # ------------------------------------------------------------------ hot path

    def snapshot(self, *, dial_key: str, counter_keys: Sequence[str], call_key: str) -> Snapshot:
        keys = list(counter_keys)
        with self._errors():
            row = (
                self._conn()
                .execute(self._q_snapshot, {"dial": dial_key, "keys": keys, "call": call_key})
                .fetchone()
            )
        level, switches, found_keys, found_used, pack, *call = row
        found = dict(zip(found_keys, found_used, strict=True))
        scopes = self._scopes
        return Snapshot(
            level=int(level) if level is not None else None,
            kill_switches=tuple(_sql.parse_scope(k, scopes) for k in switches),
            used={k: float(found.get(k, 0.0)) for k in keys},
            call=_sql.call_record(call) if call[0] is not None else None,
            pack=pack,
        )

    def reserve(
        self,
        call_key: str,
        charges: Sequence[Charge],
        *,
        audit: AuditEvent | None = None,
        force: bool = False,
        now: float | None = None,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        check_charges(charges)
        audits = (audit,) if audit is not None else ()
        distinct = len({c.key for c in charges}) == len(charges)
        if force or not distinct:
            return self._reserve(
                [(call_key, charges)],
                audit=audits,
                force=force,
                now=now,
                fast=distinct and not force,
                start=start,
            )
        ts = time.time()
        stamp = ts if now is None else now
        # Locks in one order everywhere: by key, code point order (COLLATE "C" in SQL).
        ordered = sorted(charges, key=_by_key) if len(charges) > 1 else charges
        ts_repr = repr(ts)
        params = [
            call_key.encode(),
            _sql.charges_to_json(charges).encode(),
            repr(float(stamp)).encode(),
            ts_repr.encode(),
            *_encoded(audit),
            ts_repr.encode(),
            _text_array([c.key for c in ordered]),
            _float_array([c.amount for c in ordered]),
            _float_array([c.limit for c in ordered]),
            *_encoded(start),
        ]
        with self._errors():
            conn = self._conn()
            res = self._exec(conn, _RESERVE1, params, expect=_GENERAL)
        if res is None:  # GR003: a new counter, or a charge that does not fit
            return self._reserve(
                [(call_key, charges)], audit=audits, force=False, now=now, fast=False, start=start
            )
        if res.get_value(0, 0) == b"0":
            return ReserveResult(ok=True, replay=True)
        if audit is not None or start is not None:
            self._appended(conn)
        return ReserveResult(ok=True, started=start is not None)

    def reserve_many(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent] = (),
        force: bool = False,
        now: float | None = None,
    ) -> ReserveResult:
        for _key, charges in items:
            check_charges(charges)
        keys = [c.key for _, charges in items for c in charges]
        # The fast path needs every counter charged once; it hands anything unusual (a new
        # counter, a charge that does not fit) back with GR003, for the general path.
        fast = not force and len(set(keys)) == len(keys)
        return self._reserve(items, audit=audit, force=force, now=now, fast=fast)

    def _reserve(
        self,
        items: Sequence[tuple[str, Sequence[Charge]]],
        *,
        audit: Sequence[AuditEvent],
        force: bool,
        now: float | None,
        fast: bool,
        start: AuditEvent | None = None,
    ) -> ReserveResult:
        """``ag_reserve`` (one statement), or with ``start`` (one call, from :meth:`reserve`
        off its fast path: rare) ``ag_reserve`` and the start in one client transaction."""
        ts = time.time()
        stamp = ts if now is None else now
        flat: list[Charge] = []
        owner: list[int] = []
        for index, (_key, charges) in enumerate(items, 1):
            flat.extend(charges)
            owner.extend([index] * len(charges))
        payloads = [_sql.audit_payload(event)[0] for event in audit]
        keys = [c.key for c in flat]
        params: list[Any] = [
            [key for key, _ in items],
            [_sql.charges_to_json(charges) for _, charges in items],
            owner,
            keys,
            [float(c.amount) for c in flat],
            [float(c.limit) for c in flat],
            [int(c.expires_at) for c in flat],
            force,
            fast,
            stamp,
            [e.kind for e in audit],
            [e.call_key for e in audit],
            payloads,
            [e.dedupe for e in audit],
            ts,
            repr(ts),
        ]
        conn = self._conn()
        while True:
            try:
                if start is None:
                    row = conn.execute(self._q_reserve, params).fetchone()
                    break
                with conn.transaction():
                    row = conn.execute(self._q_reserve, params).fetchone()
                    if int(row[0]) > 0:
                        kind, call_key, text, dedupe, ts_repr = self._audit_args(start, ts)
                        conn.execute(self._q_start_reserved, (stamp, items[0][0]))
                        conn.execute(self._q_outbox, (ts, ts_repr, kind, call_key, text, dedupe))
                break
            except self._pg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _GENERAL and params[8]:
                    params[8] = False
                    continue
                if state != _DENIED:
                    self._fail(exc)
                position, used_hex = str(exc.diag.message_detail).split()
                used = struct.unpack(">d", bytes.fromhex(used_hex))[0]
                return ReserveResult(ok=False, breach=flat[int(position) - 1], used=float(used))
        fresh = int(row[0])
        if fresh == 0:
            return ReserveResult(ok=True, replay=True)
        if audit or start is not None:
            self._appended(conn)
        return ReserveResult(
            ok=True, replay=fresh < len({key for key, _ in items}), started=start is not None
        )

    def start(self, call_key: str, *, audit: AuditEvent | None = None) -> bool:
        now = repr(time.time()).encode()
        params = [call_key.encode(), now, *_encoded(audit), now if audit is not None else None]
        with self._errors():
            conn = self._conn()
            started: bool = self._exec(conn, _START, params).get_value(0, 0) == b"t"
        if started and audit is not None:
            self._appended(conn)
        return started

    def _settle(
        self,
        call_key: str,
        *,
        ok: bool,
        release: bool,
        actual_cost: float | None,
        result: str | None,
        audit: AuditEvent | None,
    ) -> None:
        now = repr(time.time()).encode()
        params = [
            call_key.encode(),
            b"t" if ok else b"f",
            b"t" if release else b"f",
            None if actual_cost is None else repr(float(actual_cost)).encode(),
            None if result is None else result.encode(),
            now,
            *_encoded(audit),
            now if audit is not None else None,
        ]
        with self._errors():
            conn = self._conn()
            self._exec(conn, _SETTLE, params)
        if audit is not None:
            self._appended(conn)

    def finish(
        self,
        call_key: str,
        *,
        ok: bool,
        actual_cost: float | None = None,
        result: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        if actual_cost is not None:
            check_finite(actual_cost, "actual_cost")
        self._settle(
            call_key, ok=ok, release=False, actual_cost=actual_cost, result=result, audit=audit
        )

    def release(self, call_key: str, *, audit: AuditEvent | None = None) -> None:
        self._settle(call_key, ok=False, release=True, actual_cost=None, result=None, audit=audit)

    def append_audit(self, event: AuditEvent) -> AuditRecord | None:
        """Append ``event`` and chain it: one statement when no other session is chaining;
        else the record is committed to the outbox first and this waits for the chain lock
        (whoever holds it next chains every waiting record in one commit)."""
        ts = time.time()
        text, data = _sql.audit_payload(event)
        with self._errors():
            conn = self._conn()
            row = conn.execute(
                self._q_append_try, (event.kind, event.call_key, text, event.dedupe, ts, repr(ts))
            ).fetchone()
            outbox_id, after, count, seq, prev, digest = row
            if count < 0:
                seq, prev, digest = conn.execute(
                    self._q_chain, (True, None, outbox_id, after)
                ).fetchone()[1:]
        if seq is None:
            return None  # a duplicate of an earlier event (same dedupe): dropped
        return AuditRecord(int(seq), ts, event.kind, event.call_key, data, prev, digest)

    # ------------------------------------------------------------------ operators

    def call_record(self, call_key: str) -> CallRecord | None:
        with self._errors():
            row = self._conn().execute(self._q_call, (call_key,)).fetchone()
        return _sql.call_record(row) if row is not None else None

    def in_doubt(self) -> list[CallRecord]:
        with self._errors():
            rows = (
                self._conn()
                .execute(
                    f"SELECT {CALL_COLS} FROM {self._p}calls WHERE state = 'started' "
                    "ORDER BY updated_at, key"
                )
                .fetchall()
            )
        return [_sql.call_record(r) for r in rows]

    def counters(self, prefix: str = "") -> dict[str, float]:
        with self._errors():
            rows = (
                self._conn()
                .execute(
                    f"SELECT key, used FROM {self._p}counters WHERE starts_with(key, %s) "
                    "ORDER BY key",
                    (prefix,),
                )
                .fetchall()
            )
        return {str(k): float(v) for k, v in rows}

    def get_level(self, dial_key: str) -> int | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT level FROM {self._p}levels WHERE dial_key = %s", (dial_key,))
                .fetchone()
            )
        return int(row[0]) if row is not None else None

    def set_level(
        self,
        dial_key: str,
        level: int,
        *,
        by: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> LevelChange:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT level FROM {p}levels WHERE dial_key = %s", (dial_key,)
            ).fetchone()
            change = LevelChange(
                dial_key,
                int(row[0]) if row is not None else None,
                level,
                by,
                reason,
                dict(evidence or {}),
                now,
            )
            conn.execute(
                f"INSERT INTO {p}levels (dial_key, level, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (dial_key) DO UPDATE SET level = EXCLUDED.level, "
                "updated_at = EXCLUDED.updated_at",
                (dial_key, level, now),
            )
            conn.execute(
                f"INSERT INTO {p}level_history ({LEVEL_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    dial_key,
                    change.old_level,
                    level,
                    by,
                    reason,
                    canonical_json(change.evidence),
                    now,
                ),
            )
            self._append(conn, AuditEvent("level.changed", level_data(change)), now)
        return change

    def level_history(self, dial_key: str | None = None) -> list[LevelChange]:
        sql = f"SELECT {LEVEL_COLS} FROM {self._p}level_history"
        with self._errors():
            if dial_key is None:
                rows = self._conn().execute(sql + " ORDER BY id").fetchall()
            else:
                rows = (
                    self._conn()
                    .execute(sql + " WHERE scope_key = %s ORDER BY id", (dial_key,))
                    .fetchall()
                )
        return [_sql.level_change(r) for r in rows]

    def set_kill_switch(self, scope: Scope, engaged: bool, *, by: str, reason: str) -> KillSwitch:
        now = time.time()
        with self._tx(serialise=True) as conn:
            conn.execute(
                f"INSERT INTO {self._p}kill_switches ({SWITCH_COLS}) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (scope_key) DO UPDATE SET engaged = EXCLUDED.engaged, "
                "actor = EXCLUDED.actor, reason = EXCLUDED.reason, "
                "changed_at = EXCLUDED.changed_at",
                (scope.key, engaged, by, reason, now),
            )
            self._append(
                conn,
                AuditEvent(
                    "kill_switch.engaged" if engaged else "kill_switch.released",
                    {"scope": scope.key, "by": by, "reason": reason},
                ),
                now,
            )
        return KillSwitch(scope, engaged, by, reason, now)

    def kill_switches(self) -> list[KillSwitch]:
        with self._errors():
            rows = (
                self._conn()
                .execute(f"SELECT {SWITCH_COLS} FROM {self._p}kill_switches ORDER BY id")
                .fetchall()
            )
        return [_sql.kill_switch(r, self._scopes) for r in rows]

    def save_pack(
        self, name: str, version: str, digest: str, source: str, *, by: str
    ) -> PackVersion:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT {PACK_COLS} FROM {p}packs WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is not None:
                existing = _sql.pack_version(row)
                if existing.digest != digest:
                    raise pack_conflict(name, version)
                return existing
            conn.execute(
                f"INSERT INTO {p}packs ({PACK_COLS}) VALUES (%s, %s, %s, %s, false, %s, %s)",
                (name, version, digest, source, by, now),
            )
            self._append(
                conn,
                AuditEvent(
                    "pack.saved", {"name": name, "version": version, "digest": digest, "by": by}
                ),
                now,
            )
        return PackVersion(name, version, digest, source, False, by, now)

    def activate_pack(self, name: str, version: str, *, by: str, reason: str = "") -> PackVersion:
        now = time.time()
        p = self._p
        with self._tx(serialise=True) as conn:
            row = conn.execute(
                f"SELECT id, {PACK_COLS} FROM {p}packs WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is None:
                raise ConfigurationError(
                    f"no stored version {version} of pack {name}; apply it first "
                    "('agent-guardrails policy apply FILE')"
                )
            conn.execute(f"UPDATE {p}packs SET active = false WHERE active AND id <> %s", (row[0],))
            conn.execute(f"UPDATE {p}packs SET active = true WHERE id = %s", (row[0],))
            self._append(
                conn,
                AuditEvent(
                    "pack.activated", {"name": name, "version": version, "by": by, "reason": reason}
                ),
                now,
            )
        return replace(_sql.pack_version(row[1:]), active=True)

    def active_pack(self) -> PackVersion | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT {PACK_COLS} FROM {self._p}packs WHERE active ORDER BY id LIMIT 1")
                .fetchone()
            )
        return _sql.pack_version(row) if row is not None else None

    def pack_versions(self, name: str | None = None) -> list[PackVersion]:
        sql = f"SELECT {PACK_COLS} FROM {self._p}packs"
        with self._errors():
            if name is None:
                rows = self._conn().execute(sql + " ORDER BY id").fetchall()
            else:
                rows = (
                    self._conn().execute(sql + " WHERE name = %s ORDER BY id", (name,)).fetchall()
                )
        return [_sql.pack_version(r) for r in rows]

    def record_outcome(self, outcome: Outcome) -> None:
        check_finite(outcome.value, "outcome value", negative_ok=True)
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO {self._p}outcomes ({OUTCOME_COLS}) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    outcome.entity,
                    outcome.cohort,
                    outcome.metric,
                    float(outcome.value),
                    float(outcome.at),
                    outcome.scope_key,
                ),
            )
            self._append(conn, _sql.outcome_event(outcome), now)

    def outcomes(self, *, metric: str | None = None, since: float = 0.0) -> list[Outcome]:
        sql = f"SELECT {OUTCOME_COLS} FROM {self._p}outcomes WHERE at >= %s"
        with self._errors():
            if metric is None:
                rows = self._conn().execute(sql + " ORDER BY id", (float(since),)).fetchall()
            else:
                rows = (
                    self._conn()
                    .execute(sql + " AND metric = %s ORDER BY id", (float(since), metric))
                    .fetchall()
                )
        return [_sql.outcome(r) for r in rows]

    def audit_records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        with self._errors():
            conn = self._conn()
            self._chain_all(conn)
            rows = conn.execute(
                f"SELECT {AUDIT_COLS} FROM {self._p}audit WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, limit),
            ).fetchall()
        return [_sql.audit_record(r) for r in rows]

    def find_audit(self, dedupe: str) -> AuditRecord | None:
        query = f"SELECT {AUDIT_COLS} FROM {self._p}audit WHERE dedupe = %s"
        with self._errors():
            conn = self._conn()
            row = conn.execute(query, (dedupe,)).fetchone()
            if row is None:  # chained records never change: only a waiting one can be it
                self._chain_all(conn)
                row = conn.execute(query, (dedupe,)).fetchone()
        return None if row is None else _sql.audit_record(row)

    def verify_audit(self) -> VerifyResult:
        p = self._p
        cols = ", ".join(f"a.{c.strip()}" for c in AUDIT_COLS.split(","))
        with self._errors():
            conn = self._conn()
            try:
                self._chain_all(conn)
            except self._pg.Error as exc:
                # The head row is missing or behind the log: the records wait unchained,
                # and the check below names the first bad record.
                if getattr(exc, "sqlstate", None) != _TAMPERED:
                    raise
            # One statement, one snapshot: the head and the records agree.
            rows = conn.execute(
                f"SELECT h.seq, h.hash, {cols} FROM (SELECT 1) AS one "
                f"LEFT JOIN {p}audit_head h ON h.id = 1 "
                f"LEFT JOIN {p}audit a ON true ORDER BY a.seq"
            ).fetchall()
        records = [_sql.audit_record(r[2:]) for r in rows if r[2] is not None]
        head_seq = rows[0][0] if rows else None
        head_hash = rows[0][1] if rows else None
        return _sql.verify_with_head(
            records,
            int(head_seq) if head_seq is not None else None,
            str(head_hash) if head_hash is not None else None,
        )

    def close(self) -> None:
        """Chain what this store left waiting (best effort), then close every connection."""
        if self._unchained and not self._conns.closed:
            with contextlib.suppress(Exception):
                conn = self._conns.peek()
                if conn is not None and not conn.closed and not conn.broken:
                    self._chain_all(conn)
        self._conns.close_all()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"
