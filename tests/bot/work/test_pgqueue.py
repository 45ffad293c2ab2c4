"""Deferring edit jobs into procrastinate on real PostgreSQL: transactions, locks, priorities."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from bot.work import pgqueue
from bot.work.jobs import Job
from storage import tree
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.models import Version
from tests.fixtures_queue import add_edit, add_photo, jobs
from tests.scaleout.harness import PARAMS, actor


async def test_a_version_and_its_job_commit_together_or_not_at_all(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    with pytest.raises(RuntimeError, match="after the defer"):
        async with pg.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor("alice"))
            parent = await tree.head(session, conversation)
            assert parent is not None
            version = await tree.add_edit(session, conversation, parent, "doomed", PARAMS)
            job = Job(version.id, "telegram:alice", parent.id, (64, 48), "doomed", PARAMS)
            await pgqueue.defer_in(session, job)
            raise RuntimeError("the transaction fails after the defer")
    async with pg.read() as session:
        assert await session.scalar(select(func.count()).where(Version.parent_id.is_not(None))) == 0
    assert await jobs(pg) == []

    version_id = await add_edit(pg, "alice", "kept")
    assert await jobs(pg) == [("todo", "user:telegram:alice", 0, {"version_id": version_id})]


async def test_per_user_lock_and_priorities_give_each_user_a_turn(
    pg: Database, images: DatabaseImageStore
) -> None:
    for user in ("alice", "bob", "carol"):
        await add_photo(pg, images, user)
    alice = [await add_edit(pg, "alice", f"alice {n}") for n in (1, 2, 3)]
    bob = [await add_edit(pg, "bob", "bob 1")]
    assert [priority for _, _, priority, _ in await jobs(pg)] == [0, -1, -2, 0]

    async def fetch() -> int | None:
        """What a worker would get next (procrastinate's own fetch function)."""
        async with pg.write() as session:
            row = (
                await session.execute(
                    text("SELECT id, args FROM procrastinate_fetch_job_v2(:queues, NULL)"),
                    {"queues": [pgqueue.QUEUE]},
                )
            ).one()
        return None if row.id is None else int(row.args["version_id"])

    async def finish(version_id: int) -> None:
        async with pg.write() as session:
            await session.execute(
                text(
                    "SELECT procrastinate_finish_job_v1(id, 'succeeded', true) "
                    "FROM procrastinate_jobs WHERE args @> CAST(:args AS jsonb)"
                ),
                {"args": json.dumps({"version_id": version_id})},
            )

    assert await fetch() == alice[0]
    assert await fetch() == bob[0]  # alice's second waits for her first
    assert await fetch() is None
    carol = await add_edit(pg, "carol", "carol 1")  # a newcomer while alice has two waiting
    await finish(alice[0])
    await finish(bob[0])
    assert await fetch() == carol  # anybody's first before anybody's second
    assert await fetch() == alice[1]
    assert await fetch() is None  # alice's third waits for her second
    await finish(alice[1])
    assert await fetch() == alice[2]
