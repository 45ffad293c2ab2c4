"""conversation_regions and version_regions: /keep and /only, and the masks edits used

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

`conversation_regions` holds the regions a conversation has set (at most one "keep" and one
"only", each the user's words); they apply to every following edit until cleared.
`version_regions` records, per edit, the region (kind, text) and the mask it was made with
(`mask_sha`: a binary PNG in the image store, indexed like the other image columns so that
/forget and the orphan clean-ups see it), so any result can be reproduced.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_regions",
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("conversation_id", "kind"),
    )
    op.create_table(
        "version_regions",
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("mask_sha", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version_id", "kind"),
    )
    op.create_index(
        op.f("ix_version_regions_mask_sha"), "version_regions", ["mask_sha"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_version_regions_mask_sha"), table_name="version_regions")
    op.drop_table("version_regions")
    op.drop_table("conversation_regions")
