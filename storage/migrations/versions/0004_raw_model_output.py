"""versions.raw_image_sha: the model's own output, kept beside the developed image

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Edits are developed onto their full-resolution parent (editor/develop.py): `image_sha` is the
developed picture, at the parent's size. The raw model output at the working resolution is
kept too, for evaluation and debugging; it is an image like any other, so forgetting a user
and the orphan clean-ups must see it (indexed, as `image_sha` is). Nullable: photos, edits
made with PIX2CHAT_DEVELOP=off and edits made before this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_image_sha", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_versions_raw_image_sha"), ["raw_image_sha"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_versions_raw_image_sha"))
        batch_op.drop_column("raw_image_sha")
