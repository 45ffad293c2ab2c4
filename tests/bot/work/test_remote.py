"""The frontend's queue when GPU workers run elsewhere: positions, cancels, lost connections.

Frontend-side events are the ones a `RemoteJobQueue` hears over LISTEN/NOTIFY (PostgreSQL).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import exc, text

from bot.app import ConfigurationError, build
from bot.config import Settings
from bot.service.replies import Reply
from bot.work import pgqueue, remote
from bot.work.jobs import JobDone
from bot.work.remote import RemoteJobQueue
from editor.testing.doubles import NullEditor
from storage import lifecycle
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.migrate import upgrade
from storage.types import Actor
from tests.fixtures_pgserver import PrivateServer
from tests.fixtures_queue import Events, add_edit, add_photo, jobs
from tests.scaleout.harness import actor, frontend, photo


async def test_position_and_depth_come_from_the_database(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    await add_photo(pg, images, "bob")
    a1 = await add_edit(pg, "alice", "alice 1")
    a2 = await add_edit(pg, "alice", "alice 2")
    b1 = await add_edit(pg, "bob", "bob 1")
    async with RemoteJobQueue(pg) as queue:
        assert [await queue.position(v) for v in (a1, b1, a2)] == [1, 2, 3]
        assert await queue.position(10_000) is None
        assert await queue.depth() == 3
        async with pg.write() as session:
            await session.execute(
                text("SELECT procrastinate_fetch_job_v2(:queues, NULL)"),
                {"queues": [pgqueue.QUEUE]},
            )
        assert [await queue.position(v) for v in (a1, b1, a2)] == [0, 1, 2]


async def test_remote_frontends_refuse_sqlite(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, worker="remote")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="PIX2CHAT_DATABASE_URL=postgresql://"):
        async with build(settings, editor=NullEditor()):
            pass


class NoModel(NullEditor):
    """Fails the test if anything tries to load a model."""

    def load(self) -> None:
        raise AssertionError("a remote-mode frontend loaded the model")


async def test_build_in_remote_mode_defers_edits_and_loads_no_model(
    pg: Database, postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, database_url=postgres_url, worker="remote"
    )
    async with build(settings, editor=NoModel()) as components:
        assert isinstance(components.scheduler, RemoteJobQueue)
        assert isinstance(components.images, DatabaseImageStore)
        photo_reply = await components.service.receive_image(actor("alice"), photo("alice"))
        reply = await components.service.instruct(actor("alice"), "make it night")
    assert photo_reply.key == "photo.received" and reply.key == "edit.queued_next", reply
    assert await jobs(pg) == [("todo", "user:telegram:alice", 0, {"version_id": reply.version_id})]
    assert not (tmp_path / "images").exists()  # images went to the database


async def test_after_losing_its_connection_the_frontend_hears_what_finished_meanwhile(
    pg: Database, images: DatabaseImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "RECONNECT_DELAY_S", 2.0)
    await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    listeners = text(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'pix2chat-events' AND datname = current_database()"
    )
    events = Events()
    async with RemoteJobQueue(pg, liveness_check_s=0.2) as queue:
        queue.subscribe(events)
        async with pg.write() as session:  # the server drops the listening connection...
            (pid,) = (await session.scalars(listeners)).all()
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(100):
            async with pg.read() as session:
                if not (await session.scalars(listeners)).all():
                    break
            await asyncio.sleep(0.01)
        async with pg.write() as session:
            # ...and, while it is gone, a worker finishes the edit (its NOTIFY is lost)
            await lifecycle.claim_many(session, [version_id])
            sha = images.put(photo("result"))
            await lifecycle.mark_done(session, version_id, sha, (64, 48))
            await pgqueue.notify(session, [JobDone(version_id, 1.0)])
        await events.until(lambda: bool(events.outcomes(version_id)))
    assert events.outcomes(version_id) == [JobDone(version_id, 0.0)]  # re-announced


async def test_cancelled_edits_leave_the_queue(pg: Database, images: DatabaseImageStore) -> None:
    sent: list[tuple[Actor, Reply]] = []
    async with RemoteJobQueue(pg) as queue, frontend(pg, images, queue, sent) as chat:
        await chat.upload("alice")
        await chat.upload("bob")
        first = await chat.instruct("alice", "alice 1")
        cancelled = await chat.instruct("alice", "alice 2")
        bob = await chat.instruct("bob", "bob 1")
        assert await queue.position(bob) == 2  # alice's first, then bob (priority 0 each)
        reply = await chat.service.cancel(actor("alice"))
        assert reply.key == "cancel.done"
        for _ in range(100):
            if await queue.position(cancelled) is None:
                break
            await asyncio.sleep(0.02)
        assert await queue.position(cancelled) is None
        assert await queue.depth() == 2
    assert [args["version_id"] for *_, args in await jobs(pg)] == [first, bob]


async def test_after_a_server_restart_the_frontend_listens_again_and_hears_what_it_missed(
    private_postgres: PrivateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server restarts; the first resync fails too (the server went again): the listener
    keeps trying, and the next resync announces the result whose NOTIFY was never heard."""
    monkeypatch.setattr(remote, "RECONNECT_DELAY_S", 0.3)
    url = private_postgres.create_database("remote_restart")
    upgrade(url)
    images = DatabaseImageStore(url)
    events = Events()
    async with Database(url) as database:
        await add_photo(database, images, "alice")
        version_id = await add_edit(database, "alice", "alice at night")
        async with RemoteJobQueue(database, liveness_check_s=0.2) as queue:
            queue.subscribe(events)
            resyncs: list[int] = []
            real_resync = queue._resync

            async def flaky_resync() -> None:
                resyncs.append(1)
                if len(resyncs) == 1:
                    raise exc.OperationalError(
                        "SELECT", {}, psycopg.OperationalError("server closed")
                    )
                await real_resync()

            monkeypatch.setattr(queue, "_resync", flaky_resync)
            await asyncio.to_thread(private_postgres.restart)
            async with database.write() as session:  # finished with no NOTIFY heard
                await lifecycle.claim_many(session, [version_id])
                sha = images.put(photo("result"))
                await lifecycle.mark_done(session, version_id, sha, (64, 48))
            await events.until(lambda: bool(events.outcomes(version_id)))
            await asyncio.sleep(0.5)  # a second announcement would arrive now
    images.close()
    assert events.outcomes(version_id) == [JobDone(version_id, 0.0)]
    assert len(resyncs) >= 2
