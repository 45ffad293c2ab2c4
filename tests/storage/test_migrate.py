"""Schema upgrades from many processes at once, and a database from another pix2chat version.

Every process migrates on start, and they start together: the upgrade must be serialized (an
advisory lock on PostgreSQL, a file lock on SQLite), a current schema must cost no lock, and a
revision this code does not know must be refused in one line.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from storage import migrate
from storage.migrate import ADVISORY_LOCK_KEY, SchemaTooNew, current, head, upgrade
from tests.fixtures_db import ADMIN_URL, _admin_dsn

N_AT_ONCE = 4
DEADLINE_S = 60


def _all_at_once(target: Callable[[], None], count: int = N_AT_ONCE) -> list[BaseException]:
    """Run `target` in `count` threads released together; the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            target()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_S  # unserialized upgrades can deadlock: fail, not hang
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "upgrades still running"
    return errors


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty database on the shared server (created here, dropped afterwards)."""
    name = f"pix2chat_migrate_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(_admin_dsn(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server at {ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_current_schema_is_left_alone_without_taking_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)

    def refuse(*_args: object) -> None:
        raise AssertionError("locked although the schema is current")

    monkeypatch.setattr(migrate, "_file_lock", refuse)
    upgrade(url)
    assert current(url) == head()


def test_processes_upgrading_a_fresh_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=upgrade, args=(url,)) for _ in range(N_AT_ONCE)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + DEADLINE_S
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in processes] == [0] * N_AT_ONCE
    assert current(url) == head()
    assert (tmp_path / "db.sqlite.migrate.lock").exists()


def test_upgrades_of_a_fresh_postgresql_database_at_once_all_succeed(fresh_postgres: str) -> None:
    assert _all_at_once(lambda: upgrade(fresh_postgres)) == []
    assert current(fresh_postgres) == head()
    with psycopg.connect(fresh_postgres) as connection:
        jobs = connection.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()
        assert jobs == (0,)
        held = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).fetchone()
        assert held == (0,)  # released by every process


def test_an_upgrade_waits_for_the_advisory_lock(fresh_postgres: str) -> None:
    """Someone else migrating: the upgrade waits, then finds the work done or does it."""
    with psycopg.connect(fresh_postgres, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        done = threading.Event()

        def migrate_then_say_so() -> None:
            upgrade(fresh_postgres)
            done.set()

        waiter = threading.Thread(target=migrate_then_say_so, daemon=True)
        waiter.start()
        assert not done.wait(1.0)
        holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        waiter.join(timeout=60)
    assert done.is_set()
    assert current(fresh_postgres) == head()


def test_an_older_schema_is_upgraded_by_processes_at_once(fresh_postgres: str) -> None:
    upgrade(fresh_postgres, "0001")
    assert _all_at_once(lambda: upgrade(fresh_postgres)) == []
    assert current(fresh_postgres) == head()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_revision_this_code_does_not_know_is_refused_in_one_line(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        upgrade(url)
        with sqlite3.connect(tmp_path / "db.sqlite") as connection:
            connection.execute("UPDATE alembic_version SET version_num = '9999'")
    else:
        url = str(request.getfixturevalue("fresh_postgres"))
        upgrade(url)
        with psycopg.connect(url) as connection:
            connection.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNew) as raised:
        upgrade(url)
    assert str(raised.value) == (
        f"The database schema is at revision 9999, newer than this pix2chat knows ({head()}): "
        "upgrade pix2chat, or run the version that migrated it"
    )
    assert current(url) == "9999"  # left as it was


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0004_adds_the_raw_output_column_and_keeps_existing_versions(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = str(request.getfixturevalue("fresh_postgres"))
    upgrade(url, "0003")
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO conversations (id, platform, chat_id, user_id, settings, "
                    "created_at) VALUES (1, 't', 'c', 'u', '{}', :now)"
                ),
                {"now": "2026-12-01 00:00:00+00:00"},
            )
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO versions (id, conversation_id, status, image_sha, width, height, "
                    "attempts, delivered, created_at) "
                    "VALUES (1, 1, 'done', 'a', 64, 48, 0, false, :now)"
                ),
                {"now": "2026-12-01 00:00:00+00:00"},
            )
        upgrade(url)
        assert current(url) == head()
        inspector = sqlalchemy.inspect(engine)
        column = next(c for c in inspector.get_columns("versions") if c["name"] == "raw_image_sha")
        assert column["nullable"]
        indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("versions")}
        assert ("raw_image_sha",) in indexed
        with engine.begin() as connection:
            row = connection.execute(
                sqlalchemy.text("SELECT image_sha, raw_image_sha FROM versions WHERE id = 1")
            ).one()
        assert tuple(row) == ("a", None)
    finally:
        engine.dispose()


def test_0011_adds_recipes_and_runs_and_goes_back(tmp_path: Path) -> None:
    from alembic import command

    from storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = sqlalchemy.create_engine(url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        assert {"recipes", "recipe_runs"} <= tables
        command.downgrade(alembic_config(url), "0004")
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        assert not {"recipes", "recipe_runs"} & tables
    finally:
        engine.dispose()
