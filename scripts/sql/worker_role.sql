-- The job path's database role: what a worker needs and nothing more
-- (docs/security.md, "Least privilege in the database"; docs/operating/database-roles.md).
--
-- Run it as the role that owns the schema (the operators' role, which runs
-- `scripts/admin db upgrade` and the admin commands), after every upgrade:
--
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f scripts/sql/worker_role.sql
--
-- It is idempotent (run it as often as you like, in one database or several of one
-- cluster) and safe beside migrations: it creates no table and changes no row, only
-- the privileges of the role `odeatts_worker`, which it first takes all away and then
-- grants again. A table or function a later migration adds is granted nothing until
-- this script says so and runs again. The role cannot log in; give the worker a login
-- of its own that is a member of it, once:
--
--   CREATE ROLE odeatts_app LOGIN PASSWORD '...' IN ROLE odeatts_worker;
--
-- and the worker's DATABASE_URL names odeatts_app. Nothing here is ever granted WITH
-- GRANT OPTION, and the worker owns nothing, so it cannot widen its own rights.

DO $$
BEGIN
    CREATE ROLE odeatts_worker NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- there already (this cluster's other database, an earlier run, a race)
END
$$;

-- From nothing: a privilege this script no longer grants is taken back.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM odeatts_worker;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM odeatts_worker;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM odeatts_worker;
-- Postgres before 15 lets every role create tables in `public`; the worker must not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO odeatts_worker;

-- Authenticate a key, read its user's plan and limits, the voice catalogue (with its
-- aliases and saved pronunciations), the caller's quota and recent usage (the `usage`
-- action).
GRANT SELECT ON plans, users, api_keys, voices, voice_aliases, pronunciations, usage
    TO odeatts_worker;

-- A job's usage row: inserted by the reservation, closed by settle or release, taken
-- over by a re-delivery. Never deleted, never moved to another job id.
GRANT INSERT ON usage TO odeatts_worker;
GRANT UPDATE (user_id, api_key_id, voice, model, text_chars, estimated_ms, duration_ms,
              billed_characters, status, error_code, trace_id, attempts, reserved_at,
              settled_at, worker_ms, upstream_ms, upstream_alert, cached,
              saved_characters)
    ON usage TO odeatts_worker;
GRANT USAGE ON SEQUENCE usage_id_seq TO odeatts_worker;

-- The charge (used_ms) and, once a month, the roll of an ended cycle (cycles.py: the
-- new cycle's dates, used and credit back to zero, the old cycle archived). Not the
-- plan, the overrides, the email, `active`: those are the operators'.
GRANT UPDATE (used_ms, credit_ms, cycle_start, cycle_end) ON users TO odeatts_worker;
GRANT SELECT, INSERT ON billing_cycles TO odeatts_worker;
GRANT USAGE ON SEQUENCE billing_cycles_id_seq TO odeatts_worker;

-- The job path's functions, migrations 0004 and 0006 (SECURITY INVOKER: they run with
-- the rights above; 0004's stay for workers of the previous version during a deploy).
-- Postgres lets PUBLIC execute every new function; only the worker (and the owner)
-- should call these.
REVOKE EXECUTE ON FUNCTION odeatts_reserve, odeatts_settle, odeatts_reserve2, odeatts_settle2,
    odeatts_settle3
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION odeatts_reserve, odeatts_settle, odeatts_reserve2, odeatts_settle2,
    odeatts_settle3
    TO odeatts_worker;
