"""user_languages: the language each user reads (chosen with /language, or detected)

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-02

One row per (platform, user), shared by every chat of that platform: `chosen` is set by
/language (None follows the app), `detected` is the last language the platform reported, so
results that finish later (even after a restart) are worded in the user's language.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_languages",
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("chosen", sa.String(length=16), nullable=True),
        sa.Column("detected", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("user_languages")
