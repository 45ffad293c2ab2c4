"""PostgreSQL queue fixtures: an emptied database, a database image store, and helpers.

Shared by the tests of the GPU worker, the remote queue, the queue SQL and `pix2chat doctor`:
edits are recorded and deferred the way the conversation service does, and a `GpuWorker` runs in
the test process (with the NullEditor), so each rule is checked in a second or two;
tests/scaleout/test_deployments.py runs the same code as real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from bot.work import pgqueue
from bot.work.jobs import Job, JobDone, JobEvent, JobFailed
from bot.work.worker import GpuWorker, WorkerOptions
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage import tree
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.models import Version
from tests.scaleout.harness import PARAMS, actor, photo

TIMEOUT_S = 20.0

FAST = WorkerOptions(
    concurrency=4,
    max_wait_ms=0,
    heartbeat_s=0.5,
    stalled_timeout_s=2.0,
    shutdown_timeout_s=5.0,
    poll_interval_s=0.5,
)


class Events:
    """What a frontend's RemoteJobQueue hears (subscribe an instance to it)."""

    def __init__(self) -> None:
        self.seen: list[JobEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: JobEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    def outcomes(self, version_id: int) -> list[JobEvent]:
        return [
            e
            for e in self.seen
            if e.version_id == version_id and isinstance(e, JobDone | JobFailed)
        ]

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    """The session's PostgreSQL database, emptied, job queue included."""
    async with Database(postgres_url) as database:
        async with database.write() as session:
            await session.execute(
                text(
                    "TRUNCATE versions, conversations, user_limits, images, procrastinate_jobs "
                    "RESTART IDENTITY CASCADE"
                )
            )
        yield database


@pytest.fixture
def images(postgres_url: str) -> Iterator[DatabaseImageStore]:
    store = DatabaseImageStore(postgres_url)
    yield store
    store.close()


async def add_photo(database: Database, images: DatabaseImageStore, user: str) -> Version:
    sha = images.put(photo(user))
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor(user))
        return await tree.add_root(session, conversation, sha, (64, 48))


async def add_edit(
    database: Database, user: str, instruction: str, *, params: EditParams = PARAMS
) -> int:
    """Record a queued edit on the user's newest version and defer its job, in one transaction."""
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor(user))
        parent = await tree.latest_pending(session, conversation) or await tree.head(
            session, conversation
        )
        assert parent is not None
        version = await tree.add_edit(session, conversation, parent, instruction, params)
        size = (parent.width, parent.height) if parent.width and parent.height else None
        job = Job(version.id, f"telegram:{user}", parent.id, size, instruction, params)
        await pgqueue.defer_in(session, job)
        return version.id


async def jobs(database: Database) -> list[tuple[str, str, int, dict[str, int]]]:
    async with database.read() as session:
        rows = await session.execute(
            text("SELECT status, lock, priority, args FROM procrastinate_jobs ORDER BY id")
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


@asynccontextmanager
async def running_worker(
    database: Database, images: DatabaseImageStore, editor: NullEditor, **options: object
) -> AsyncIterator[GpuWorker]:
    """A GpuWorker in this process, until the block ends (then stopped like on SIGTERM)."""
    segmenter = options.pop("segmenter", None)
    options_ = dataclasses.replace(FAST, **options)  # type: ignore[arg-type]
    worker = GpuWorker(database, images, editor, options_, segmenter=segmenter)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
