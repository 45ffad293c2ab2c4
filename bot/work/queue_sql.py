"""Every statement that touches procrastinate's tables and functions, by name, in one place.

procrastinate keeps its own SQL in one file of named queries; ours (deferring, positions,
cancelling, the orphan sweep, the doctor's and the benchmark's counts) lives here, so a
procrastinate upgrade that changes its schema is checked against one module. Migrations in
storage/migrations are the only other place that names procrastinate's tables.
"""

from __future__ import annotations

from sqlalchemy import text

# The user's jobs still waiting or running, and the lowest priority among the waiting ones.
RANK = text(
    "SELECT count(*), min(priority) FILTER (WHERE status = 'todo') FROM procrastinate_jobs "
    "WHERE lock = :lock AND status IN ('todo', 'doing')"
)

# Insert one job with procrastinate's own function (its trigger wakes the workers); its id.
DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, "
    "NULL, CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1]))"
)

# Send job events to the listening frontends (transactional: leaves when the caller commits).
NOTIFY = text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)

# Every pix2chat queue: `:queue` and the per-model ones named `:queue.<model>` (pgqueue.queue_for).
_OURS = "(queue_name = :queue OR starts_with(queue_name, :queue || '.'))"

# A version's live job ('todo' or 'doing') and how many waiting jobs its queue fetches first.
POSITION = text(
    "WITH mine AS ("
    "  SELECT id, priority, status, queue_name FROM procrastinate_jobs"
    f"  WHERE {_OURS} AND args @> CAST(:args AS jsonb)"
    "    AND status IN ('todo', 'doing')"
    "  ORDER BY id DESC LIMIT 1)"
    " SELECT mine.status, (SELECT count(*) FROM procrastinate_jobs other"
    "  WHERE other.queue_name = mine.queue_name AND other.status = 'todo'"
    "    AND (other.priority > mine.priority"
    "         OR (other.priority = mine.priority AND other.id < mine.id))) FROM mine"
)

# Cancel the waiting jobs of these versions (procrastinate's function, deleting them).
CANCEL = text(
    "SELECT procrastinate_cancel_job_v1(id, false, true) FROM procrastinate_jobs"
    f" WHERE {_OURS} AND status = 'todo'"
    "   AND (args->>'version_id')::bigint = ANY(CAST(:ids AS bigint[]))"
)

# Only one worker sweeps orphans at a time (the others skip that heartbeat): the cascade to
# dependants in `mark_failed` then never races another sweep.
SWEEP_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('pix2chat.orphan_sweep'))")

# Pending versions, quiet for the grace period, with no live job and no job that changed state
# within it (so a job deferred or finishing just now is never taken). The version rows are
# locked, skipping those a worker is claiming: `_claim` then finds them failed.
ORPHANS = text(
    "SELECT v.id FROM versions v"
    " WHERE v.status IN ('queued', 'running')"
    "   AND greatest(v.created_at, v.started_at) < now() - make_interval(secs => :grace)"
    "   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
    "     WHERE j.task_name = :task AND j.args->>'version_id' = v.id::text"
    "       AND (j.status IN ('todo', 'doing') OR EXISTS (SELECT 1 FROM procrastinate_events e"
    "         WHERE e.job_id = j.id AND e.at >= now() - make_interval(secs => :grace))))"
    " ORDER BY v.id LIMIT :limit FOR UPDATE OF v SKIP LOCKED"
)

# `pix2chat doctor`: jobs waiting, jobs running, workers alive, jobs of dead workers.
QUEUE_STATE = text(
    "SELECT"
    " (SELECT count(*) FROM procrastinate_jobs"
    f"   WHERE {_OURS} AND status = 'todo'),"
    " (SELECT count(*) FROM procrastinate_jobs"
    f"   WHERE {_OURS} AND status = 'doing'),"
    " (SELECT count(*) FROM procrastinate_workers"
    "   WHERE last_heartbeat >= now() - make_interval(secs => :timeout)),"
    " (SELECT count(*) FROM procrastinate_jobs job"
    "   LEFT JOIN procrastinate_workers worker ON worker.id = job.worker_id"
    "   WHERE (job.queue_name = :queue OR starts_with(job.queue_name, :queue || '.'))"
    "     AND job.status = 'doing'"
    "     AND (worker.id IS NULL"
    "          OR worker.last_heartbeat < now() - make_interval(secs => :timeout)))"
)

# `pix2chat bench queue`: workers whose heartbeat is younger than 10 seconds (plain SQL: the
# benchmark runs it through psycopg).
LIVE_WORKERS = (
    "SELECT count(*) FROM procrastinate_workers "
    "WHERE last_heartbeat > now() - interval '10 seconds'"
)

# `pix2chat bench queue`: fresh planner statistics on a backlog, as autovacuum keeps them.
ANALYZE_JOBS = text("ANALYZE procrastinate_jobs")
