"""Scaled out for real: `pix2chat worker` processes + a frontend, sharing only PostgreSQL.

Each scenario runs against the real deployment (two worker processes with the tiny diffusers
model on the CPU, the frontend side with the `RemoteJobQueue`), and where it applies also in
embedded mode (the in-process scheduler on SQLite, same model), with the same assertions:
every edit completes, each user's edits run in order, each result reaches the chat exactly
once. Workers are slowed per step so an edit lasts long enough to kill its worker.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from bot.service.replies import Reply
from bot.work.jobs import JobQueue
from bot.work.remote import RemoteJobQueue
from bot.work.scheduler import EmbeddedScheduler
from editor.images import fitted_size, image_size
from editor.pix2pix import DiffusersEditor
from editor.testing.doubles import StepDelay
from storage.database import Database
from storage.images import DatabaseImageStore, FileImageStore, ImageStore
from storage.models import Version, VersionStatus
from storage.types import Actor
from tests.scaleout.harness import WorkerPool, actor, frontend, results_by_version, user_chains

pytestmark = pytest.mark.slow

TIMEOUT_S = 90.0
STEP_DELAY_MS = 40
USERS = 6
EDITS_PER_USER = 3


@pytest.fixture(scope="module")
def pool(
    postgres_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerPool]:
    workers = WorkerPool(
        postgres_url, tiny_model_dir, tmp_path_factory.mktemp("workers"), STEP_DELAY_MS
    )
    try:
        yield workers
    finally:
        workers.stop_all()


def _empty(url: str) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "TRUNCATE versions, conversations, user_limits, images, procrastinate_jobs "
            "RESTART IDENTITY CASCADE"
        )


@dataclass
class Deployment:
    """One way of running pix2chat: where the jobs go and where the images live."""

    mode: str
    database: Database
    images: ImageStore
    make_queue: Callable[[], Any]  # a JobQueue that is its own async context manager

    @asynccontextmanager
    async def queue(self) -> AsyncIterator[JobQueue]:
        async with self.make_queue() as queue:
            yield queue


@pytest.fixture(params=["remote", "embedded"])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    if request.param == "remote":
        url = str(request.getfixturevalue("postgres_url"))
        pool: WorkerPool = request.getfixturevalue("pool")
        await asyncio.to_thread(_empty, url)
        await pool.ensure(2)
        shared = DatabaseImageStore(url)
        async with Database(url) as database:
            yield Deployment("remote", database, shared, lambda: RemoteJobQueue(database))
        shared.close()
        return
    url = str(request.getfixturevalue("sqlite_url"))
    tiny: DiffusersEditor = request.getfixturevalue("tiny_editor")
    editor = StepDelay(tiny, STEP_DELAY_MS / 1000)
    images = FileImageStore(tmp_path / "images")
    async with Database(url) as database:
        yield Deployment(
            "embedded",
            database,
            images,
            lambda: EmbeddedScheduler(database, images, editor, max_batch=4, max_wait_ms=30),
        )


async def _versions(database: Database) -> dict[int, Version]:
    async with database.read() as session:
        return {v.id: v for v in (await session.scalars(select(Version))).all()}


def _assert_in_order(chains: dict[str, list[Version]]) -> None:
    """Each user's edits ran one at a time, in the order they were sent, each on the last."""
    for user, chain in chains.items():
        for before, after in itertools.pairwise(chain):
            assert after.parent_id == before.id, user
            assert before.finished_at is not None and after.started_at is not None
            assert before.finished_at <= after.started_at, (user, before.id, after.id)


async def test_many_users_edits_all_complete_in_order_once(deployment: Deployment) -> None:
    sent: list[tuple[Actor, Reply]] = []
    async with (
        deployment.queue() as queue,
        frontend(deployment.database, deployment.images, queue, sent) as chat,
    ):
        users = [f"user{n}" for n in range(USERS)]
        edits: dict[int, str] = {}
        for user in users:
            await chat.upload(user)
        for round_ in range(EDITS_PER_USER):  # everyone chains edits on their pending ones
            for user in users:
                edits[await chat.instruct(user, f"{user} step {round_}")] = user
        await chat.delivery.until(lambda: len(sent) >= len(edits), TIMEOUT_S)
        await asyncio.sleep(0.5)  # a duplicate would arrive now

    by_version = results_by_version(sent)
    assert sorted(by_version) == sorted(edits)
    for version_id, replies in by_version.items():
        assert [r.key for r in replies] == ["edit.done"], (version_id, replies)
    for reply_actor, reply in sent:
        assert reply_actor == actor(edits[reply.version_id or 0])
    chains = await user_chains(deployment.database)
    assert {user: len(chain) for user, chain in chains.items()} == dict.fromkeys(
        [f"user{n}" for n in range(USERS)], EDITS_PER_USER
    )
    _assert_in_order(chains)
    for chain in chains.values():
        for version in chain:
            assert (version.status, version.delivered, version.attempts) == ("done", True, 1)
            assert version.image_sha is not None and deployment.images.exists(version.image_sha)
            # Developed onto the photo (its size); the model's own output kept beside it.
            assert (version.width, version.height) == (64, 48)
            assert version.raw_image_sha is not None
            raw = deployment.images.get(version.raw_image_sha)
            assert image_size(raw) == fitted_size((64, 48), 64)


