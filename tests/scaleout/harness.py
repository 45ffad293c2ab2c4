"""Real scaled-out deployments for tests: `pix2chat worker` processes and a frontend side.

Workers are separate processes (`python -m bot.cli worker`) on the session's PostgreSQL
database, with the tiny diffusers model on the CPU, slowed per step so a test can kill one in
the middle of an edit. The frontend side is what `pix2chat run` builds with
PIX2CHAT_WORKER=remote, in the test process: the conversation service, a `RemoteJobQueue` and
a delivery that records what a chat would have received.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from PIL import Image
from sqlalchemy import select

from bot.service.conversation import Admission, ConversationService
from bot.service.mailboxes import EventDelivery
from bot.service.replies import Reply
from bot.work.jobs import JobQueue
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage.database import Database
from storage.images import ImageStore
from storage.limits import LimitPolicy
from storage.models import Conversation, Version
from storage.types import Actor

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "telegram"
PARAMS = EditParams(num_inference_steps=2, resolution=64)
GENEROUS = Admission(
    max_pending_per_user=10, queue_cap=1000, rate=LimitPolicy(burst=100, per_minute=600.0)
)
STARTED = re.compile(r"edit\(s\) \[([\d, ]+)\] started")


def actor(user: str) -> Actor:
    return Actor(PLATFORM, f"chat-{user}", user)


def photo(user: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (sum(map(ord, user)) % 256, 120, 80)).save(buffer, "PNG")
    return buffer.getvalue()


class WorkerProcess:
    """One `pix2chat worker` process; its log lines are collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker", "--step-delay-ms", env["STEP_DELAY_MS"]],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    def started(self) -> set[int]:
        """Versions this worker started computing."""
        found: set[int] = set()
        for line in list(self.lines):
            match = STARTED.search(line)
            if match:
                found |= {int(part) for part in match.group(1).split(",")}
        return found

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.alive:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return "\n".join(self.lines[-40:])


@dataclass
class WorkerPool:
    """`pix2chat worker` processes on one database, started and killed by tests."""

    url: str
    model_dir: Path
    data_dir: Path
    step_delay_ms: int = 40
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIX2CHAT_")}
        env.update(
            PIX2CHAT_DATABASE_URL=self.url,
            PIX2CHAT_MODEL=str(self.model_dir),
            PIX2CHAT_DEVICE="cpu",
            PIX2CHAT_DATA_DIR=str(self.data_dir),
            PIX2CHAT_WORKER_CONCURRENCY="4",
            PIX2CHAT_MAX_WAIT_MS="30",
            PIX2CHAT_WORKER_HEARTBEAT_S="0.5",
            PIX2CHAT_STALLED_TIMEOUT_S="5",  # generous: a busy CI machine must not look dead
            PIX2CHAT_MAX_ATTEMPTS="3",
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS="1",
            STEP_DELAY_MS=str(self.step_delay_ms),
        )
        return env

    def alive(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive]

    async def ensure(self, count: int, timeout_s: float = 90.0) -> list[WorkerProcess]:
        """At least `count` live workers, registered with procrastinate (so fetching jobs)."""
        spawned = []
        while len(self.alive()) < count:
            spawned.append(WorkerProcess(self.env()))
            self.workers.append(spawned[-1])
        deadline = time.monotonic() + timeout_s
        while await asyncio.to_thread(self.registered) < count:
            for worker in spawned:
                assert worker.alive, worker.log()
            assert time.monotonic() < deadline, "workers did not start:\n" + "\n".join(
                w.log() for w in spawned
            )
            await asyncio.sleep(0.2)
        for worker in self.alive():  # version ids restart with each test's empty database
            worker.lines.clear()
        return self.alive()

    def registered(self) -> int:
        """Workers whose heartbeat is fresh."""
        with psycopg.connect(self.url) as connection:
            row = connection.execute(
                "SELECT count(*) FROM procrastinate_workers "
                "WHERE last_heartbeat > now() - interval '1.5 seconds'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.terminate()


class RecordingDelivery(EventDelivery):
    """A frontend's delivery that records results instead of uploading them to a chat."""

    def __init__(self, service: ConversationService, sent: list[tuple[Actor, Reply]]) -> None:
        super().__init__(service)
        self.sent = sent
        self.progress: list[int] = []
        self.changed = asyncio.Event()

    async def show_progress(self, reply: Reply) -> None:
        assert reply.version_id is not None
        self.progress.append(reply.version_id)
        self.changed.set()

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        self.sent.append((actor, reply))
        self.changed.set()
        return True

    async def until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Frontend:
    service: ConversationService
    delivery: RecordingDelivery

    async def upload(self, user: str) -> int:
        reply = await self.service.receive_image(actor(user), photo(user))
        assert reply.version_id is not None and not reply.is_error, reply
        return reply.version_id

    async def instruct(self, user: str, text: str) -> int:
        reply = await self.service.instruct(actor(user), text)
        assert reply.version_id is not None and not reply.is_error, reply
        return reply.version_id


@asynccontextmanager
async def frontend(
    database: Database,
    images: ImageStore,
    queue: JobQueue,
    sent: list[tuple[Actor, Reply]],
    delivery_class: type[RecordingDelivery] = RecordingDelivery,
) -> AsyncIterator[Frontend]:
    """A frontend process's service and delivery; results missed while away are swept first."""
    service = ConversationService(
        database, images, queue, NullEditor(), defaults=PARAMS, admission=GENEROUS
    )
    delivery = delivery_class(service, sent)
    service.subscribe(PLATFORM, delivery.on_event)
    await service.redeliver(PLATFORM)
    try:
        yield Frontend(service, delivery)
    finally:
        service.unsubscribe(PLATFORM, delivery.on_event)
        await delivery.close()


def results_by_version(sent: list[tuple[Actor, Reply]]) -> dict[int, list[Reply]]:
    found: dict[int, list[Reply]] = {}
    for _, reply in sent:
        assert reply.version_id is not None
        found.setdefault(reply.version_id, []).append(reply)
    return found


async def user_chains(database: Database) -> dict[str, list[Version]]:
    """Each user's edits (not photos), oldest first."""
    async with database.read() as session:
        rows = await session.execute(
            select(Version, Conversation.user_id)
            .join(Conversation, Conversation.id == Version.conversation_id)
            .where(Version.parent_id.is_not(None))
            .order_by(Version.id)
        )
        chains: dict[str, list[Version]] = {}
        for version, user in rows.all():
            chains.setdefault(user, []).append(version)
    return chains
