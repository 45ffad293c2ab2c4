"""The procrastinate GPU worker on real PostgreSQL: idempotency, batching, failures, orphans.

A `GpuWorker` runs in the test process here (with the NullEditor), so each rule is checked in
a second or two; tests/scaleout/test_deployments.py runs the same code as real processes.
Frontend-side events are the ones a `RemoteJobQueue` hears over LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import exc, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.service.replies import Reply
from bot.work import outages, pgqueue
from bot.work.batching import Output
from bot.work.jobs import Job, JobDone, JobFailed
from bot.work.remote import RemoteJobQueue
from bot.work.worker import EDIT_FAILED, GpuWorker
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage import lifecycle, limits
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.limits import LimitPolicy
from storage.models import UserLimit, Version, VersionStatus
from storage.types import Actor
from tests.fixtures_queue import (
    FAST,
    TIMEOUT_S,
    Events,
    add_edit,
    add_photo,
    jobs,
    running_worker,
)
from tests.scaleout.harness import PARAMS, frontend, photo


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
    assert images.count()[0] == 3  # the photo and one result (developed, and raw)


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
        async with running_worker(pg, images, editor, max_wait_ms=300) as worker:
            await events.until(lambda: all(events.outcomes(v) for v in ids))

    assert sorted(len(call) for call in editor.calls) == [1, 4]
    assert editor.calls[-1][0].instruction == "alice again"
    # The worker's metrics (served at PIX2CHAT_METRICS_PORT by `pix2chat worker`).
    sample = worker.metrics.registry.get_sample_value
    assert sample("pix2chat_edits_total", {"outcome": "done"}) == 5
    assert sample("pix2chat_batch_size_count") == 2
    assert sample("pix2chat_batch_size_sum") == 5
    assert sample("pix2chat_queue_wait_seconds_count") == 5
    assert sample("pix2chat_edit_duration_seconds_count") == 5
    assert (sample("pix2chat_gpu_seconds_total") or 0) > 0
    assert sample("pix2chat_model_ready") == 1
    assert sample("pix2chat_edits_running") == 0


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


def test_worker_refuses_sqlite_with_a_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["worker", "--null-editor"],
        env={"PIX2CHAT_DATA_DIR": str(tmp_path), "PIX2CHAT_DATABASE_URL": ""},
    )
    assert result.exit_code == 2, result.output
    assert "PIX2CHAT_DATABASE_URL=postgresql://" in result.output
    assert "Traceback" not in result.output


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


# ----- database outages ----------------------------------------------------------------------


def _connection_lost() -> exc.OperationalError:
    return exc.OperationalError(
        "COMMIT", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )


class FlakyWrites:
    """The database, but its next `failures` write transactions fail as if the server went."""

    def __init__(self, database: Database, failures: int) -> None:
        self.database = database
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self.database, name)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        if self.failures:
            self.failures -= 1
            raise _connection_lost()
        async with self.database.write() as session:
            yield session


async def test_a_result_computed_while_the_database_is_away_is_recorded_once_it_is_back(
    pg: Database, images: DatabaseImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outages, "BACKOFF_S", (0.05,))
    await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    worker = GpuWorker(pg, images, NullEditor(), FAST)
    work = await worker._claim(version_id)
    assert work is not None
    sha = images.put(photo("result"))
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        flaky = FlakyWrites(pg, failures=3)
        worker.database = flaky  # type: ignore[assignment]
        await worker._record(Output(version_id, sha, (64, 48)), 1.0)
        await events.until(lambda: bool(events.outcomes(version_id)))
        await asyncio.sleep(0.3)  # a second "done" would arrive now

    assert flaky.failures == 0
    assert events.outcomes(version_id) == [JobDone(version_id, 1.0)]
    async with pg.read() as session:
        version = await session.get(Version, version_id)
    assert version is not None and (version.status, version.image_sha) == ("done", sha)


async def test_the_job_loop_starts_again_after_losing_the_database_the_model_loaded_once(
    pg: Database, images: DatabaseImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = NullEditor()
    loads: list[int] = []
    monkeypatch.setattr(editor, "load", lambda: loads.append(1))
    worker = GpuWorker(pg, images, editor, FAST)
    loops: list[int] = []
    forever = asyncio.Event()

    async def procrastinate_loop(_app: object) -> None:
        loops.append(1)
        if len(loops) == 1:  # fetching raised, wrapped as procrastinate wraps it
            wrapped = RuntimeError("connector exception")
            wrapped.__cause__ = psycopg.OperationalError("connection refused")
            raise wrapped
        if len(loops) == 2:  # its heartbeat lost the server: procrastinate stopped itself
            return
        await forever.wait()

    monkeypatch.setattr(worker, "_procrastinate", procrastinate_loop)
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    async with asyncio.timeout(TIMEOUT_S):
        while len(loops) < 3:  # noqa: ASYNC110 (polls a list the fake appends to)
            await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert loads == [1]


async def test_a_job_loop_that_fails_for_another_reason_stops_the_worker(
    pg: Database, images: DatabaseImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = GpuWorker(pg, images, NullEditor(), FAST)

    async def broken(_app: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(worker, "_procrastinate", broken)
    with pytest.raises(ValueError, match="a bug"):
        await worker.run(install_signal_handlers=False)


async def test_an_orphan_sweep_that_loses_the_database_changes_nothing(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    worker = GpuWorker(pg, images, NullEditor(), dataclasses.replace(FAST, orphan_grace_s=0))
    worker.database = FlakyWrites(pg, failures=1)  # type: ignore[assignment]
    with pytest.raises(exc.OperationalError):
        await worker.fail_orphans()
    async with pg.read() as session:
        version = await session.get(Version, version_id)
    assert version is not None and version.status == "queued"


class _StalledJobs:
    """procrastinate's job manager, reduced to the two calls the stalled-job sweep makes."""

    def __init__(self, job_ids: list[int]) -> None:
        self.stalled = [dataclasses.make_dataclass("StalledJob", ["id"])(i) for i in job_ids]
        self.retried: list[int] = []

    async def get_stalled_jobs(self, **_: object) -> list[object]:
        return self.stalled

    async def retry_job(self, job: object) -> None:
        self.retried.append(job.id)  # type: ignore[attr-defined]

    async def prune_stalled_workers(self, _seconds: float) -> None:
        return None


async def test_the_stalled_sweep_never_hands_back_a_job_this_worker_still_runs(
    pg: Database, images: DatabaseImageStore
) -> None:
    """After a database outage the job loop restarts under a new registration; the old one's
    heartbeat is stale, but its jobs still run here and must not run a second time."""
    worker = GpuWorker(pg, images, NullEditor(), FAST)
    manager = _StalledJobs([7, 8])
    worker._running_jobs.add(7)
    app = type("App", (), {"job_manager": manager})()

    assert await worker.retry_stalled(app) == [8]  # type: ignore[arg-type]
    assert manager.retried == [8]
