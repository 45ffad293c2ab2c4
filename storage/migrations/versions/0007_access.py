"""access_rules: the allow-list, bans and per-user quota overrides

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02

One row per user, Telegram group chat or Discord server an admin decided about (`/allow`,
`/deny`, `/ban`, `/unban`, `/quota`), shared by every process through the database; and
indexes on `versions.created_at` and `versions.finished_at`, so `/stats` reads one day of
versions rather than the whole history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_rules",
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("banned", sa.Boolean(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "scope", "subject_id"),
    )
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.create_index("ix_versions_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_versions_finished_at", ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index("ix_versions_finished_at")
        batch_op.drop_index("ix_versions_created_at")
    op.drop_table("access_rules")
