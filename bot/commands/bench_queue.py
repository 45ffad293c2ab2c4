"""`pix2chat bench queue`: the procrastinate queue with the null editor, as real processes.

Figures: jobs/s through 1, 2, 4... `pix2chat worker` processes; enqueue-to-start latency on
an idle queue (LISTEN/NOTIFY wake-up); time to recover an edit after SIGKILL of its worker.
Runs on a throw-away database created next to the one `--admin-url` names.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work import pgqueue, queue_sql
from bot.work.jobs import Job
from editor.params import EditParams
from storage import tree
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.migrate import upgrade
from storage.models import Conversation, Version, VersionStatus
from storage.types import Actor

Echo = Callable[[str], None]
PARAMS = EditParams(num_inference_steps=1, resolution=64)
STARTED = re.compile(r"edit\(s\) \[([\d, ]+)\] started")


class _Worker:
    """A `pix2chat worker --null-editor` process whose log is read as it comes."""

    def __init__(self, env: dict[str, str], step_delay_ms: int = 0) -> None:
        command = [sys.executable, "-m", "bot.cli", "worker", "--null-editor"]
        if step_delay_ms:
            command += ["--step-delay-ms", str(step_delay_ms)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.started: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            match = STARTED.search(line)
            if match:
                self.started |= {int(part) for part in match.group(1).split(",")}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def _scratch_database(admin_url: str) -> Iterator[str]:
    name = f"pix2chat_bench_{uuid.uuid4().hex[:10]}"
    admin = pgqueue.libpq_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(url: str, concurrency: int, stalled_timeout_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIX2CHAT_")}
    env.update(
        PIX2CHAT_DATABASE_URL=url,
        PIX2CHAT_WORKER_CONCURRENCY=str(concurrency),
        PIX2CHAT_MAX_WAIT_MS="0",
        PIX2CHAT_WORKER_HEARTBEAT_S=str(max(0.2, stalled_timeout_s / 5)),
        PIX2CHAT_STALLED_TIMEOUT_S=str(stalled_timeout_s),
        PIX2CHAT_DATA_DIR=os.environ.get("TMPDIR", "/tmp") + "/pix2chat-bench",
        OMP_NUM_THREADS="1",
    )
    return env


async def _registered(url: str, count: int, timeout_s: float = 120.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            connection = await psycopg.AsyncConnection.connect(pgqueue.libpq_url(url))
            async with connection:
                cursor = await connection.execute(queue_sql.LIVE_WORKERS)
                row = await cursor.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.2)


async def _users(database: Database, images: DatabaseImageStore, count: int) -> list[int]:
    """`count` users with a photo each; their root version ids."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 130, 140)).save(buffer, "PNG")
    sha = images.put(buffer.getvalue())
    roots = []
    async with database.write() as session:
        for n in range(count):
            conversation = await tree.get_or_create_conversation(
                session, Actor("bench", str(n), str(n))
            )
            roots.append((await tree.add_root(session, conversation, sha, (64, 48))).id)
    return roots


async def _enqueue(database: Database, roots: list[int]) -> list[int]:
    """One edit per root, deferred in the transaction that records it; all commit at once."""
    async with database.write() as session:
        return [await _defer_one(session, root_id) for root_id in roots]


async def _defer_one(session: AsyncSession, root_id: int) -> int:
    parent = await session.get(Version, root_id)
    assert parent is not None
    conversation = await session.get(Conversation, parent.conversation_id)
    assert conversation is not None
    version = await tree.add_edit(session, conversation, parent, "bench", PARAMS)
    job = Job(version.id, f"bench:{conversation.user_id}", root_id, (64, 48), "bench", PARAMS)
    await pgqueue.defer_in(session, job)
    return version.id


