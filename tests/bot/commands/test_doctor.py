"""`pix2chat doctor`'s queue check on real PostgreSQL, with a dead worker and a live one."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text

from bot.commands.doctor import check_queue
from bot.config import Settings
from bot.work.jobs import JobDone
from bot.work.remote import RemoteJobQueue
from editor.testing.doubles import NullEditor
from storage.database import Database
from storage.images import DatabaseImageStore
from tests.fixtures_queue import Events, add_edit, add_photo, running_worker


async def test_doctor_shows_waiting_running_alive_and_stalled(
    pg: Database, images: DatabaseImageStore, postgres_url: str
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=postgres_url, worker="remote", stalled_timeout_s=1.0
    )
    await add_photo(pg, images, "alice")
    await add_photo(pg, images, "bob")
    stuck = await add_edit(pg, "alice", "alice 1")
    await add_edit(pg, "bob", "bob 1")
    async with pg.write() as session:  # alice's job was taken by a worker that then died
        dead = await session.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '1 hour') RETURNING id"
            )
        )
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = :worker "
                "WHERE args @> CAST(:args AS jsonb)"
            ),
            {"worker": dead, "args": json.dumps({"version_id": stuck})},
        )

    check = await asyncio.to_thread(check_queue, settings)
    assert not check.ok
    assert check.detail.startswith("1 waiting, 1 running, 0 worker(s) alive, 1 stalled")
    assert "start `pix2chat worker`" in check.detail

    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, NullEditor()):
            await events.until(lambda: bool(events.outcomes(stuck)))  # handed back, then run
            check = await asyncio.to_thread(check_queue, settings)
    assert check.ok, check
    assert "1 worker(s) alive, 0 stalled" in check.detail
    assert isinstance(events.outcomes(stuck)[0], JobDone)