async def test_a_worker_killed_mid_edit_the_edit_completes_elsewhere_once(
    postgres_url: str, pool: WorkerPool
) -> None:
    await asyncio.to_thread(_empty, postgres_url)
    workers = await pool.ensure(2)
    images = DatabaseImageStore(postgres_url)
    sent: list[tuple[Actor, Reply]] = []
    async with Database(postgres_url) as database, RemoteJobQueue(database) as queue:
        async with frontend(database, images, queue, sent) as chat:
            await chat.upload("alice")
            await chat.service.update_setting(actor("alice"), "steps", 40)  # ~2 s of steps
            version_id = await chat.instruct("alice", "alice at night")
            await chat.delivery.until(lambda: version_id in chat.delivery.progress, TIMEOUT_S)
            for _ in range(100):  # its log line may still be on its way
                if any(version_id in w.started() for w in workers):
                    break
                await asyncio.sleep(0.05)
            (victim,) = [w for w in workers if version_id in w.started()]
            survivor = next(w for w in workers if w is not victim)
            victim.kill()
            killed_at = time.monotonic()
            await chat.delivery.until(lambda: bool(sent), TIMEOUT_S)
            recovered_s = time.monotonic() - killed_at
            await asyncio.sleep(0.5)  # a duplicate would arrive now
        async with database.read() as session:
            version = await session.get(Version, version_id)
    images.close()

    assert [(a, r.key, r.version_id) for a, r in sent] == [
        (actor("alice"), "edit.done", version_id)
    ]
    assert version is not None
    assert (version.status, version.attempts, version.delivered) == (VersionStatus.DONE, 2, True)
    assert version_id in survivor.started()
    # stalled after 5 s without a heartbeat, swept every 0.5 s, then ~2 s to run the edit again
    assert recovered_s < 20, recovered_s


async def test_results_finishing_while_the_frontend_restarts_are_delivered_once(
    deployment: Deployment,
) -> None:
    sent: list[tuple[Actor, Reply]] = []
    users = [f"user{n}" for n in range(4)]
    edits: list[int] = []
    async with deployment.queue() as queue:
        async with frontend(deployment.database, deployment.images, queue, sent) as chat:
            for user in users:
                await chat.upload(user)
            for round_ in range(2):
                for user in users:
                    edits.append(await chat.instruct(user, f"{user} step {round_}"))
            await chat.delivery.until(lambda: bool(sent), TIMEOUT_S)
        delivered_before_restart = len(sent)  # the frontend is gone; edits keep finishing
        await _until_finished(deployment.database, edits)
    async with (
        deployment.queue() as queue,
        frontend(deployment.database, deployment.images, queue, sent) as chat,
    ):
        await chat.delivery.until(lambda: len(sent) >= len(edits), TIMEOUT_S)
        await asyncio.sleep(0.5)  # a duplicate would arrive now

    assert delivered_before_restart < len(edits)
    by_version = results_by_version(sent)
    assert sorted(by_version) == sorted(edits)
    assert all([r.key for r in replies] == ["edit.done"] for replies in by_version.values())
    versions = await _versions(deployment.database)
    assert all(versions[v].delivered for v in edits)


async def _until_finished(database: Database, version_ids: list[int]) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            versions = await _versions(database)
            if all(versions[v].status == VersionStatus.DONE for v in version_ids):
                return
            await asyncio.sleep(0.1)


async def test_sigterm_lets_a_worker_finish_its_edit_before_exiting(
    postgres_url: str, pool: WorkerPool
) -> None:
    await asyncio.to_thread(_empty, postgres_url)
    workers = await pool.ensure(2)
    images = DatabaseImageStore(postgres_url)
    sent: list[tuple[Actor, Reply]] = []
    async with Database(postgres_url) as database, RemoteJobQueue(database) as queue:
        async with frontend(database, images, queue, sent) as chat:
            await chat.upload("alice")
            await chat.service.update_setting(actor("alice"), "steps", 30)
            version_id = await chat.instruct("alice", "alice at dawn")
            await chat.delivery.until(lambda: version_id in chat.delivery.progress, TIMEOUT_S)
            for _ in range(100):
                if any(version_id in w.started() for w in workers):
                    break
                await asyncio.sleep(0.05)
            (worker,) = [w for w in workers if version_id in w.started()]
            worker.process.send_signal(signal.SIGTERM)  # as `docker compose stop` does
            await chat.delivery.until(lambda: bool(sent), TIMEOUT_S)
            exit_code = await asyncio.to_thread(worker.process.wait, 30)
        async with database.read() as session:
            version = await session.get(Version, version_id)
    images.close()

    assert exit_code == 0, worker.log()
    assert [(r.key, r.version_id) for _, r in sent] == [("edit.done", version_id)]
    assert version is not None and (version.status, version.attempts) == (VersionStatus.DONE, 1)
    assert not any(version_id in w.started() for w in workers if w is not worker)