async def _wait_done(database: Database, ids: list[int], timeout_s: float = 600.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            async with database.read() as session:
                left = await session.scalar(
                    select(func.count()).where(
                        Version.id.in_(ids), Version.status != VersionStatus.DONE
                    )
                )
            if not left:
                return
            await asyncio.sleep(0.2)


async def _span(database: Database, ids: list[int]) -> float:
    async with database.read() as session:
        first, last = (
            await session.execute(
                select(func.min(Version.started_at), func.max(Version.finished_at)).where(
                    Version.id.in_(ids)
                )
            )
        ).one()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return (last - first).total_seconds()


async def _throughput(
    url: str, workers: int, jobs: int, concurrency: int, analyze: bool, echo: Echo
) -> None:
    images = DatabaseImageStore(url)
    try:
        async with Database(url) as database:
            async with database.write() as session:
                await session.execute(text("TRUNCATE versions, conversations CASCADE"))
            roots = await _users(database, images, jobs)
            processes = [_Worker(_env(url, concurrency, 30.0)) for _ in range(workers)]
            try:
                await _registered(url, workers)
                await asyncio.sleep(1.0)  # all of them idle and listening
                ids = await _enqueue(database, roots)
                if analyze:  # fresh statistics on the backlog, as autovacuum keeps them
                    async with database.write() as session:
                        await session.execute(queue_sql.ANALYZE_JOBS)
                await _wait_done(database, ids)
                seconds = await _span(database, ids)
            finally:
                for process in processes:
                    process.stop()
    finally:
        images.close()
    echo(
        f"throughput, {workers} worker(s) x {concurrency}   {jobs / seconds:8.0f} jobs/s   "
        f"({jobs} jobs, first start to last result {seconds:.2f} s"
        f"{'' if analyze else ', stale planner statistics'})"
    )


async def _latency(url: str, samples: int, echo: Echo) -> None:
    images = DatabaseImageStore(url)
    worker = _Worker(_env(url, 4, 30.0))
    try:
        async with Database(url) as database:
            roots = await _users(database, images, samples)
            await _registered(url, 1)
            await asyncio.sleep(1.0)  # let it settle: idle, listening
            waits = []
            for root_id in roots:
                async with database.write() as session:
                    version_id = await _defer_one(session, root_id)
                committed = time.time()
                await _wait_done(database, [version_id], timeout_s=30)
                async with database.read() as session:
                    version = await session.get(Version, version_id)
                assert version is not None and version.started_at is not None
                waits.append((version.started_at.timestamp() - committed) * 1000)
                await asyncio.sleep(0.05)  # idle again
    finally:
        worker.stop()
        images.close()
    waits.sort()
    p50 = statistics.median(waits)
    p95 = waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))]
    echo(
        f"enqueue-to-start, idle queue   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   "
        f"({samples} edits one at a time; commit -> worker claims it)"
    )


async def _recovery(url: str, stalled_timeout_s: float, echo: Echo) -> None:
    images = DatabaseImageStore(url)
    env = _env(url, 4, stalled_timeout_s)
    slow = EditParams(num_inference_steps=20, resolution=64)
    workers = [_Worker(env, step_delay_ms=100) for _ in range(2)]  # an edit lasts ~2 s
    try:
        async with Database(url) as database:
            (root_id,) = await _users(database, images, 1)
            await _registered(url, 2)
            async with database.write() as session:
                parent = await session.get(Version, root_id)
                assert parent is not None
                conversation = await session.get(Conversation, parent.conversation_id)
                assert conversation is not None
                version = await tree.add_edit(session, conversation, parent, "slow", slow)
                job = Job(version.id, "bench:0", root_id, (64, 48), "slow", slow)
                await pgqueue.defer_in(session, job)
            version_id = version.id
            for _ in range(1500):
                if any(version_id in w.started for w in workers):
                    break
                await asyncio.sleep(0.02)
            victim = next(w for w in workers if version_id in w.started)
            victim.process.kill()
            killed = time.time()
            await _wait_done(database, [version_id], timeout_s=120)
            async with database.read() as session:
                done = await session.get(Version, version_id)
            assert done is not None and done.started_at and done.finished_at
            restarted = done.started_at.timestamp() - killed
            finished = done.finished_at.timestamp() - killed
    finally:
        for worker in workers:
            worker.stop()
        images.close()
    echo(
        f"recovery after SIGKILL        restarted on the other worker after {restarted:5.1f} s, "
        f"result {finished:5.1f} s after the kill (stalled timeout {stalled_timeout_s:g} s, "
        f"attempts {done.attempts})"
    )


async def run_queue_benchmark(
    admin_url: str,
    worker_counts: list[int],
    jobs: int,
    concurrency: int,
    samples: int,
    stalled_timeout_s: float,
    echo: Echo,
    analyze: bool = True,
) -> None:
    with _scratch_database(admin_url) as url:
        for count in worker_counts:
            await _throughput(url, count, jobs, concurrency, analyze, echo)
        await _latency(url, samples, echo)
        await _recovery(url, stalled_timeout_s, echo)
