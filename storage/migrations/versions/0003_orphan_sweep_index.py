"""index procrastinate's edit jobs by version, for the workers' orphan sweep

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

GPU workers periodically look for pending versions whose edit job is gone or finished (see
bot/work/worker.py `fail_orphans`): one anti-join of the few pending versions against the job
table, by `args->>'version_id'`. This partial expression index keeps each probe an index
lookup however many finished jobs the table holds. PostgreSQL only (no job queue elsewhere).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JOBS_BY_VERSION = (
    "CREATE INDEX pix2chat_procrastinate_jobs_version ON procrastinate_jobs "
    "((args->>'version_id')) WHERE task_name = 'pix2chat.edit'"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(JOBS_BY_VERSION)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP INDEX IF EXISTS pix2chat_procrastinate_jobs_version")
