"""PostgreSQL restarted under a running deployment: nothing lost, nothing sent twice.

A real `pix2chat worker` process (the tiny diffusers model on the CPU, slowed per step) and
the frontend side of `pix2chat run` with PIX2CHAT_WORKER=remote (in the test process, as in
test_deployments.py) share a private PostgreSQL server (tests/fixtures_pgserver.py), which the
test stops and starts again, as `pg_ctlcluster ... restart` would, with a few seconds between
so that requests land in the outage. At that moment user A's edit is running on the worker and
user B's finished edit is being sent to B's chat; user C sends an instruction during the
outage and again once the server is back.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.service.replies import Reply
from bot.work.remote import RemoteJobQueue
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.migrate import upgrade
from storage.models import Version, VersionStatus
from storage.types import Actor
from tests.fixtures_pgserver import PrivateServer
from tests.scaleout.harness import (
    RecordingDelivery,
    WorkerPool,
    actor,
    frontend,
    results_by_version,
    user_chains,
)

pytestmark = pytest.mark.slow

TIMEOUT_S = 45.0
STEP_DELAY_MS = 40
OUTAGE_S = float(os.environ.get("PIX2CHAT_TEST_OUTAGE_S", "3"))
"""How long the server stays down: A's edit (about 2 s of steps) finishes meanwhile. Longer
outages (35 s: past psycopg_pool's 30 s wait for a connection) are run by hand for
docs/BENCHMARKS.md: PIX2CHAT_TEST_OUTAGE_S=35."""


class HeldDelivery(RecordingDelivery):
    """Holds the sending of one chosen result until released: a slow upload to a chat."""

    held_version: int | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.sent_at: dict[int, float] = {}

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        assert reply.version_id is not None
        if reply.version_id == self.held_version:
            self.holding.set()
            await self.release.wait()
        self.sent_at.setdefault(reply.version_id, time.monotonic())
        return await super().send_result(actor, reply)


@pytest.fixture
def outage_pool(
    private_postgres: PrivateServer, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[WorkerPool]:
    url = private_postgres.create_database(f"outage_{time.monotonic_ns()}")
    upgrade(url)
    pool = WorkerPool(url, tiny_model_dir, tmp_path / "worker", STEP_DELAY_MS)
    try:
        yield pool
    finally:
        if not private_postgres.running:
            private_postgres.start()
        pool.stop_all()


async def test_postgres_restarted_mid_edit_and_mid_delivery_every_result_arrives_once(
    private_postgres: PrivateServer, outage_pool: WorkerPool
) -> None:
    (worker,) = await outage_pool.ensure(1)
    url = outage_pool.url
    images = DatabaseImageStore(url)
    sent: list[tuple[Actor, Reply]] = []
    async with Database(url) as database, RemoteJobQueue(database) as queue:
        async with frontend(database, images, queue, sent, HeldDelivery) as chat:
            delivery = chat.delivery
            assert isinstance(delivery, HeldDelivery)
            for user in ("alice", "bob", "carol"):
                await chat.upload(user)
            await chat.service.update_setting(actor("alice"), "steps", 50)  # ~2 s of steps
            delivery.held_version = await chat.instruct("bob", "bob at noon")
            bob = delivery.held_version
            async with asyncio.timeout(TIMEOUT_S):
                await delivery.holding.wait()  # B's result is done and being sent
            alice = await chat.instruct("alice", "alice at night")
            await delivery.until(lambda: alice in delivery.progress, TIMEOUT_S)  # A runs

            await asyncio.to_thread(private_postgres.stop)  # every connection drops
            delivery.release.set()  # B's upload completes while the database is away
            refused = await chat.service.instruct(actor("carol"), "carol in the rain")
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(private_postgres.start)
            back = time.monotonic()

            carol_reply = await chat.service.instruct(actor("carol"), "carol in the sun")
            accepted_s = time.monotonic() - back
            assert carol_reply.version_id is not None and not carol_reply.is_error, carol_reply
            carol = carol_reply.version_id
            await delivery.until(lambda: {alice, carol} <= delivery.sent_at.keys(), TIMEOUT_S)
            async with asyncio.timeout(TIMEOUT_S):
                while delivery.unmarked:  # noqa: ASYNC110 (polls the retry of marking)
                    await asyncio.sleep(0.05)
            marked_s = time.monotonic() - back
            await asyncio.sleep(1.0)  # a duplicate would arrive now
        async with database.read() as session:
            versions = {v.id: v for v in (await session.scalars(select(Version))).all()}
        chains = await user_chains(database)
    images.close()

    at = {version_id: when - back for version_id, when in delivery.sent_at.items()}
    print(  # the figures docs/BENCHMARKS.md records (pytest -s shows them)
        f"\nafter the server came back: C's new edit accepted in {accepted_s:.2f} s, its result "
        f"delivered at {at[carol]:.2f} s; A's result (running at the stop) delivered at "
        f"{at[alice]:.2f} s, A ran {versions[alice].attempts} time(s); B's result sent at "
        f"{at[bob]:.2f} s (during the outage), marked delivered by {marked_s:.2f} s"
    )
    print(
        *(
            line
            for line in worker.lines
            if ("bot.work.worker" in line or "bot.work.job_loop" in line) and "edit" not in line
        )
    )
    assert refused.key == "error.unavailable" and refused.is_error, refused
    by_version = results_by_version(sent)
    assert sorted(by_version) == sorted([alice, bob, carol])
    for version_id, replies in by_version.items():
        assert [r.key for r in replies] == ["edit.done"], (version_id, replies)
    for version_id in (alice, bob, carol):
        version = versions[version_id]
        assert (version.status, version.delivered) == (VersionStatus.DONE, True), version_id
    assert [v.instruction for v in chains["carol"]] == ["carol in the sun"]  # nothing half-written
    assert worker.alive, worker.log()
    tracebacks = [i for i, line in enumerate(worker.lines) if "Traceback" in line]
    assert not tracebacks, "\n".join(worker.lines[max(0, tracebacks[0] - 3) : tracebacks[0] + 30])
    assert at[bob] < 0 < at[alice] < 30 and at[carol] < 30, at
