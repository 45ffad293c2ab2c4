"""The procrastinate queue on real PostgreSQL: deferring, ordering, idempotency, failures.

A `GpuWorker` runs in the test process here (with the NullEditor), so each rule is checked in
a second or two; tests/scaleout/test_deployments.py runs the same code as real processes.
Frontend-side events are the ones a `RemoteJobQueue` hears over LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from bot.app import ConfigurationError, build
from bot.cli import app as cli
from bot.commands.doctor import check_queue
from bot.config import Settings
from bot.service.replies import Reply
from bot.work import pgqueue, remote
from bot.work.batching import MicroBatcher, ModelThread, Work
from bot.work.jobs import Job, JobDone, JobEvent, JobFailed
from bot.work.remote import RemoteJobQueue
from bot.work.worker import EDIT_FAILED, GpuWorker, WorkerOptions
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage import lifecycle, limits, tree
from storage.database import Database
from storage.errors import RateLimited
from storage.images import DatabaseImageStore, ImageMissing, MemoryImageStore, digest
from storage.limits import LimitPolicy
from storage.models import UserLimit, Version, VersionStatus
from storage.types import Actor
from tests.scaleout.harness import PARAMS, actor, frontend, photo

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
    """What a frontend's RemoteJobQueue hears."""

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
    options_ = dataclasses.replace(FAST, **options)  # type: ignore[arg-type]
    worker = GpuWorker(database, images, editor, options_)
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- enqueue in the version's transaction --------------------------------------------------------


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


# -- the worker ----------------------------------------------------------------------------------


async def test_a_job_run_twice_records_one_result_and_sends_one_message(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    async with pg.write() as session:  # the same version deferred again, as a rerun would be
        await pgqueue.defer_in(
            session, Job(version_id, "telegram:alice", 1, (64, 48), "alice at night", PARAMS)
        )
    events = Events()
    editor = NullEditor()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, editor):
            await events.until(lambda: bool(events.outcomes(version_id)))
            for _ in range(200):  # the second job ran too, and did nothing
                if not await jobs(pg):
                    break
                await asyncio.sleep(0.05)
            assert await jobs(pg) == []
            await asyncio.sleep(0.3)  # a second "done" would arrive now

    assert len(events.outcomes(version_id)) == 1
    assert isinstance(events.outcomes(version_id)[0], JobDone)
    assert len(editor.calls) == 1
    async with pg.read() as session:
        version = await session.get(Version, version_id)
    assert version is not None and (version.status, version.attempts) == ("done", 1)
    assert images.count()[0] == 2  # the photo and one result


async def test_compatible_jobs_of_different_users_share_a_call_in_the_worker(
    pg: Database, images: DatabaseImageStore
) -> None:
    users = ("alice", "bob", "carol", "dave")
    for user in users:
        await add_photo(pg, images, user)
    ids = [await add_edit(pg, user, f"{user} paints") for user in users]
    ids.append(await add_edit(pg, "alice", "alice again"))  # her second: after her first
    events = Events()
    editor = NullEditor()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, editor, max_wait_ms=300):
            await events.until(lambda: all(events.outcomes(v) for v in ids))

    assert sorted(len(call) for call in editor.calls) == [1, 4]
    assert editor.calls[-1][0].instruction == "alice again"


async def test_a_failed_edit_is_refunded_once_with_two_frontends_listening(
    pg: Database, images: DatabaseImageStore
) -> None:
    policy = LimitPolicy(burst=5, per_minute=0.0, daily_quota=0)
    await add_photo(pg, images, "alice")
    async with pg.write() as session:
        await limits.consume(session, "telegram", "alice", policy, 0.0)
    version_id = await add_edit(pg, "alice", "alice explode")
    sent: list[tuple[Actor, Reply]] = []
    async with (
        RemoteJobQueue(pg) as telegram_queue,
        RemoteJobQueue(pg) as discord_queue,
        frontend(pg, images, telegram_queue, sent) as telegram,
        frontend(pg, images, discord_queue, []),
        running_worker(pg, images, NullEditor(fail_on="explode")),
    ):
        await telegram.delivery.until(lambda: bool(sent), TIMEOUT_S)
        await asyncio.sleep(0.3)
    async with pg.read() as session:
        row = await session.get(UserLimit, ("telegram", "alice"))
        version = await session.get(Version, version_id)
    assert row is not None and row.tokens == 5.0  # one taken, one given back: not two
    assert version is not None and (version.status, version.error_key) == ("failed", EDIT_FAILED)
    assert [(reply.key, reply.is_error) for _, reply in sent] == [(EDIT_FAILED, True)]


