"""Per-user languages in storage: one row per (platform, user), replaced in place, on both
backends; migration 0008 adds and removes the table."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command

from storage import languages
from storage.database import Database
from storage.languages import StoredLanguage
from storage.migrate import alembic_config, current, upgrade


async def test_save_and_get_per_platform_and_user(database: Database) -> None:
    async with database.read() as session:
        assert await languages.get(session, "telegram", "1") == StoredLanguage()
    async with database.write() as session:
        await languages.save(session, "telegram", "1", StoredLanguage(None, "ar"))
    async with database.write() as session:  # an upsert: the row is replaced
        await languages.save(session, "telegram", "1", StoredLanguage("es", "ar"))
        await languages.save(session, "discord", "1", StoredLanguage(None, "es"))
    async with database.read() as session:
        assert await languages.get(session, "telegram", "1") == StoredLanguage("es", "ar")
        assert await languages.get(session, "discord", "1") == StoredLanguage(None, "es")
        assert await languages.get(session, "telegram", "2") == StoredLanguage()


def test_migration_0008_adds_and_removes_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0004")
    engine = sqlalchemy.create_engine(url)
    assert "user_languages" not in sqlalchemy.inspect(engine).get_table_names()
    upgrade(url, "0008")
    assert current(url) == "0008"
    columns = {c["name"]: c for c in sqlalchemy.inspect(engine).get_columns("user_languages")}
    assert set(columns) == {"platform", "user_id", "chosen", "detected", "updated_at"}
    assert columns["chosen"]["nullable"] and columns["detected"]["nullable"]

    command.downgrade(alembic_config(url), "0004")
    assert "user_languages" not in sqlalchemy.inspect(engine).get_table_names()
