"""Start-ups as an operator meets them, with real processes on a private PostgreSQL server.

Every process migrates on start, so processes started together race for the schema; a worker
started before its database must wait for it; a database from another pix2chat version must be
refused in one line. Each case runs real `pix2chat` processes (workers with the null editor, the
web chat with PIX2CHAT_WORKER=remote, `pix2chat migrate`) against a fresh database of the
private server, which these tests may stop and start.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from bot.service.replies import Reply
from bot.work.remote import RemoteJobQueue
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.migrate import head
from storage.types import Actor
from tests.fixtures_pgserver import PrivateServer
from tests.scaleout.harness import REPO_ROOT, Frontend, WorkerPool, frontend

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 45.0
WEB_READY = re.compile(r"Web chat: serving on (\S+)")


class CliProcess:
    """One `pix2chat ...` process; stdout and stderr collected together, line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=REPO_ROOT,  # `python -m` puts it first on sys.path: this checkout's code runs
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout_s: float = READY_TIMEOUT_S) -> int:
        code = self.process.wait(timeout=timeout_s)
        time.sleep(0.1)  # the reader thread takes the last lines
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(private_postgres: PrivateServer) -> Iterator[PrivateServer]:
    """The private server, running again after the test whatever it did to it."""
    if not private_postgres.running:
        private_postgres.start()
    yield private_postgres
    if not private_postgres.running:
        private_postgres.start()


@pytest.fixture
def pool(server: PrivateServer, tiny_model_dir: Path, tmp_path: Path) -> Iterator[WorkerPool]:
    """Environments for processes on a fresh database of the private server."""
    url = server.create_database(f"startup_{uuid.uuid4().hex[:10]}")
    workers = WorkerPool(url, tiny_model_dir, tmp_path)
    yield workers
    workers.stop_all()


@pytest.fixture
def processes() -> Iterator[list[CliProcess]]:
    started: list[CliProcess] = []
    yield started
    for process in started:
        process.stop()


def _registered(pool: WorkerPool) -> int:
    """Workers with a fresh heartbeat; 0 while the queue's tables are not there yet."""
    try:
        return pool.registered()
    except psycopg.Error:
        return 0


def _env(pool: WorkerPool, **extra: str) -> dict[str, str]:
    env = pool.env()
    env.update({f"PIX2CHAT_{k.upper()}": v for k, v in extra.items()})
    return env


async def _until(condition: Callable[[], object], what: str, processes: list[CliProcess]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await asyncio.to_thread(condition):
        for process in processes:
            assert "Traceback" not in process.output(), process.output()
        assert time.monotonic() < deadline, f"{what}:\n" + "\n---\n".join(
            p.output()[-3000:] for p in processes
        )
        await asyncio.sleep(0.2)


@asynccontextmanager
async def _chat(url: str, sent: list[tuple[Actor, Reply]]) -> AsyncIterator[Frontend]:
    """The frontend side in this process (a RemoteJobQueue), to send an edit through."""
    images = DatabaseImageStore(url)
    try:
        async with (
            Database(url) as database,
            RemoteJobQueue(database) as queue,
            frontend(database, images, queue, sent) as chat,
        ):
            yield chat
    finally:
        images.close()


async def _one_edit_goes_through(url: str) -> None:
    sent: list[tuple[Actor, Reply]] = []
    async with _chat(url, sent) as chat:
        await chat.upload("ann")
        version = await chat.instruct("ann", "make it night")
        await chat.delivery.until(lambda: len(sent) >= 1, READY_TIMEOUT_S)
    assert [(reply.version_id, reply.key) for _, reply in sent] == [(version, "edit.done")]


async def test_four_processes_started_at_once_on_a_fresh_database_all_come_up(
    pool: WorkerPool, processes: list[CliProcess]
) -> None:
    started = time.monotonic()
    processes += [
        CliProcess(["worker", "--null-editor"], _env(pool)),
        CliProcess(["worker", "--null-editor"], _env(pool)),
        CliProcess(["web"], _env(pool, worker="remote", web_port="0")),
        CliProcess(["migrate"], _env(pool)),
    ]
    workers, web, migrate = processes[:2], processes[2], processes[3]

    assert await asyncio.to_thread(migrate.wait) == 0, migrate.output()
    assert f"Database is at revision {head()}." in migrate.output()
    await _until(lambda: _registered(pool) == 2, "the workers did not come up", processes)
    await _until(lambda: WEB_READY.search(web.output()), "the web chat did not come up", processes)
    elapsed = time.monotonic() - started
    for process in (*workers, web):
        assert process.process.poll() is None, process.output()
    await _one_edit_goes_through(pool.url)
    print(f"4 processes at once on a fresh database: all up in {elapsed:.1f} s")


async def test_a_worker_started_before_the_database_waits_then_serves(
    pool: WorkerPool, server: PrivateServer, processes: list[CliProcess]
) -> None:
    server.stop()
    worker = CliProcess(["worker", "--null-editor"], _env(pool, database_wait_s="60"))
    processes.append(worker)
    waiting = f"Cannot reach the database at 127.0.0.1:{server.port} (connection refused); "
    waiting += "retrying for up to 60 s"
    await _until(lambda: waiting in worker.output(), "no waiting line", processes)
    await asyncio.sleep(3)  # several retries later: still waiting, still one line
    assert worker.process.poll() is None, worker.output()
    assert worker.output().count("Cannot reach the database") == 1, worker.output()

    started = time.monotonic()
    server.start()
    await _until(lambda: _registered(pool) == 1, "the worker did not come up", processes)
    print(f"worker up {time.monotonic() - started:.1f} s after the database started")
    await _one_edit_goes_through(pool.url)


def test_migrate_against_a_stopped_database_gives_up_in_one_line(
    pool: WorkerPool, server: PrivateServer
) -> None:
    server.stop()
    migrate = CliProcess(["migrate"], _env(pool, database_wait_s="2"))
    code = migrate.wait()
    elapsed = time.monotonic() - migrate.started_at
    where = f"127.0.0.1:{server.port}"
    assert code == 3, migrate.output()
    assert migrate.lines == [
        f"Cannot reach the database at {where} (connection refused); retrying for up to 2 s",
        f"Cannot reach the database at {where} (connection refused); gave up after 2 s",
    ]
    assert 2 <= elapsed < 15


@pytest.mark.parametrize(
    "args",
    [["worker", "--null-editor"], ["web"], ["migrate"]],
    ids=["worker", "web", "migrate"],
)
def test_a_database_from_a_newer_pix2chat_is_refused_in_one_line(
    pool: WorkerPool, args: list[str]
) -> None:
    process = CliProcess(["migrate"], _env(pool))
    assert process.wait() == 0, process.output()
    with psycopg.connect(pool.url) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    process = CliProcess(args, _env(pool, worker="remote", web_port="0"))
    assert process.wait() == 4, process.output()
    line = (
        f"The database schema is at revision 9999, newer than this pix2chat knows ({head()}): "
        "upgrade pix2chat, or run the version that migrated it"
    )
    assert process.lines[-1] == line, process.output()
    assert "Traceback" not in process.output()
    with psycopg.connect(pool.url) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("9999",)
        ]