async def test_an_edit_that_crashed_every_attempt_is_failed_and_the_user_told(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    doomed = await add_edit(pg, "alice", "alice crashes workers")
    on_top = await add_edit(pg, "alice", "alice more")
    async with pg.write() as session:  # as left by three workers killed in the middle of it
        await session.execute(
            update(Version)
            .where(Version.id == doomed)
            .values(status=VersionStatus.RUNNING, attempts=3)
        )
    sent: list[tuple[Actor, Reply]] = []
    editor = NullEditor()
    async with (
        RemoteJobQueue(pg) as queue,
        frontend(pg, images, queue, sent) as chat,
        running_worker(pg, images, editor, max_attempts=3),
    ):
        await chat.delivery.until(lambda: len(sent) >= 2, TIMEOUT_S)
    keys = {reply.version_id: reply.key for _, reply in sent}
    assert keys == {doomed: EDIT_FAILED, on_top: "error.parent_failed"}
    assert editor.calls == []


async def test_shutdown_lets_the_running_edit_finish(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    version_id = await add_edit(
        pg, "alice", "slow", params=EditParams(num_inference_steps=10, resolution=64)
    )
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, NullEditor(step_delay_s=0.1)):
            await events.until(lambda: any(e.version_id == version_id for e in events.seen))
        # the worker is stopped (as on SIGTERM) while the edit runs: it finishes it first
        await events.until(lambda: bool(events.outcomes(version_id)))
    async with pg.read() as session:
        version = await session.get(Version, version_id)
    assert version is not None and version.status == VersionStatus.DONE
    assert await jobs(pg) == []


# -- shared parts ------------------------------------------------------------------------------


async def test_micro_batcher_groups_compatible_samples_and_isolates_failures() -> None:
    store = MemoryImageStore()
    sha = store.put(photo("alice"))
    editor = NullEditor(fail_on="explode")
    model = ModelThread()

    def work(version_id: int, instruction: str, steps: int = 2) -> Work:
        params = EditParams(num_inference_steps=steps, resolution=64, seed=version_id)
        return Work(version_id, sha, (64, 48), instruction, params)

    try:
        async with MicroBatcher(model, editor, store, max_batch=3, max_wait_ms=50) as batcher:
            results = await asyncio.gather(
                batcher.run(work(1, "a")),
                batcher.run(work(2, "b")),
                batcher.run(work(3, "c", steps=3)),
                batcher.run(work(4, "explode")),
                return_exceptions=True,
            )
    finally:
        model.close()
    assert [[r.instruction for r in call] for call in editor.calls] == [
        ["a", "b", "explode"],
        ["a"],
        ["b"],
        ["explode"],
        ["c"],
    ]
    assert isinstance(results[3], RuntimeError)
    assert [r.version_id for r in results[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    assert all(store.exists(r.image_sha) for r in results[:3])  # type: ignore[union-attr]


def test_database_image_store(db_url: str) -> None:
    store = DatabaseImageStore(db_url)
    try:
        data = photo("alice")
        sha = store.put(data)
        assert store.put(data) == sha == digest(data)
        assert store.get(sha) == data and store.exists(sha)
        store.delete(sha)
        assert not store.exists(sha)
        with pytest.raises(ImageMissing):
            store.get(sha)
    finally:
        store.close()


async def test_rate_limits_hold_across_processes(postgres_url: str) -> None:
    """Two engines are two processes to PostgreSQL: the row lock serialises them."""
    policy = LimitPolicy(burst=3, per_minute=0.0, daily_quota=0)
    async with Database(postgres_url) as first, Database(postgres_url) as second:
        async with first.write() as session:
            await session.execute(text("DELETE FROM user_limits"))

        async def request(database: Database) -> BaseException | None:
            try:
                async with database.write() as session:
                    await limits.consume(session, "telegram", "zoe", policy, 0.0)
                    await asyncio.sleep(0.02)
            except RateLimited as error:
                return error
            return None

        outcomes = await asyncio.gather(*(request(db) for db in [first, second] * 4))
    assert sum(outcome is None for outcome in outcomes) == 3


def test_worker_refuses_sqlite_with_a_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["worker", "--null-editor"],
        env={"PIX2CHAT_DATA_DIR": str(tmp_path), "PIX2CHAT_DATABASE_URL": ""},
    )
    assert result.exit_code == 2, result.output
    assert "PIX2CHAT_DATABASE_URL=postgresql://" in result.output
    assert "Traceback" not in result.output


async def test_remote_frontends_refuse_sqlite(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, worker="remote")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="PIX2CHAT_DATABASE_URL=postgresql://"):
        async with build(settings, editor=NullEditor()):
            pass


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


async def test_a_shutdown_that_runs_out_of_time_hands_the_edit_back(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    version_id = await add_edit(
        pg, "alice", "slow", params=EditParams(num_inference_steps=20, resolution=64)
    )
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, NullEditor(step_delay_s=0.1), shutdown_timeout_s=0.3):
            await events.until(lambda: any(e.version_id == version_id for e in events.seen))
        async with pg.read() as session:
            handed_back = await session.get(Version, version_id)
        assert handed_back is not None
        assert (handed_back.status, handed_back.attempts) == (VersionStatus.QUEUED, 0)
        assert [status for status, *_ in await jobs(pg)] == ["todo"]
        assert not events.outcomes(version_id)

        async with running_worker(pg, images, NullEditor()):  # the next worker runs it
            await events.until(lambda: bool(events.outcomes(version_id)))
    assert isinstance(events.outcomes(version_id)[0], JobDone)
    async with pg.read() as session:
        done = await session.get(Version, version_id)
    assert done is not None and (done.status, done.attempts) == (VersionStatus.DONE, 1)


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


# -- orphans: pending versions whose job is gone or final -----------------------------------------


async def age(database: Database, version_ids: list[int], seconds: float = 3600.0) -> None:
    """Make versions look as if they were created (and started) `seconds` ago."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    async with database.write() as session:
        await session.execute(
            update(Version).where(Version.id.in_(version_ids)).values(created_at=then)
        )
        await session.execute(
            update(Version)
            .where(Version.id.in_(version_ids), Version.started_at.is_not(None))
            .values(started_at=then)
        )


async def set_job_status(database: Database, version_id: int, status: str) -> None:
    async with database.write() as session:
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = CAST(:status AS procrastinate_job_status)"
                " WHERE args->>'version_id' = :id"
            ),
            {"status": status, "id": str(version_id)},
        )


async def statuses(database: Database, version_ids: list[int]) -> list[str]:
    async with database.read() as session:
        rows = await session.scalars(
            select(Version.status).where(Version.id.in_(version_ids)).order_by(Version.id)
        )
        return [str(status) for status in rows.all()]


async def test_an_edit_whose_job_was_deleted_is_failed_refunded_and_told_once(
    pg: Database, images: DatabaseImageStore
) -> None:
    policy = LimitPolicy(burst=5, per_minute=0.0, daily_quota=0)
    await add_photo(pg, images, "alice")
    async with pg.write() as session:
        for _ in range(2):
            await limits.consume(session, "telegram", "alice", policy, 0.0)
    orphan = await add_edit(pg, "alice", "alice at night")
    on_top = await add_edit(pg, "alice", "alice in the rain")  # its job is alive, waiting
    async with pg.write() as session:  # an operator deleted the job
        await session.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'version_id' = :id"),
            {"id": str(orphan)},
        )
    events = Events()
    editor = NullEditor()
    async with (
        RemoteJobQueue(pg) as queue,
        running_worker(pg, images, editor, orphan_grace_s=0.3),
        running_worker(pg, images, editor, orphan_grace_s=0.3),
    ):
        queue.subscribe(events)
        await events.until(lambda: bool(events.outcomes(orphan) and events.outcomes(on_top)))
        await asyncio.sleep(1.2)  # more sweeps of both workers: a second message would come now
    assert events.outcomes(orphan) == [JobFailed(orphan, EDIT_FAILED, refunded=True)]
    assert events.outcomes(on_top) == [JobFailed(on_top, "error.parent_failed", refunded=True)]
    assert editor.calls == []
    async with pg.read() as session:
        row = await session.get(UserLimit, ("telegram", "alice"))
        version = await session.get(Version, orphan)
    assert row is not None and row.tokens == 5.0  # two taken, two given back, once each
    assert version is not None and version.error_detail is not None
    assert "queue job" in version.error_detail
    assert await statuses(pg, [orphan, on_top]) == ["failed", "failed"]


async def test_a_running_edit_whose_job_failed_is_failed_after_the_grace_period(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    async with pg.write() as session:
        await lifecycle.claim_many(session, [version_id])
    await age(pg, [version_id])  # the edit itself started long ago...
    await set_job_status(pg, version_id, "failed")  # ...its last try failed just now
    worker = GpuWorker(pg, images, NullEditor(), dataclasses.replace(FAST, orphan_grace_s=0.5))
    async with RemoteJobQueue(pg) as queue:
        events = Events()
        queue.subscribe(events)
        assert await worker.fail_orphans() == []  # the job changed state within the grace period
        assert await statuses(pg, [version_id]) == ["running"]
        await asyncio.sleep(0.6)
        assert await worker.fail_orphans() == [version_id]
        assert await worker.fail_orphans() == []
        await events.until(lambda: bool(events.outcomes(version_id)))
    assert events.outcomes(version_id) == [JobFailed(version_id, EDIT_FAILED, refunded=True)]
    assert await statuses(pg, [version_id]) == ["failed"]


async def test_edits_with_a_live_job_are_never_orphans(
    pg: Database, images: DatabaseImageStore
) -> None:
    for user in ("alice", "bob"):
        await add_photo(pg, images, user)
    waiting = await add_edit(pg, "alice", "alice at night")
    running = await add_edit(pg, "bob", "bob at night")
    async with pg.write() as session:
        await lifecycle.claim_many(session, [running])
    await set_job_status(pg, running, "doing")
    await age(pg, [waiting, running])
    worker = GpuWorker(pg, images, NullEditor(), dataclasses.replace(FAST, orphan_grace_s=0.0))
    assert await worker.fail_orphans() == []
    assert await statuses(pg, [waiting, running]) == ["queued", "running"]
    await set_job_status(pg, running, "succeeded")  # final, but only just: still in grace
    worker = GpuWorker(pg, images, NullEditor(), dataclasses.replace(FAST, orphan_grace_s=60.0))
    assert await worker.fail_orphans() == []
    assert await statuses(pg, [waiting, running]) == ["queued", "running"]


async def test_edits_finishing_normally_are_never_swept(
    pg: Database, images: DatabaseImageStore
) -> None:
    users = ("alice", "bob", "carol")
    for user in users:
        await add_photo(pg, images, user)
    ids = [await add_edit(pg, user, f"{user} {n}") for n in range(3) for user in users]
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(
            pg, images, NullEditor(), orphan_grace_s=0.0, heartbeat_s=0.05, concurrency=2
        ):
            await events.until(lambda: all(events.outcomes(v) for v in ids))
            await asyncio.sleep(0.3)
    assert all(isinstance(e, JobDone) for v in ids for e in events.outcomes(v))
    assert [len(events.outcomes(v)) for v in ids] == [1] * len(ids)


async def test_workers_sweeping_at_once_fail_each_orphan_once(
    pg: Database, images: DatabaseImageStore
) -> None:
    users = ("alice", "bob", "carol", "dave")
    for user in users:
        await add_photo(pg, images, user)
    ids = [await add_edit(pg, user, f"{user} lost") for user in users]
    async with pg.write() as session:
        await session.execute(text("DELETE FROM procrastinate_jobs"))
    await age(pg, ids)
    options = dataclasses.replace(FAST, orphan_grace_s=1.0)
    workers = [GpuWorker(pg, images, NullEditor(), options) for _ in range(4)]
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        swept = await asyncio.gather(*(worker.fail_orphans() for worker in workers))
        swept += await asyncio.gather(*(worker.fail_orphans() for worker in workers))
        await events.until(lambda: all(events.outcomes(v) for v in ids))
        await asyncio.sleep(0.3)
    assert sorted(v for found in swept for v in found) == ids
    assert [len(events.outcomes(v)) for v in ids] == [1] * len(ids)
    assert await statuses(pg, ids) == ["failed"] * len(ids)
