-- PostgreSQL schema version 3, applied after version 2's additions (idempotent): a KPI
-- outcome carries the level and pack version the work behind it ran under. A version 1 or 2
-- database is upgraded in place, in one transaction; existing rows keep NULL (not known).
-- Placeholders: {p} the table prefix.

ALTER TABLE {p}outcomes ADD COLUMN IF NOT EXISTS level INTEGER;
ALTER TABLE {p}outcomes ADD COLUMN IF NOT EXISTS pack_version TEXT;
