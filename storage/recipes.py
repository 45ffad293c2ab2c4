"""Saved recipes and recipe runs in the database (inside the caller's transaction).

Recipes belong to a user on a platform (every chat of theirs sees them); a run belongs to the
conversation that applied it, and its step versions are ordinary versions of that
conversation's tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, RecipeRun, SavedRecipe, Version, utcnow
from storage.recipe_format import Recipe, recipe_from_dict


async def save(session: AsyncSession, platform: str, user_id: str, recipe: Recipe) -> bool:
    """Store a recipe under its name, replacing one of the same name; True if it replaced."""
    row = await session.scalar(
        select(SavedRecipe).where(
            SavedRecipe.platform == platform,
            SavedRecipe.user_id == user_id,
            SavedRecipe.name == recipe.name,
        )
    )
    if row is not None:
        row.document = recipe.to_dict()
        row.updated_at = utcnow()
        return True
    now = utcnow()
    session.add(
        SavedRecipe(
            platform=platform,
            user_id=user_id,
            name=recipe.name,
            document=recipe.to_dict(),
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    return False


async def get(session: AsyncSession, platform: str, user_id: str, name: str) -> Recipe | None:
    row = await session.scalar(
        select(SavedRecipe).where(
            SavedRecipe.platform == platform,
            SavedRecipe.user_id == user_id,
            SavedRecipe.name == name,
        )
    )
    return None if row is None else recipe_from_dict(row.document)


async def all_of(session: AsyncSession, platform: str, user_id: str) -> list[Recipe]:
    """A user's recipes by name."""
    rows = await session.scalars(
        select(SavedRecipe)
        .where(SavedRecipe.platform == platform, SavedRecipe.user_id == user_id)
        .order_by(SavedRecipe.name)
    )
    return [recipe_from_dict(row.document) for row in rows.all()]


async def delete_named(session: AsyncSession, platform: str, user_id: str, name: str) -> bool:
    result = await session.execute(
        delete(SavedRecipe).where(
            SavedRecipe.platform == platform,
            SavedRecipe.user_id == user_id,
            SavedRecipe.name == name,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def forget(session: AsyncSession, platform: str, user_id: str) -> int:
    """Delete a user's recipes and runs on a platform (with /forget); returns recipes deleted."""
    conversations = select(Conversation.id).where(
        Conversation.platform == platform, Conversation.user_id == user_id
    )
    await session.execute(delete(RecipeRun).where(RecipeRun.conversation_id.in_(conversations)))
    result = await session.execute(
        delete(SavedRecipe).where(SavedRecipe.platform == platform, SavedRecipe.user_id == user_id)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ----- runs ----------------------------------------------------------------------------------


async def add_run(
    session: AsyncSession, conversation: Conversation, name: str, items: list[dict[str, Any]]
) -> RecipeRun:
    run = RecipeRun(
        conversation_id=conversation.id,
        recipe_name=name,
        items={"photos": items},
        created_at=utcnow(),
    )
    session.add(run)
    await session.flush()
    return run


async def unfinished_runs(session: AsyncSession) -> Sequence[tuple[RecipeRun, Conversation]]:
    """Runs whose results were not published yet, with their conversations."""
    rows = await session.execute(
        select(RecipeRun, Conversation)
        .join(Conversation, Conversation.id == RecipeRun.conversation_id)
        .where(RecipeRun.finished_at.is_(None))
        .order_by(RecipeRun.id)
    )
    return [(run, conversation) for run, conversation in rows.all()]


async def finish_run(session: AsyncSession, run_id: int) -> bool:
    """Mark a run's results published; False if it was already (another process did)."""
    run = await session.get(RecipeRun, run_id, with_for_update=True)
    if run is None or run.finished_at is not None:
        return False
    run.finished_at = utcnow()
    return True


async def versions(session: AsyncSession, version_ids: Sequence[int]) -> dict[int, Version]:
    rows = await session.scalars(select(Version).where(Version.id.in_(version_ids)))
    return {version.id: version for version in rows.all()}
