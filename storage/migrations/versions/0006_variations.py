"""versions: candidate sets (variations, best-of-N), their scores and picks, and origins

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

Variations and best-of-N make several candidates of one instruction on one parent. They are
ordinary versions (siblings in the tree) that share `set_id` (the first candidate's id) and
carry their place `set_index`, the scorer's `score` and whether the user `picked` one. All of it
lives in the database, so "Use 3" on a message still works after a restart. `origin` records how
an edit was asked for (variations, best_of, stronger, subtler) so captions can say so.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("set_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("set_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("picked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index("ix_versions_set", ["set_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index("ix_versions_set")
        batch_op.drop_column("picked")
        batch_op.drop_column("score")
        batch_op.drop_column("set_index")
        batch_op.drop_column("set_id")
        batch_op.drop_column("origin")
