"""The embedded worker: a fair, micro-batching, durable in-process scheduler.

Job state lives in the database (a version row is its job); this class keeps an in-memory index
of queued jobs for ordering. The model runs in one dedicated thread so the event loop keeps
serving chats, progress and heartbeats during long generations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work.batching import (
    ModelThread,
    Output,
    PreviewSink,
    Work,
    batch_signature,
    compute_batch,
    threadsafe_progress,
)
from bot.work.jobs import (
    Job,
    JobDone,
    JobEvent,
    JobFailed,
    JobListener,
    JobPreview,
    JobProgress,
    JobStarted,
)
from editor.base import Editor, ProgressCallback, is_out_of_memory
from storage import lifecycle, tree
from storage.database import Database
from storage.images import ImageStore
from storage.lifecycle import EDIT_FAILED
from storage.models import Version

log = logging.getLogger(__name__)

OUT_OF_MEMORY = "error.out_of_memory"


_Output = Output


def _batch_signature(job: Job) -> tuple[object, ...]:
    """Jobs with equal signatures can share one pipeline call."""
    assert job.parent_size is not None
    return batch_signature(job.params, job.parent_size)


class EmbeddedScheduler:
    """Round-robin across users, one job per user at a time, compatible jobs batched.

    Fairness: a user's second job never runs before another user's first; each served user
    goes to the back of the line. Batching: the first job in line picks the batch signature
    (size, steps, guidances); the next users' first jobs with the same signature join, up to
    `max_batch`, after waiting at most `max_wait_ms` for company.
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
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.database = database
        self.images = images
        self.editor = editor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_attempts = max_attempts
        self._queues: dict[str, deque[Job]] = {}
        self._line: deque[str] = deque()
        self._served: set[str] = set()  # users in line who have had a turn since joining it
        self._pending_ids: set[int] = set()
        self._awaiting_parent: dict[int, set[str]] = {}  # pending parent id -> users waiting
        self._running_users: set[str] = set()
        self._running_ids: set[int] = set()
        self._listeners: list[JobListener] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._model = ModelThread()

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
        """Load the model in its thread, reload queued jobs from the database, start serving."""
        await self._model.run(self.editor.load)
        await self._recover()
        self._task = asyncio.create_task(self._serve(), name="pix2chat-scheduler")

    async def stop(self) -> None:
        """Finish the running batch, then stop; queued jobs stay in the database."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
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
            sizes = await lifecycle.done_sizes(session, parent_ids)
            jobs = [
                Job(
                    version_id=version.id,
                    user_key=f"{conversation.platform}:{conversation.user_id}",
                    parent_id=version.parent_id,
                    parent_size=sizes.get(version.parent_id),
                    instruction=version.instruction or "",
                    params=version.edit_params(),
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
        self._listeners.append(listener)

    async def defer_in(self, session: AsyncSession, job: Job) -> None:
        """Nothing to add: embedded, the version row is the job."""

    async def submit(self, job: Job) -> None:
        """Queue a committed job; fills in the parent size if the parent finished meanwhile."""
        if job.version_id in self._pending_ids:
            return
        if job.parent_size is None and job.parent_id not in self._pending_ids:
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
        for user_key, queue in list(self._queues.items()):
            kept = deque(job for job in queue if job.version_id not in version_ids)
            self._queues[user_key] = kept
            self._drop_user_if_idle(user_key)
        self._pending_ids -= version_ids - self._running_ids

    async def position(self, version_id: int) -> int | None:
        """Place in line: 0 = running now; otherwise how many jobs run before it, plus one."""
        if version_id in self._running_ids:
            return 0
        for rank, user_key in enumerate(self._line):
            queue = self._queues.get(user_key, deque())
            for index, job in enumerate(queue):
                if job.version_id != version_id:
                    continue
                ahead = index
                for other_rank, other in enumerate(self._line):
                    if other == user_key:
                        continue
                    allowance = index + (1 if other_rank < rank else 0)
                    ahead += min(len(self._queues.get(other, ())), allowance)
                return ahead + 1
        return None

    async def depth(self) -> int:
        return len(self._pending_ids)

    # ----- ordering --------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self._pending_ids.add(job.version_id)
        queue = self._queues.setdefault(job.user_key, deque())
        queue.append(job)
        if job.parent_size is None:
            self._awaiting_parent.setdefault(job.parent_id, set()).add(job.user_key)
        if job.user_key not in self._line:
            # Behind users still waiting for their first turn, ahead of those already served:
            # the next job of a served user is a second one, which must not go first.
            served = (i for i, user in enumerate(self._line) if user in self._served)
            self._line.insert(next(served, len(self._line)), job.user_key)
        self._wakeup.set()

    def _drop_user_if_idle(self, user_key: str) -> None:
        if not self._queues.get(user_key) and user_key not in self._running_users:
            self._queues.pop(user_key, None)
            self._served.discard(user_key)
            if user_key in self._line:
                self._line.remove(user_key)

    def _first_runnable(self, user_key: str) -> Job | None:
        """A user's oldest job, if the user has nothing running and its parent is finished."""
        if user_key in self._running_users:
            return None
        queue = self._queues.get(user_key)
        if not queue:
            return None
        job = queue[0]
        if job.parent_id in self._pending_ids or job.parent_size is None:
            return None
        return job

    def next_batch(self) -> list[Job]:
        """The jobs to run next, without removing them (exposed for tests and benchmarks)."""
        batch: list[Job] = []
        signature: tuple[object, ...] | None = None
        for user_key in self._line:
            job = self._first_runnable(user_key)
            if job is None:
                continue
            if signature is None:
                signature = _batch_signature(job)
            elif _batch_signature(job) != signature:
                continue
            batch.append(job)
            if len(batch) == self.max_batch:
                break
        return batch

    def _take(self, batch: Sequence[Job]) -> None:
        """Remove a batch from the line; its users go to the back."""
        for job in batch:
            self._queues[job.user_key].popleft()
            self._line.remove(job.user_key)
            self._line.append(job.user_key)
            self._served.add(job.user_key)
            self._running_users.add(job.user_key)
            self._running_ids.add(job.version_id)

    def _finish(self, batch: Sequence[Job]) -> None:
        for job in batch:
            self._running_users.discard(job.user_key)
            self._running_ids.discard(job.version_id)
            self._pending_ids.discard(job.version_id)
            self._drop_user_if_idle(job.user_key)

    # ----- serving ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        while not self._stopping:
            batch = self.next_batch()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(batch) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
                batch = self.next_batch()
            self._take(batch)
            try:
                await self._run_batch(batch)
            except Exception:
                log.exception("scheduler batch crashed; its jobs stay in the database")
            finally:
                self._finish(batch)

    async def _run_batch(self, batch: Sequence[Job]) -> None:
        async with self.database.write() as session:
            claimed = set(await lifecycle.claim_many(session, [job.version_id for job in batch]))
            parents = {
                v.id: v.image_sha
                for v in (
                    await session.scalars(
                        select(Version).where(Version.id.in_({job.parent_id for job in batch}))
                    )
                ).all()
            }
        batch = [job for job in batch if job.version_id in claimed and parents.get(job.parent_id)]
        if not batch:
            return
        for job in batch:
            await self._emit(JobStarted(job.version_id, len(batch)))
        started = time.perf_counter()
        try:
            outputs = await self._compute(
                batch, {job.parent_id: parents[job.parent_id] or "" for job in batch}
            )
        except Exception as error:
            if len(batch) > 1:
                log.warning("batch of %d failed (%s); retrying one by one", len(batch), error)
                for job in batch:
                    await self._run_single_after_batch_failure(job, parents[job.parent_id] or "")
                return
            await self._fail(batch[0], error)
            return
        await self._complete(outputs, time.perf_counter() - started)

    async def _run_single_after_batch_failure(self, job: Job, parent_sha: str) -> None:
        started = time.perf_counter()
        try:
            outputs = await self._compute([job], {job.parent_id: parent_sha})
        except Exception as error:
            await self._fail(job, error)
            return
        await self._complete(outputs, time.perf_counter() - started)

    async def _compute(self, batch: Sequence[Job], parent_shas: dict[int, str]) -> list[_Output]:
        ids = [job.version_id for job in batch]
        progress = threadsafe_progress(lambda step, total: self._progress(ids, step, total))
        loop = asyncio.get_running_loop()

        def preview(version_id: int, step: int, total: int, jpeg: bytes) -> None:
            loop.call_soon_threadsafe(self._spawn, JobPreview(version_id, step, total, jpeg))

        return await self._model.run(
            self._compute_in_thread, list(batch), parent_shas, progress, preview
        )

    def _compute_in_thread(
        self,
        batch: list[Job],
        parent_shas: dict[int, str],
        progress: ProgressCallback,
        preview: PreviewSink,
    ) -> list[_Output]:
        """Decode parents, run one pipeline call, store results losslessly (model thread)."""
        works = []
        for job in batch:
            assert job.parent_size is not None  # only runnable jobs are batched
            works.append(
                Work(
                    job.version_id,
                    parent_shas[job.parent_id],
                    job.parent_size,
                    job.instruction,
                    job.params,
                )
            )
        return compute_batch(self.editor, self.images, works, progress, preview)

    def _progress(self, version_ids: list[int], step: int, total: int) -> None:
        for version_id in version_ids:
            self._spawn(JobProgress(version_id, step, total))

    def _spawn(self, event: JobEvent) -> None:
        """Emit without waiting (the model thread's reports arrive as loop callbacks)."""
        task = asyncio.ensure_future(self._emit(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _complete(self, outputs: Sequence[_Output], seconds: float) -> None:
        async with self.database.write() as session:
            recorded = await lifecycle.mark_done_many(
                session,
                [lifecycle.Result(o.version_id, o.image_sha, o.size) for o in outputs],
            )
        for output in outputs:
            self._fill_parent_size(output.version_id, output.size)
        orphans = [o.image_sha for o in outputs if o.version_id not in recorded]
        if orphans:
            await self._delete_unreferenced(orphans)
        for output in outputs:
            if output.version_id in recorded:
                await self._emit(JobDone(output.version_id, seconds))

    def _fill_parent_size(self, parent_id: int, size: tuple[int, int]) -> None:
        """Dependents of a finished version learn their input size and become runnable."""
        for user_key in self._awaiting_parent.pop(parent_id, set()):
            queue = self._queues.get(user_key, deque())
            for index, job in enumerate(queue):
                if job.parent_id == parent_id and job.parent_size is None:
                    queue[index] = dataclasses.replace(job, parent_size=size)

    async def _delete_unreferenced(self, shas: list[str]) -> None:
        """Results of versions forgotten while they ran must not linger on disk."""
        async with self.database.read() as session:
            used = await tree.images_in_use(session, shas)
        for sha in shas:
            if sha not in used:
                self.images.delete(sha)

    async def _fail(self, job: Job, error: BaseException) -> None:
        key = OUT_OF_MEMORY if is_out_of_memory(error) else EDIT_FAILED
        log.error("edit %d failed: %r", job.version_id, error)
        async with self.database.write() as session:
            failed = await lifecycle.fail(session, job.version_id, key, repr(error)[:2000])
        dead = {version.id for version in failed}
        self.discard(dead - {job.version_id})
        for version_id in dead:
            self._awaiting_parent.pop(version_id, None)
        for version in failed:
            await self._emit(JobFailed(version.id, version.error_key or key))

    async def _emit(self, event: JobEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("job listener failed on %s", event)
