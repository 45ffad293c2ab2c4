"""recipes and recipe_runs: saved chains of edits, and their applications to photo batches

Revision ID: 0011
Revises: 0004
Create Date: 2026-12-02

A recipe is a user's named list of steps (a JSON document, validated by
storage/recipe_format.py) on one platform. A run records which photos of a batch became
which roots and step versions, so the batch's progress and grouped results survive a restart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recipes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "user_id", "name", name="uq_recipe_name"),
    )
    op.create_table(
        "recipe_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("conversation_id", _ID, nullable=False),
        sa.Column("recipe_name", sa.String(length=64), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recipe_runs_conversation_id", "recipe_runs", ["conversation_id"])
    op.create_index("ix_recipe_runs_finished_at", "recipe_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_recipe_runs_finished_at", table_name="recipe_runs")
    op.drop_index("ix_recipe_runs_conversation_id", table_name="recipe_runs")
    op.drop_table("recipe_runs")
    op.drop_table("recipes")
