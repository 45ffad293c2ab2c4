"""Today's figures for /stats and the queue gauges, from the version table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from editor.params import EditParams
from storage import lifecycle, stats, tree
from storage.database import Database
from storage.models import Version
from storage.types import Actor

NOW = datetime.now(UTC)


async def edit(database: Database, user: str, instruction: str) -> int:
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, Actor("telegram", user, user))
        root = await tree.add_root(session, conversation, "a" * 64, (64, 64))
        version = await tree.add_edit(session, conversation, root, instruction, EditParams())
        return version.id


async def finish(database: Database, ids: list[int], seconds: float) -> None:
    """One batch: claimed and recorded together, `seconds` apart."""
    async with database.write() as session:
        await lifecycle.claim_many(session, ids)
        await lifecycle.mark_done_many(
            session, [lifecycle.Result(i, "b" * 64, (64, 64)) for i in ids]
        )
        started = NOW - timedelta(seconds=seconds)
        await session.execute(
            update(Version).where(Version.id.in_(ids)).values(started_at=started, finished_at=NOW)
        )


async def test_a_day_of_edits(database: Database) -> None:
    a1, a2, b1 = [await edit(database, u, i) for u, i in [("a", "x"), ("a", "y"), ("b", "z")]]
    await finish(database, [a1, b1], 4.0)  # one batch of two: 4 s of GPU, two edits of 4 s
    await finish(database, [a2], 2.0)
    broken = await edit(database, "c", "explode")
    async with database.write() as session:
        await lifecycle.claim_many(session, [broken])
        await lifecycle.fail(session, broken, "error.edit_failed", "boom")
    waiting = await edit(database, "d", "later")
    running = await edit(database, "d", "now")
    async with database.write() as session:
        await lifecycle.claim_many(session, [running])

    async with database.read() as session:
        day = await stats.day_stats(session, NOW + timedelta(seconds=1))
        counts = await stats.queue_counts(session)

    assert waiting and counts == stats.QueueCounts(waiting=1, running=1)
    assert (day.edits, day.failures, day.active_users) == (3, 1, 4)
    assert (day.waiting, day.running) == (1, 1)
    assert day.p50_s == 4.0 and day.p95_s is not None and 3.9 < day.p95_s <= 4.0
    assert day.gpu_s == 6.0  # the batch counted once
    assert day.top_users == (("telegram:a", 2), ("telegram:b", 1))


async def test_an_empty_day(database: Database) -> None:
    async with database.read() as session:
        day = await stats.day_stats(session, NOW)
    assert (day.edits, day.active_users, day.p50_s, day.gpu_s, day.top_users) == (
        0,
        0,
        None,
        0.0,
        (),
    )
