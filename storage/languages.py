"""Per-user languages, persisted: what /language chose and what the platform last reported."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import UserLanguage, utcnow


@dataclass(frozen=True, slots=True)
class StoredLanguage:
    """`chosen` wins; `detected` is the app's language when the user last wrote."""

    chosen: str | None = None
    detected: str | None = None


async def get(session: AsyncSession, platform: str, user_id: str) -> StoredLanguage:
    row = await session.scalar(
        select(UserLanguage).where(
            UserLanguage.platform == platform, UserLanguage.user_id == user_id
        )
    )
    return StoredLanguage() if row is None else StoredLanguage(row.chosen, row.detected)


async def save(session: AsyncSession, platform: str, user_id: str, stored: StoredLanguage) -> None:
    """Insert or replace the user's row (concurrent writers: the last one wins)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    values = {"chosen": stored.chosen, "detected": stored.detected, "updated_at": utcnow()}
    await session.execute(
        insert(UserLanguage)
        .values(platform=platform, user_id=user_id, **values)
        .on_conflict_do_update(index_elements=["platform", "user_id"], set_=values)
    )
