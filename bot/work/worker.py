"""`pix2chat worker`: a procrastinate worker that owns one GPU and runs edit jobs.

Several workers on several hosts share one queue in PostgreSQL. Each loads the model once, in
its one model thread, and runs up to `concurrency` jobs at a time; their samples meet in a
`MicroBatcher`, so compatible edits of different users share a pipeline call while the event
loop stays free for procrastinate's heartbeats, progress notifications and new jobs.

A job is idempotent by version id: it claims the version in one locked UPDATE and records the
result only if the version is still running, so a job run twice (a worker thought dead that
was not) never writes two results nor sends two messages. The "done" notification is sent in
the transaction that records the result.

Crash recovery: every worker also looks, every heartbeat, for jobs of workers whose heartbeat
stopped `stalled_timeout_s` ago (SIGKILL, power loss) and hands them back to the queue, so
another worker runs them; a version whose runs crashed `max_attempts` times is failed and its
user told. Orphans too: a pending version whose job is gone (deleted by an operator) or already
final (its last try failed while the database was unreachable, so the failure was never
recorded) is failed, refunded and its user told once `orphan_grace_s` has passed, so nobody
waits forever. On SIGTERM a worker stops fetching, lets running edits finish for
`shutdown_timeout_s`, then hands what is left back to the queue.

Database outages (PostgreSQL restarted or failed over): a result computed meanwhile is kept
and its recording retried until the database is back (`outage_timeout_s`; bot/work/outages.py);
procrastinate's loop, which stops when its heartbeat or listener loses the server, is started
again once the database answers, with the model still loaded. Past the timeout the job fails
as any crash does: the queue runs it again, and idempotence keeps the user's view exactly-once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work import pgqueue, queue_sql
from bot.work.batching import ModelThread, Output, Work
from bot.work.job_loop import keep_serving, stop_signals
from bot.work.jobs import JobDone, JobFailed, JobProgress, JobStarted, failure_key
from bot.work.metrics import Metrics
from bot.work.microbatcher import MicroBatcher
from bot.work.outages import (
    OUTAGE_TIMEOUT_S,
    PatientImages,
    brief_outage_logs,
    through_outage,
)
from bot.work.pgpool import SteadyPool
from editor.base import Editor
from editor.finishing.finisher import Finisher
from editor.scoring import CandidateScorer
from editor.segment import Segmenter
from storage import lifecycle, limits, regions, tree
from storage.database import Database, brief, outage
from storage.images import ImageStore
from storage.lifecycle import EDIT_FAILED
from storage.models import Conversation, Version

log = logging.getLogger(__name__)

JOB_RETRIES = 10
"""Retries of a job whose bookkeeping failed (database unreachable...), a second apart."""
ORPHAN_LOST = "its queue job is gone or finished without a result"
ORPHAN_SWEEP_LIMIT = 100
"""Versions failed per sweep at most; the next heartbeat takes the rest."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs; defaults suit one GPU."""

    concurrency: int = 4
    max_wait_ms: int = 20
    max_attempts: int = 3
    heartbeat_s: float = 5.0
    stalled_timeout_s: float = 30.0
    shutdown_timeout_s: float = 300.0
    progress_interval_s: float = 0.5
    orphan_grace_s: float = 120.0
    poll_interval_s: float = 1.0
    outage_timeout_s: float = OUTAGE_TIMEOUT_S
    develop: bool = True
    name: str | None = None
    queues: tuple[str, ...] = (pgqueue.QUEUE,)
    """The queues served: one model's (`pix2chat worker --model`), or every configured one."""


