"""The job path's reserve and settle as server-side functions: one round trip each.

``odeatts_reserve`` authenticates the key, locks the user, sums the live reservations,
decides whether the estimate fits and inserts (or takes over) the usage row, in one
call. ``odeatts_settle`` charges the user and closes the row, only if the row is still
this attempt's and open. ``metering.py`` calls them on Postgres and says why; SQLite
keeps the Python path, so there is nothing to create there.

Two rules are written here as well as in Python: the quota arithmetic (allowance.py;
``tests/test_reserve_sql.py`` proves the two agree) and the take-over of a re-delivered
job (``metering._take_over``; the behavioural tests run on both backends). An ended
billing cycle is not rolled here: the function answers ``roll`` and metering.py takes
the Python path (cycles.py), once a month per user.

Workers keep these calls prepared server-side, per connection. A later change that
keeps the arguments and result columns may ``CREATE OR REPLACE``; one that changes
them needs a new function name (and workers that call it), or prepared calls to the
old one fail until their connections are recycled. Migrate before deploying workers
that call a new function.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Outcomes: unauthorized | roll | completed | in_progress (nothing written), or
# reserved | refused (the row was inserted or taken over; usage_id and attempt are set).
# The caller's columns are set for every outcome but unauthorized.
RESERVE = """
CREATE FUNCTION odeatts_reserve(
    p_key_hash text, p_job_id text, p_voice text, p_model text,
    p_text_chars integer, p_estimated_ms bigint,
    p_now timestamptz, p_live_after timestamptz
) RETURNS TABLE (
    outcome text, usage_id integer, attempt integer,
    user_id integer, api_key_id integer, plan_id text,
    plan_seconds integer, seconds_override integer,
    plan_rpm integer, rpm_override integer,
    plan_streams integer, streams_override integer,
    credit_ms bigint, used_ms bigint, reserved_ms bigint
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    c record;
    prior record;
    v_status text;
    v_error text;
BEGIN
    -- Authenticate and lock the user: reservations of one user are serialised.
    SELECT k.id AS key_id, u.id AS uid, u.plan_id AS pid, u.used_ms AS used,
           u.credit_ms AS credit, u.cycle_end AS cycle_end,
           u.monthly_seconds_override AS seconds_o, u.rpm_override AS rpm_o,
           u.streams_override AS streams_o,
           p.monthly_seconds AS seconds_p, p.rpm AS rpm_p, p.max_streams AS streams_p
      INTO c
      FROM api_keys k
      JOIN users u ON u.id = k.user_id
      JOIN plans p ON p.id = u.plan_id
     WHERE k.key_hash = p_key_hash
       AND k.revoked_at IS NULL
       AND u.active
       AND (k.expires_at IS NULL OR k.expires_at > p_now)
       FOR UPDATE OF u;
    IF NOT FOUND THEN
        outcome := 'unauthorized';
        RETURN NEXT;
        RETURN;
    END IF;
    user_id := c.uid; api_key_id := c.key_id; plan_id := c.pid;
    plan_seconds := c.seconds_p; seconds_override := c.seconds_o;
    plan_rpm := c.rpm_p; rpm_override := c.rpm_o;
    plan_streams := c.streams_p; streams_override := c.streams_o;
    credit_ms := c.credit; used_ms := c.used;
    IF c.cycle_end <= p_now THEN
        -- The cycle rule lives in cycles.py: the caller rolls it there, once a month.
        outcome := 'roll';
        RETURN NEXT;
        RETURN;
    END IF;

    -- Live reservations (allowance.live_reserved_ms), this job's own row excluded.
    SELECT coalesce(sum(x.estimated_ms), 0) INTO reserved_ms
      FROM usage x
     WHERE x.user_id = c.uid AND x.status = 'reserved'
       AND x.reserved_at > p_live_after AND x.job_id <> p_job_id;

    -- allowance.py: quota = (override or plan seconds) * 1000 + credit; a job fits
    -- when used + live reserved + estimate <= quota.
    IF c.used + reserved_ms + p_estimated_ms
       <= 1000::bigint * coalesce(c.seconds_o, c.seconds_p) + c.credit THEN
        v_status := 'reserved';
    ELSE
        v_status := 'refused';
        v_error := 'quota_exceeded';
    END IF;

    INSERT INTO usage AS x (job_id, user_id, api_key_id, voice, model, text_chars,
                            estimated_ms, status, error_code, attempts, reserved_at,
                            created_at)
    VALUES (p_job_id, c.uid, c.key_id, p_voice, p_model, p_text_chars,
            p_estimated_ms, v_status, v_error, 1, p_now, p_now)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING x.id INTO usage_id;
    IF usage_id IS NOT NULL THEN
        attempt := 1;
        outcome := v_status;
        RETURN NEXT;
        RETURN;
    END IF;

    -- A re-delivery (metering._take_over): refuse it if done or still running,
    -- else take its row over.
    SELECT x.id AS id, x.user_id AS owner, x.status AS status, x.reserved_at AS reserved_at
      INTO prior
      FROM usage x
     WHERE x.job_id = p_job_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'usage row of job % vanished', p_job_id;
    END IF;
    IF prior.owner <> c.uid OR prior.status = 'succeeded' THEN
        outcome := 'completed';
        RETURN NEXT;
        RETURN;
    END IF;
    IF prior.status = 'reserved' AND prior.reserved_at > p_live_after THEN
        outcome := 'in_progress';
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE usage x
       SET user_id = c.uid, api_key_id = c.key_id, voice = p_voice, model = p_model,
           text_chars = p_text_chars, estimated_ms = p_estimated_ms, status = v_status,
           reserved_at = p_now, error_code = v_error, duration_ms = NULL,
           billed_characters = NULL, trace_id = NULL, settled_at = NULL,
           attempts = x.attempts + 1
     WHERE x.id = prior.id
    RETURNING x.id, x.attempts INTO usage_id, attempt;
    outcome := v_status;
    RETURN NEXT;
END
$fn$
"""

# The user's new used_ms, or NULL when the row is not this attempt's open row (settled
# before, or taken over by a later attempt): then nothing is charged.
SETTLE = """
CREATE FUNCTION odeatts_settle(
    p_usage_id integer, p_attempt integer, p_user_id integer, p_duration_ms bigint,
    p_settled_at timestamptz, p_billed_characters integer, p_trace_id text,
    p_error_code text, p_abandoned_too boolean
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_used bigint;
BEGIN
    -- Lock order users -> usage, as in odeatts_reserve, so the two never deadlock.
    PERFORM 1 FROM users u WHERE u.id = p_user_id FOR UPDATE;
    UPDATE usage x
       SET status = 'succeeded', duration_ms = p_duration_ms, settled_at = p_settled_at,
           billed_characters = p_billed_characters, trace_id = p_trace_id,
           error_code = p_error_code
     WHERE x.id = p_usage_id AND x.attempts = p_attempt AND x.user_id = p_user_id
       AND (x.status = 'reserved'
            OR (p_abandoned_too AND x.status = 'failed' AND x.error_code = 'abandoned'));
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE users u SET used_ms = u.used_ms + p_duration_ms
     WHERE u.id = p_user_id
    RETURNING u.used_ms INTO v_used;
    RETURN v_used;
END
$fn$
"""

SIGNATURES = (
    "odeatts_reserve(text, text, text, text, integer, bigint, timestamptz, timestamptz)",
    "odeatts_settle(integer, integer, integer, bigint, timestamptz, integer, text, text, boolean)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(RESERVE)
    op.execute(SETTLE)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
