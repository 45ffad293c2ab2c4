"""Engines and transactions for SQLite (embedded) and PostgreSQL (scaled out), a URL apart."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000


class Outage(enum.StrEnum):
    """Why storage cannot take a write right now; both pass, neither is the caller's fault."""

    UNAVAILABLE = "unavailable"
    """The database is unreachable (PostgreSQL restarting, failing over) or locked (SQLite)."""
    FULL = "full"
    """The disk is full (SQLite's file, or an image file)."""


def outage(error: BaseException) -> Outage | None:
    """What kind of passing storage outage an error is, or None for a real bug.

    A transaction that failed this way was rolled back whole, so the caller may retry later.
    """
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return Outage.FULL
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(cause, sqlite3.OperationalError):
        text = str(cause).lower()
        if "disk is full" in text:
            return Outage.FULL
        return Outage.UNAVAILABLE if "locked" in text or "busy" in text else None
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return Outage.UNAVAILABLE
    if isinstance(error, exc.InterfaceError | exc.TimeoutError | exc.DisconnectionError):
        return Outage.UNAVAILABLE
    # psycopg is optional (PostgreSQL only): its connection errors, by name
    for kind in type(cause).__mro__:
        if kind.__module__.startswith("psycopg") and kind.__name__ in _PSYCOPG_OUTAGES:
            return Outage.UNAVAILABLE
    if error.__cause__ is not None:  # wrapped, as procrastinate's ConnectorException does
        return outage(error.__cause__)
    return None


def brief(error: BaseException) -> str:
    """An error's first line: driver errors span several (hints, links), a log line wants one."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


_PSYCOPG_OUTAGES = frozenset({"OperationalError", "InterfaceError", "PoolTimeout"})


def async_url(url: str) -> URL:
    """Pick the asyncio driver for a plain URL (sqlite:///x.db, postgresql://...)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite or postgresql"
    )


def sync_url(url: str) -> URL:
    """The blocking twin of `async_url`, for Alembic."""
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    return parsed


def _sqlite_engine(url: URL, immediate: bool) -> AsyncEngine:
    """A SQLite engine with WAL, a busy timeout, foreign keys and explicit BEGINs.

    pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN is what runs;
    the writer engine begins IMMEDIATE, so two writers queue on the lock instead of failing
    halfway with "database is locked" when one upgrades from reader to writer.
    """
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """Owns the engines; hands out short read and write transactions.

    Usage: `async with Database(url) as db: async with db.write() as session: ...`.
    Keep transactions short: never await model work or network I/O inside one.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = async_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self._reader = _sqlite_engine(parsed, immediate=False)
            self._writer = _sqlite_engine(parsed, immediate=True)
        else:
            self._reader = self._writer = create_async_engine(parsed, pool_pre_ping=True)
        self._write_lock: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._writer, expire_on_commit=False)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._reader.dispose()
        if self._writer is not self._reader:
            await self._writer.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read transaction; objects stay usable after it ends (no expiry on commit)."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on success and rolled back on any exception.

        On SQLite, writers of this process also queue on an asyncio lock: SQLite lets one
        writer in at a time anyway, and its busy handler waits by sleeping in growing steps,
        so without the lock a burst of writers spends its time asleep.
        """
        async with self._write_lock, self._write_sessions() as session, session.begin():
            yield session

    @property
    def engine(self) -> AsyncEngine:
        return self._writer
