"""Alembic, configured in code so no alembic.ini has to be found at run time.

Every process migrates on start, and processes are started together (a frontend and its
workers, `--scale worker=4`, a rollout), so upgrades are serialized: on PostgreSQL by a
session-level advisory lock held on the very connection Alembic migrates with (procrastinate's
schema is installed by a revision, so inside the same lock), on SQLite by a file lock next to
the database. A process that finds the schema current goes on without taking the lock; one
that waited re-reads the revision once it holds it and finds the work done. A database at a
revision this code does not know (migrated by a newer pix2chat) is refused in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text

from storage.database import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_lock key: any fixed bigint shared by every pix2chat process ("p2cmigr" in ASCII).
ADVISORY_LOCK_KEY = 0x7032636D69677200


class SchemaMismatch(Exception):
    """The database's schema and this code disagree; the message says what to run."""


class SchemaTooNew(SchemaMismatch):
    """The database was migrated by a newer pix2chat than this one."""


class SchemaTooOld(SchemaMismatch):
    """The database needs `pix2chat migrate` and this process was told not to run it."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", sync_url(url).render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head() -> str:
    """The newest revision this code knows."""
    revision = _script().get_current_head()
    assert revision is not None
    return revision


def is_current(revision: str | None) -> bool:
    """True at head; False when older (or never migrated); SchemaTooNew when unknown."""
    code_head = head()
    if revision == code_head:
        return True
    if revision is not None and revision not in {s.revision for s in _script().walk_revisions()}:
        raise SchemaTooNew(
            f"The database schema is at revision {revision}, newer than this pix2chat knows "
            f"({code_head}): upgrade pix2chat, or run the version that migrated it"
        )
    return False


def too_old_message(revision: str | None) -> str:
    state = f"at revision {revision}" if revision else "not created yet"
    return f"The database schema is {state}, this pix2chat needs {head()}: run `pix2chat migrate`"


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`, one process at a time; creates the SQLite folder.

    Returns at once, without locking, when the database is already at the code's head.

    Raises:
        SchemaTooNew: the database is at a revision this code does not know.
    """
    parsed = sync_url(url)
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    )
    if sqlite_file:
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if revision == "head" and is_current(current(url)):
        return
    engine = create_engine(parsed, poolclass=pool.NullPool)
    try:
        with contextlib.ExitStack() as stack:
            if sqlite_file:
                assert parsed.database is not None
                stack.enter_context(_file_lock(Path(parsed.database + ".migrate.lock")))
            connection = stack.enter_context(engine.connect())
            if parsed.get_backend_name() == "postgresql":
                stack.enter_context(_advisory_lock(connection))
            is_current(MigrationContext.configure(connection).get_current_revision())
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    """Hold the migration lock for this session; committed so Alembic starts a clean
    transaction on the same connection (a session-level lock outlives transactions)."""
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lost connection has released it already
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current(url: str) -> str | None:
    """The revision the database is at (None if never migrated)."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
