"""The embedded worker: a fair, micro-batching, durable in-process scheduler.

Job state lives in the database (a version row is its job); this class keeps an in-memory index
of queued jobs for ordering (`FairLine`, the fairness policy) and runs them through the shared
`BatchEngine`, whose model thread keeps the event loop serving chats, progress and heartbeats
during long generations. What is particular here is the bookkeeping: claiming, recording and
failing versions in the database, recovering after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from datetime import datetime
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work.batching import BatchEngine, ModelThread, Output, Work
from bot.work.fairness import FairLine
from bot.work.jobs import (
    Job,
    JobDone,
    JobEvent,
    JobEvents,
    JobFailed,
    JobListener,
    JobPreview,
    JobProgress,
    JobStarted,
    failure_key,
)
from bot.work.metrics import Metrics
from bot.work.outages import OUTAGE_TIMEOUT_S, through_outage
from bot.work.warmup import Warmup
from editor.base import Editor
from editor.finishing.finisher import Finisher
from editor.regions import Region
from editor.scoring import CandidateScorer
from editor.segment import Segmenter
from storage import lifecycle, regions, tree
from storage.database import Database, outage
from storage.images import ImageStore
from storage.lifecycle import EDIT_FAILED
from storage.models import Version

log = logging.getLogger(__name__)

STORAGE_RETRIES = 5
"""Times an edit runs again after storage failed under it (locked, disk full) before failing."""
STORAGE_RETRY_S = 1.0
"""The first pause before it runs again; each next one doubles (1, 2, 4, 8, 16 s)."""


class EmbeddedScheduler:
    """Round-robin across users, one job per user at a time, compatible jobs batched.

    Fairness: a user's second job never runs before another user's first; each served user
    goes to the back of the line. Batching: the first job in line picks the batch signature
    (size, steps, guidances); the next users' first jobs with the same signature join, up to
    `max_batch`, after waiting at most `max_wait_ms` for company. The rules live in
    bot/work/fairness.py (`FairLine`), the loop in bot/work/batching.py (`BatchEngine`).
    """

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        editor: Editor,
        *,
        max_batch: int = 4,
        max_wait_ms: int = 20,
        max_attempts: int = 3,
        outage_timeout_s: float = OUTAGE_TIMEOUT_S,
        develop: bool = True,
        segmenter: Segmenter | None = None,
        finisher: Finisher | None = None,
        metrics: Metrics | None = None,
        load_in_background: bool = False,
        scorer: CandidateScorer | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.database = database
        self.images = images
        self.editor = editor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_attempts = max_attempts
        self.outage_timeout_s = outage_timeout_s
        self.metrics = metrics or Metrics()
        self.warmup = Warmup()
        self.load_in_background = load_in_background
        self._loader: asyncio.Task[None] | None = None
        self._storage_tries: dict[int, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._line = FairLine()
        self._events = JobEvents()
        self._model = ModelThread()
        self._engine: BatchEngine[Job] = BatchEngine(
            self,
            self._model,
            editor,
            images,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            on_progress=self._progress,
            on_preview=self._preview,
            develop=develop,
            segmenter=segmenter,
            scorer=scorer,
            name="pix2chat-scheduler",
            finisher=finisher,
            metrics=self.metrics,
        )

    # ----- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> EmbeddedScheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load the model in its thread, reload queued jobs from the database, start serving.

        With `load_in_background` the model loads while edits are already accepted: they wait
        in line, `warmup` says how the load goes, and serving starts once it is done (a load
        that fails is reported by `warmup`, not raised here).
        """
        if not self.load_in_background:
            await self._load()
            await self._recover()
            self._engine.start()
            return
        await self._recover()
        self._loader = asyncio.create_task(self._load_then_serve(), name="pix2chat-model-load")

    async def _load(self) -> None:
        self.metrics.model_ready.set(0)
        try:
            await self._model.run(self.editor.load)
        except BaseException as error:
            self.warmup.failed(error)
            raise
        self.warmup.loaded()
        self.metrics.model_ready.set(1)
        log.info("model ready after %.1f s", self.warmup.elapsed_s())

    async def _load_then_serve(self) -> None:
        try:
            await self._load()
        except Exception as error:
            log.error("the model failed to load: %s", error)
            return
        self._engine.start()

    async def stop(self) -> None:
        """Finish the running batch, then stop; queued jobs stay in the database."""
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()  # the load itself finishes in the model thread (close waits)
            await asyncio.gather(self._loader, return_exceptions=True)
        await self._engine.drain()
        for task in list(self._background):
            task.cancel()  # a pending retry: its version is queued in the database
        await asyncio.gather(*self._background, return_exceptions=True)
        self._model.close()

    async def _recover(self) -> None:
        """Requeue jobs a crash interrupted; fail those that already crashed too often."""
        async with self.database.write() as session:
            await lifecycle.requeue_interrupted(session)
            rows = await lifecycle.queued_jobs(session)
            exhausted = [v for v, _ in rows if v.attempts >= self.max_attempts]
            failed: list[Version] = []
            for version in exhausted:
                failed.extend(
                    await lifecycle.fail(
                        session, version.id, EDIT_FAILED, lifecycle.TOO_MANY_ATTEMPTS
                    )
                )
            failed_ids = {v.id for v in failed}
            parent_ids = {v.parent_id for v, _ in rows if v.parent_id is not None}
            set_sizes = Counter(
                v.set_id for v, _ in rows if v.set_id is not None and v.id not in failed_ids
            )
            sizes = await lifecycle.done_sizes(session, parent_ids)
            jobs = [
                Job(
                    version_id=version.id,
                    user_key=f"{conversation.platform}:{conversation.user_id}",
                    parent_id=version.parent_id,
                    parent_size=sizes.get(version.parent_id),
                    instruction=version.instruction or "",
                    params=version.edit_params(),
                    finish=version.finishing(),
                    set_id=version.set_id,
                    scored=version.set_id is not None,
                    set_size=set_sizes[version.set_id] if version.set_id is not None else 1,
                )
                for version, conversation in rows
                if version.id not in failed_ids and version.parent_id is not None
            ]
        for version in failed:
            await self._emit(JobFailed(version.id, version.error_key or EDIT_FAILED))
        for job in jobs:
            self._enqueue(job)
        if jobs:
            log.info("recovered %d queued edit(s) from the database", len(jobs))

    # ----- JobQueue --------------------------------------------------------------------------

    def subscribe(self, listener: JobListener) -> None:
        self._events.subscribe(listener)

    async def defer_in(self, session: AsyncSession, job: Job) -> None:
        """Nothing to add: embedded, the version row is the job."""

    async def submit(self, job: Job) -> None:
        """Queue a committed job; fills in the parent size if the parent finished meanwhile."""
        if job.version_id in self._line:
            return
        if job.parent_size is None and job.parent_id not in self._line:
            async with self.database.read() as session:
                own = await session.get(Version, job.version_id)
                if own is None or not own.is_queued:
                    return
                sizes = await lifecycle.done_sizes(session, {job.parent_id})
            if job.parent_id not in sizes:
                return  # the parent failed or vanished; lifecycle.fail already cascaded
            job = dataclasses.replace(job, parent_size=sizes[job.parent_id])
        self._enqueue(job)

    def discard(self, version_ids: set[int]) -> None:
        self._line.discard(version_ids)

    async def position(self, version_id: int) -> int | None:
        """Place in line: 0 = running now; otherwise how many jobs run before it, plus one."""
        return self._line.position(version_id)

    async def depth(self) -> int:
        return len(self._line)

    @property
    def model_thread(self) -> ModelThread:
        """The thread the model runs in (the segmenter runs there too, see RegionMasker)."""
        return self._model

    @property
    def batch_sizes(self) -> list[int]:
        """The size of every batch run so far, in order (for benchmarks)."""
        return self._engine.batch_sizes

    @property
    def model_thread_s(self) -> float:
        """Time spent in the model thread so far (for benchmarks)."""
        return self._engine.model_thread_s

    def _enqueue(self, job: Job) -> None:
        self._line.enqueue(job)
        self._engine.wake()

    # ----- BatchOwner: the engine's line and bookkeeping -------------------------------------

    def next_batch(self, max_batch: int | None = None) -> list[Job]:
        """The jobs to run next, without removing them (exposed for tests and benchmarks)."""
        return self._line.next_batch(max_batch or self.max_batch)

    def take(self, batch: list[Job]) -> None:
        self._line.take(batch)

    def finish(self, batch: list[Job]) -> None:
        self._line.finish(batch)

    async def begin(self, batch: list[Job]) -> list[tuple[Job, Work]]:
        """Claim the batch in the database; the jobs still queued, with their parents' images."""
        async with self.database.write() as session:
            claimed = set(await lifecycle.claim_many(session, [job.version_id for job in batch]))
            wanted = {job.parent_id for job in batch} | {job.version_id for job in batch}
            rows = (await session.scalars(select(Version).where(Version.id.in_(wanted)))).all()
            parents = {v.id: v.image_sha for v in rows}
            queued_at = {v.id: v.created_at for v in rows}
            constraints = await regions.of_versions(session, claimed)
        batch = [job for job in batch if job.version_id in claimed and parents.get(job.parent_id)]
        for job in batch:
            await self._emit(JobStarted(job.version_id, len(batch)))
        return [
            (
                job,
                _work(
                    job,
                    parents[job.parent_id] or "",
                    constraints.get(job.version_id, ()),
                    queued_at.get(job.version_id),
                ),
            )
            for job in batch
        ]

    async def succeeded(self, results: list[tuple[Job, Output]], seconds: float) -> None:
        await self._complete([output for _, output in results], seconds)

    async def failed(self, item: Job, error: Exception) -> None:
        if outage(error) is not None:  # the disk, not the edit: run it again later
            await self._retry_later([item], error)
            return
        await self._fail(item, error)

    async def crashed(self, batch: list[Job], error: Exception) -> None:
        if outage(error) is not None:
            await self._retry_later(batch, error)
            return
        log.error("scheduler batch crashed; its jobs stay in the database", exc_info=error)

    async def _retry_later(self, batch: list[Job], error: Exception) -> None:
        """Storage failed under these jobs (SQLite locked, disk full): run them again later.

        Their versions go back to queued (the attempt does not count: the edit is not at
        fault) and their jobs back to the front of their users' lines after a pause; after
        `STORAGE_RETRIES` such pauses an edit fails with the outage's message, so nobody waits
        forever on a disk that stays full.
        """
        kind = outage(error)
        retry: list[Job] = []
        give_up: list[Job] = []
        for job in batch:
            tries = self._storage_tries.get(job.version_id, 0)
            (give_up if tries >= STORAGE_RETRIES else retry).append(job)
        try:
            async with self.database.write() as session:
                retry = [job for job in retry if await lifecycle.hand_back(session, job.version_id)]
        except Exception as hand_back_error:  # stays running: requeued at the next start
            log.error(
                "edit(s) %s: storage %s; not handed back either (%s)",
                [j.version_id for j in batch],
                kind,
                hand_back_error,
            )
            return
        for job in give_up:
            self._storage_tries.pop(job.version_id, None)
            try:
                await self._fail(job, error)
            except Exception as fail_error:
                log.error("edit %d: not failed either (%s)", job.version_id, fail_error)
        if not retry:
            return
        tries = max(self._storage_tries.get(job.version_id, 0) for job in retry)
        delay = STORAGE_RETRY_S * 2**tries
        log.warning(
            "edit(s) %s: storage %s (%s); running them again in %.0f s",
            [j.version_id for j in retry],
            kind,
            error,
            delay,
        )
        for job in retry:
            self._storage_tries[job.version_id] = self._storage_tries.get(job.version_id, 0) + 1
        task = asyncio.create_task(self._requeue_after(retry, delay))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _requeue_after(self, jobs: list[Job], delay: float) -> None:
        await asyncio.sleep(delay)
        for job in reversed(jobs):
            self._line.enqueue(job, first=True)
        self._engine.wake()

    # ----- bookkeeping -----------------------------------------------------------------------

    def _progress(self, version_ids: list[int], step: int, total: int) -> None:
        for version_id in version_ids:
            self._events.emit_soon(JobProgress(version_id, step, total))

    def _preview(self, version_id: int, step: int, total: int, jpeg: bytes) -> None:
        self._events.emit_soon(JobPreview(version_id, step, total, jpeg))

    async def _complete(self, outputs: list[Output], seconds: float) -> None:
        """Record computed results; through a passing lock or full disk, for a while."""

        async def record() -> set[int]:
            async with self.database.write() as session:
                done = await lifecycle.mark_done_many(
                    session,
                    [
                        lifecycle.Result(o.version_id, o.image_sha, o.size, o.raw_sha, o.score)
                        for o in outputs
                    ],
                )
                await regions.record_masks(
                    session, {o.version_id: o.masks for o in outputs if o.version_id in done}
                )
                return done

        recorded = await through_outage(
            record, f"recording edit(s) {[o.version_id for o in outputs]}", self.outage_timeout_s
        )
        for output in outputs:
            self._fill_parent_size(output.version_id, output.size)
        orphans = [sha for o in outputs if o.version_id not in recorded for sha in o.shas]
        if orphans:
            await self._delete_unreferenced(orphans)
        for output in outputs:
            if output.version_id in recorded:
                await self._emit(JobDone(output.version_id, seconds))

    def _fill_parent_size(self, parent_id: int, size: tuple[int, int]) -> None:
        """Dependents of a finished version learn their input size and become runnable."""
        self._line.parent_done(parent_id, size)

    async def _delete_unreferenced(self, shas: list[str]) -> None:
        """Results of versions forgotten while they ran must not linger on disk."""
        async with self.database.read() as session:
            used = await tree.images_in_use(session, shas)
        for sha in shas:
            if sha not in used:
                self.images.delete(sha)

    async def _fail(self, job: Job, error: BaseException) -> None:
        key = failure_key(error)
        log.error("edit %d failed: %r", job.version_id, error)
        async with self.database.write() as session:
            failed = await lifecycle.fail(session, job.version_id, key, repr(error)[:2000])
        dead = {version.id for version in failed}
        self.discard(dead - {job.version_id})
        self._line.forget_parents(dead)
        for version in failed:
            await self._emit(JobFailed(version.id, version.error_key or key))

    async def _emit(self, event: JobEvent) -> None:
        await self._events.emit(event)


def _work(
    job: Job,
    parent_sha: str,
    constraints: tuple[Region, ...] = (),
    queued_at: datetime | None = None,
) -> Work:
    """What the model computes for a claimed job (only runnable jobs are batched)."""
    assert job.parent_size is not None
    return Work(
        job.version_id,
        parent_sha,
        job.parent_size,
        job.instruction,
        job.params,
        regions=constraints,
        finish=job.finish,
        queued_at=queued_at,
        scored=job.scored,
    )
