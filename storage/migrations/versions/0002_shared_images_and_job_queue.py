"""shared image table; procrastinate's job queue schema on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Scaled out, every process (frontends, GPU workers on other hosts) must read every image, so
images can live in the database (`images`, on every backend so the schema is the same
everywhere). On PostgreSQL this revision also installs procrastinate's schema (tables,
functions, triggers) at the version pinned in pyproject.toml: the queue is part of the
database, migrated with it, and a fresh PostgreSQL database is ready for `pix2chat worker`.
A later procrastinate release that changes its schema gets its own revision here that runs
procrastinate's migration files for that step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# procrastinate wakes its workers when a job is inserted, not when a lock is released: the next
# edit of a user whose edit just finished would wait for the next poll. This trigger sends the
# same wake-up when a locked job leaves "doing" (finished, deleted or handed back for a retry).
LOCK_RELEASED_FUNCTION = """
CREATE FUNCTION pix2chat_notify_lock_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'procrastinate_queue_v1#' || OLD.queue_name,
        json_build_object('type', 'job_inserted', 'job_id', OLD.id)::text
    );
    RETURN NULL;
END;
$$
"""
LOCK_RELEASED_TRIGGERS = (
    "CREATE TRIGGER pix2chat_lock_released_on_update AFTER UPDATE OF status "
    "ON procrastinate_jobs FOR EACH ROW "
    "WHEN (OLD.status = 'doing' AND NEW.status <> 'doing' AND OLD.lock IS NOT NULL) "
    "EXECUTE PROCEDURE pix2chat_notify_lock_released()",
    "CREATE TRIGGER pix2chat_lock_released_on_delete AFTER DELETE "
    "ON procrastinate_jobs FOR EACH ROW "
    "WHEN (OLD.status = 'doing' AND OLD.lock IS NOT NULL) "
    "EXECUTE PROCEDURE pix2chat_notify_lock_released()",
)

# The queue table churns fast: keep its planner statistics fresh, and give the per-user lock
# checks (procrastinate's fetch and our priority rule) an index that starts with the lock.
# Without both, a burst of a few thousand jobs on a table with stale statistics turns each
# fetch into a sort of the whole backlog.
QUEUE_TUNING = (
    "CREATE INDEX pix2chat_procrastinate_jobs_lock ON procrastinate_jobs (lock, status) "
    "WHERE status IN ('todo', 'doing')",
    "ALTER TABLE procrastinate_jobs SET (autovacuum_analyze_scale_factor = 0.02, "
    "autovacuum_analyze_threshold = 200, autovacuum_vacuum_scale_factor = 0.05)",
)

PROCRASTINATE_OBJECTS = (
    "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
    "procrastinate_jobs, procrastinate_workers CASCADE",
    "DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type, "
    "procrastinate_job_status CASCADE",
)


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar()
    if exists is None:  # a database shared with another procrastinate user keeps its schema
        from procrastinate.schema import SchemaManager

        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))
    bind.exec_driver_sql(LOCK_RELEASED_FUNCTION)
    for statement in (*LOCK_RELEASED_TRIGGERS, *QUEUE_TUNING):
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP INDEX IF EXISTS pix2chat_procrastinate_jobs_lock")
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS pix2chat_notify_lock_released() CASCADE")
        for statement in PROCRASTINATE_OBJECTS:
            bind.exec_driver_sql(statement)
        bind.exec_driver_sql(
            "DROP FUNCTION IF EXISTS "
            + ", ".join(
                (
                    "procrastinate_defer_jobs_v1",
                    "procrastinate_defer_periodic_job_v2",
                    "procrastinate_fetch_job_v2",
                    "procrastinate_finish_job_v1",
                    "procrastinate_cancel_job_v1",
                    "procrastinate_retry_job_v1",
                    "procrastinate_retry_job_v2",
                    "procrastinate_notify_queue_job_inserted_v1",
                    "procrastinate_notify_queue_abort_job_v1",
                    "procrastinate_trigger_function_status_events_insert_v1",
                    "procrastinate_trigger_function_status_events_update_v1",
                    "procrastinate_trigger_function_scheduled_events_v1",
                    "procrastinate_trigger_abort_requested_events_procedure_v1",
                    "procrastinate_unlink_periodic_defers_v1",
                    "procrastinate_register_worker_v1",
                    "procrastinate_unregister_worker_v1",
                    "procrastinate_update_heartbeat_v1",
                    "procrastinate_prune_stalled_workers_v1",
                )
            )
            + " CASCADE"
        )
    op.drop_table("images")
