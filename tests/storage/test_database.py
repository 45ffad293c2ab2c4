"""Which storage errors are a passing outage (retry later, tell the user so) and which are bugs,
checked on the errors the drivers really raise: a SQLite file locked by another connection,
a PostgreSQL server that is not there, a full disk."""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
from sqlalchemy import exc, text

import storage.database
from storage.database import Database, Outage, brief, outage
from tests.fixtures_pgserver import PrivateServer


async def test_a_sqlite_file_locked_by_another_connection_is_unavailable(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        async with Database(sqlite_url) as database:
            with pytest.raises(exc.OperationalError) as raised:
                async with database.write() as session:
                    await session.execute(text("DELETE FROM user_limits"))
    finally:
        holder.rollback()
        holder.close()
    assert "locked" in str(raised.value)
    assert outage(raised.value) is Outage.UNAVAILABLE


async def test_an_unreachable_postgres_server_is_unavailable(
    private_postgres: PrivateServer,
) -> None:
    url = private_postgres.create_database("classify_unreachable")
    async with Database(url) as database:
        async with database.read() as session:
            await session.execute(text("SELECT 1"))  # a pooled connection, dropped next
        private_postgres.stop()
        try:
            with pytest.raises(exc.OperationalError) as raised:
                async with database.read() as session:
                    await session.execute(text("SELECT 1"))
        finally:
            private_postgres.start()
        async with database.read() as session:  # the pool hands out no broken connection
            assert await session.scalar(text("SELECT 1")) == 1
    assert outage(raised.value) is Outage.UNAVAILABLE
    assert "\n" not in brief(raised.value)


def test_a_full_disk_is_full() -> None:
    assert outage(OSError(errno.ENOSPC, "No space left on device")) is Outage.FULL
    full = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert outage(full) is Outage.FULL


def test_errors_wrapped_by_procrastinate_are_recognised_by_their_cause() -> None:
    wrapper = RuntimeError("connector failed")
    wrapper.__cause__ = psycopg.OperationalError("connection refused")
    assert outage(wrapper) is Outage.UNAVAILABLE


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        OSError(errno.EACCES, "Permission denied"),
        exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: versions")),
        exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
    ],
)
def test_other_errors_are_no_outage(error: Exception) -> None:
    assert outage(error) is None