class GpuWorker:
    """Runs edit jobs from the shared queue until stopped (SIGTERM / SIGINT).

    Args:
        database: the shared PostgreSQL database.
        images: an image store every process can read (DatabaseImageStore by default).
        editor: the model; loaded once, in the worker's model thread.
        options: concurrency, timeouts and the worker's name.
        segmenter: masks `/keep` and `/only` regions; loaded on first use, in the model thread.
    """

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        editor: Editor,
        options: WorkerOptions | None = None,
        segmenter: Segmenter | None = None,
        finisher: Finisher | None = None,
        metrics: Metrics | None = None,
        scorer: CandidateScorer | None = None,
    ) -> None:
        if database.is_sqlite:
            raise ValueError("`pix2chat worker` needs PostgreSQL (PIX2CHAT_DATABASE_URL)")
        self.database = database
        self.images = images
        self.editor = editor
        self.segmenter = segmenter
        self.options = options or WorkerOptions()
        self.finisher = finisher
        self.metrics = metrics or Metrics()
        self.scorer = scorer
        self.name = self.options.name or f"{socket.gethostname()}-{os.getpid()}"
        self._batcher: MicroBatcher | None = None
        self._last_progress: dict[int, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._running_jobs: set[int] = set()
        """Queue job ids this process is running now (they outlive a restart of the job loop)."""

    def make_app(self) -> App:
        """The procrastinate app: one task, on the pix2chat queue."""
        size = self.options.concurrency + 3  # jobs, fetcher, heartbeat, stalled sweep
        connector = PsycopgConnector(
            conninfo=pgqueue.libpq_url(self.database.url),
            min_size=1,
            max_size=size,
            pool_factory=SteadyPool,
        )
        app = App(connector=connector)
        app.task(
            name=pgqueue.TASK,
            queue=pgqueue.QUEUE,
            pass_context=True,
            retry=RetryStrategy(max_attempts=JOB_RETRIES, wait=1),
        )(self._edit)
        return app

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Load the model, then serve jobs until a stop signal (or cancellation)."""
        model = ModelThread()
        stop = asyncio.Event()
        try:
            self.metrics.model_ready.set(0)
            await model.run(self.editor.load)
            self.metrics.model_ready.set(1)
            app = self.make_app()
            batcher = MicroBatcher(
                model,
                self.editor,
                PatientImages(self.images, self.options.outage_timeout_s),
                max_batch=self.options.concurrency,
                max_wait_ms=self.options.max_wait_ms,
                on_start=self._started,
                on_progress=self._progress,
                develop=self.options.develop,
                segmenter=self.segmenter,
                finisher=self.finisher,
                metrics=self.metrics,
                scorer=self.scorer,
            )
            async with app.open_async(), batcher:
                self._batcher = batcher
                sweeper = asyncio.create_task(self._sweep_stalled(app), name="stalled-sweep")
                log.info("worker %s ready: %d job(s) at a time", self.name, batcher.max_batch)
                try:
                    with stop_signals(stop, install_signal_handlers):
                        await self._serve(app, stop)
                finally:
                    sweeper.cancel()
                    await asyncio.gather(sweeper, return_exceptions=True)
                    await asyncio.gather(*self._background, return_exceptions=True)
        finally:
            self._batcher = None
            model.close()
        log.info("worker %s stopped", self.name)

    async def _serve(self, app: App, stop: asyncio.Event) -> None:
        library_logs = ("procrastinate.worker", f"procrastinate.worker.{self.name}")
        with brief_outage_logs(*library_logs, "procrastinate.utils", "procrastinate.manager"):
            await keep_serving(lambda: self._procrastinate(app), stop, self.database, self.name)

    async def _procrastinate(self, app: App) -> None:
        await app.run_worker_async(
            queues=list(self.options.queues),
            name=self.name,
            concurrency=self.options.concurrency,
            update_heartbeat_interval=self.options.heartbeat_s,
            stalled_worker_timeout=self.options.stalled_timeout_s,
            shutdown_graceful_timeout=self.options.shutdown_timeout_s,
            fetch_job_polling_interval=self.options.poll_interval_s,
            delete_jobs="always",
            install_signal_handlers=False,  # ours (_stop_signals) tell a stop from an outage
        )

    # ----- one job ---------------------------------------------------------------------------

    async def _edit(self, context: JobContext, version_id: int) -> None:
        """The procrastinate task: claim, compute (batched), record; idempotent by version."""
        job_id = context.job.id
        assert job_id is not None  # a fetched job always has its id
        self._running_jobs.add(job_id)
        try:
            await self._edit_once(context, version_id)
        finally:
            self._running_jobs.discard(job_id)

    async def _edit_once(self, context: JobContext, version_id: int) -> None:
        try:
            work = await self._claim(version_id)
            if work is None:
                return
            started = time.perf_counter()
            try:
                assert self._batcher is not None
                output = await self._batcher.run(work)
            except asyncio.CancelledError:
                await asyncio.shield(self._hand_back(version_id))
                raise
            except Exception as error:
                if outage(error) is not None:
                    raise  # storage, not the edit: the job is retried (below)
                await self._fail(version_id, error)
                return
            if self._background:  # progress of this edit must not arrive after its result
                await asyncio.wait(list(self._background), timeout=1.0)
            await self._record(output, time.perf_counter() - started)
        except Exception:
            if (context.job.attempts or 0) + 1 >= JOB_RETRIES:
                log.exception("edit %d: giving up after %d tries", version_id, JOB_RETRIES)
                await self._fail(version_id, RuntimeError("the worker could not record it"))
                return
            raise

    async def _claim(self, version_id: int) -> Work | None:
        """Running from now on, or None if there is nothing (left) to do for this version.

        The rules (pending only, at most `max_attempts`, parent finished) are
        `lifecycle.claim`'s; what it fails instead is refunded and its users told here.
        """
        async with self.database.write() as session:
            claim = await lifecycle.claim(session, version_id, self.options.max_attempts)
            if claim.failed:
                log.error("edit %d failed: %s", version_id, claim.failed[0].error_detail)
                await self._tell_failed(session, claim.failed, EDIT_FAILED)
            version, parent = claim.version, claim.parent
            if version is None or parent is None:
                return None
            assert parent.image_sha is not None and parent.width and parent.height
            constraints = await regions.of_versions(session, [version_id])
            return Work(
                version_id,
                parent.image_sha,
                (parent.width, parent.height),
                version.instruction or "",
                version.edit_params(),
                regions=constraints.get(version_id, ()),
                finish=version.finishing(),
                queued_at=version.created_at,
                scored=version.set_id is not None,
            )

    async def _record(self, output: Output, seconds: float) -> None:
        """Record a computed result; through a database outage, for `outage_timeout_s`."""

        async def record() -> set[int]:
            async with self.database.write() as session:
                recorded = await lifecycle.mark_done_many(
                    session,
                    [
                        lifecycle.Result(
                            output.version_id,
                            output.image_sha,
                            output.size,
                            output.raw_sha,
                            output.score,
                        )
                    ],
                )
                if recorded:
                    await regions.record_masks(session, {output.version_id: output.masks})
                    await pgqueue.notify(session, [JobDone(output.version_id, seconds)])
            return recorded

        recorded = await through_outage(
            record, f"recording edit {output.version_id}", self.options.outage_timeout_s
        )
        if recorded:
            log.info("edit %d done in %.2f s", output.version_id, seconds)
            return
        async with self.database.read() as session:  # forgotten meanwhile, or a double run
            used = await tree.images_in_use(session, output.shas)
        for sha in output.shas:
            if sha not in used:
                await asyncio.to_thread(self.images.delete, sha)

    async def _fail(self, version_id: int, error: BaseException) -> None:
        key = failure_key(error)
        log.error("edit %d failed: %r", version_id, error)
        async with self.database.write() as session:
            await self._fail_in(session, version_id, key, repr(error)[:2000])

    async def _fail_in(
        self, session: AsyncSession, version_id: int, key: str, detail: str
    ) -> list[int]:
        """Fail the version and the edits built on it, give the edits back, tell the users.

        Returns the ids of the versions failed (none if it was no longer pending).
        """
        failed = await lifecycle.fail(session, version_id, key, detail)
        return await self._tell_failed(session, failed, key)

    async def _tell_failed(
        self, session: AsyncSession, failed: Sequence[Version], key: str
    ) -> list[int]:
        """Give the failed edits back to their users' limits and tell the frontends."""
        for version in failed:
            conversation = await session.get(Conversation, version.conversation_id)
            if conversation is not None:
                await limits.refund(session, conversation.platform, conversation.user_id)
        await pgqueue.notify(
            session,
            [JobFailed(v.id, v.error_key or key, refunded=True) for v in failed],
        )
        return [v.id for v in failed]

    async def _hand_back(self, version_id: int) -> None:
        """Shutdown took too long: the version waits for the next worker (not a crash)."""
        async with self.database.write() as session:
            await lifecycle.hand_back(session, version_id)
        log.warning("edit %d handed back to the queue", version_id)

    # ----- events ----------------------------------------------------------------------------

    async def _started(self, version_ids: list[int]) -> None:
        log.info("edit(s) %s started (batch of %d)", version_ids, len(version_ids))
        async with self.database.write() as session:
            await pgqueue.notify(session, [JobStarted(v, len(version_ids)) for v in version_ids])

    def _progress(self, version_ids: list[int], step: int, total: int) -> None:
        """Throttled: chats show progress at most about once a second anyway.

        The last step is not sent: the result follows at once.
        """
        key = version_ids[0]
        if step >= total:
            self._last_progress.pop(key, None)
            return
        now = time.monotonic()
        if now - self._last_progress.get(key, 0.0) < self.options.progress_interval_s:
            return
        self._last_progress[key] = now
        task = asyncio.create_task(self._send_progress(version_ids, step, total))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_progress(self, version_ids: list[int], step: int, total: int) -> None:
        try:
            async with self.database.write() as session:
                await pgqueue.notify(session, [JobProgress(v, step, total) for v in version_ids])
        except Exception as error:
            if outage(error) is None:
                log.exception("could not send progress")

    # ----- crash recovery --------------------------------------------------------------------

    async def _sweep_stalled(self, app: App) -> None:
        """Hand the jobs of dead workers back to the queue and fail orphans, every heartbeat."""
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            try:
                await self.retry_stalled(app)
                await self.fail_orphans()
            except Exception as error:
                if outage(error) is None:
                    log.exception("stalled-job or orphan sweep failed")
                else:  # the database is away: the next heartbeat's sweep tries again
                    log.debug("sweeps skipped: database unavailable (%s)", brief(error))

    async def fail_orphans(self) -> list[int]:
        """One orphan sweep; the ids of the versions it failed (dependants included).

        Idempotent and safe with any number of workers: one sweeps at a time, the rows are
        locked, and `lifecycle.fail` only fails what is still pending.
        """
        failed: list[int] = []
        async with self.database.write() as session:
            if not await session.scalar(queue_sql.SWEEP_LOCK):
                return failed
            orphans = (
                await session.scalars(
                    queue_sql.ORPHANS,
                    {
                        "grace": self.options.orphan_grace_s,
                        "task": pgqueue.TASK,
                        "limit": ORPHAN_SWEEP_LIMIT,
                    },
                )
            ).all()
            for version_id in orphans:
                failed.extend(await self._fail_in(session, version_id, EDIT_FAILED, ORPHAN_LOST))
        if failed:
            log.error("failed orphaned edit(s) %s: no queue job left to run them", failed)
        return failed

    async def retry_stalled(self, app: App) -> list[int]:
        """One sweep; the ids of the jobs handed back."""
        stalled = [
            job
            for queue in self.options.queues
            for job in await app.job_manager.get_stalled_jobs(
                queue=queue, seconds_since_heartbeat=self.options.stalled_timeout_s
            )
        ]
        retried = []
        for job in stalled:
            if job.id in self._running_jobs:
                # Still running here: its registration went stale while the job loop was
                # restarted after a database outage; handing it back would run it twice.
                continue
            try:
                await app.job_manager.retry_job(job)
            except Exception as error:  # another worker's sweep got there first
                log.debug("stalled job %s not retried: %s", job.id, error)
                continue
            assert job.id is not None
            retried.append(job.id)
            log.warning("job %s of a dead worker goes back to the queue", job.id)
        if retried:
            await app.job_manager.prune_stalled_workers(self.options.stalled_timeout_s)
        return retried
