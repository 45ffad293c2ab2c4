"""Who runs next: the fairness rule, as a pure policy (no asyncio, no database).

The rule, for every scheduler: users take turns (round-robin), one job per user at a time, in
the user's own order; a user's second job never runs before another waiting user's first; a
job waits until its parent edit has finished. Batching on top: the first runnable job in line
picks the batch signature and the next users' first jobs with the same signature join, up to
`max_batch`.

A candidate set (variations, best-of-N: jobs sharing a `set_id`) is one unit of its user's turn
that counts as N units of work: it runs together in one batch (split only when `max_batch` is
smaller than N), it joins a batch another user leads only if all of it fits, and its user then
goes to the back of the line like anybody served. So a user asking for variations back to back
pushes another user's single edit back by at most one batch.

The embedded scheduler keeps its line here (`FairLine`). Scaled out, procrastinate keeps the
line in PostgreSQL and the same rule is expressed in its terms (see bot/work/pgqueue.py): every
job of a user carries the lock `user:<platform>:<id>` (procrastinate runs one job per lock at a
time, oldest first: one job per user, in order, and the parent, always an older job of the same
user, has finished), and `queue_priority` gives a user's k-th pending job priority -k, so
anybody's first job is fetched before anybody's second.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence

from bot.work.batching import batch_signature
from bot.work.jobs import Job


def job_signature(job: Job) -> tuple[object, ...]:
    """Jobs with equal signatures can share one pipeline call (only for runnable jobs).

    A finishing operation runs alone: its signature is its own.
    """
    if job.finish is not None:
        return ("finish", job.version_id)
    assert job.parent_size is not None
    return batch_signature(job.params, job.parent_size)


def queue_priority(pending: int, lowest_waiting: int | None) -> int:
    """procrastinate priority of a user's next job, given the user's jobs already pending.

    The k-th pending job (k = 0, 1, ...) gets -k, but never more than the user's older waiting
    jobs (`lowest_waiting`, their lowest priority), so a user's jobs keep their own order.
    """
    priority = -pending
    return priority if lowest_waiting is None else min(priority, lowest_waiting)


class FairLine:
    """The embedded scheduler's line of queued jobs, per user, and the batches it allows.

    Usage: `enqueue` jobs; `next_batch` says what may run now (without removing it); `take` the
    batch when it starts and `finish` it when it is over. `parent_done` makes the dependents of
    a finished version runnable; `discard` forgets cancelled jobs.
    """

    def __init__(self, signature: Callable[[Job], Hashable] = job_signature) -> None:
        self.signature = signature
        self._queues: dict[str, deque[Job]] = {}
        self._line: deque[str] = deque()
        self._served: set[str] = set()  # users in line who have had a turn since joining it
        self._pending_ids: set[int] = set()
        self._awaiting_parent: dict[int, set[str]] = {}  # pending parent id -> users waiting
        self._running_users: set[str] = set()
        self._running_ids: set[int] = set()
        self._started_sets: set[int] = set()  # sets split over batches: the rest runs freely

    def __contains__(self, version_id: object) -> bool:
        """Queued or running."""
        return version_id in self._pending_ids

    def __len__(self) -> int:
        """Jobs queued or running."""
        return len(self._pending_ids)

    def enqueue(self, job: Job, *, first: bool = False) -> None:
        """Queue a job behind its user's others, or before them (`first`: a job that could
        not be recorded and runs again, while its user's next edits wait for it)."""
        self._pending_ids.add(job.version_id)
        queue = self._queues.setdefault(job.user_key, deque())
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)
        if job.parent_size is None:
            self._awaiting_parent.setdefault(job.parent_id, set()).add(job.user_key)
        if job.user_key not in self._line:
            # Behind users still waiting for their first turn, ahead of those already served:
            # the next job of a served user is a second one, which must not go first.
            served = (i for i, user in enumerate(self._line) if user in self._served)
            self._line.insert(next(served, len(self._line)), job.user_key)

    def discard(self, version_ids: Iterable[int]) -> None:
        """Forget queued jobs (running ones finish; `finish` then forgets them)."""
        version_ids = set(version_ids)
        for user_key, queue in list(self._queues.items()):
            kept = deque(job for job in queue if job.version_id not in version_ids)
            self._queues[user_key] = kept
            self._drop_user_if_idle(user_key)
        self._pending_ids -= version_ids - self._running_ids

    def forget_parents(self, version_ids: Iterable[int]) -> None:
        """These versions failed: nobody waits for them to finish any more."""
        for version_id in version_ids:
            self._awaiting_parent.pop(version_id, None)

    def parent_done(self, parent_id: int, size: tuple[int, int]) -> None:
        """Dependents of a finished version learn their input size and become runnable."""
        for user_key in self._awaiting_parent.pop(parent_id, set()):
            queue = self._queues.get(user_key, deque())
            for index, job in enumerate(queue):
                if job.parent_id == parent_id and job.parent_size is None:
                    queue[index] = dataclasses.replace(job, parent_size=size)

    def position(self, version_id: int) -> int | None:
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

    def next_batch(self, max_batch: int) -> list[Job]:
        """The jobs to run next, without removing them: first in line picks the signature."""
        batch: list[Job] = []
        signature: Hashable | None = None
        for user_key in self._line:
            unit = self._runnable_unit(user_key)
            if not unit:
                continue
            room = max_batch - len(batch)
            if signature is None:
                signature = self.signature(unit[0])
                unit = unit[:room]  # a set larger than a batch leads with what fits
            elif self.signature(unit[0]) != signature or len(unit) > room:
                continue  # a set joins only whole; it leads the next batch instead
            batch.extend(unit)
            if len(batch) >= max_batch:
                break
        return batch

    def take(self, batch: Sequence[Job]) -> None:
        """Remove a batch from the line; its users go to the back."""
        for job in batch:
            queue = self._queues[job.user_key]
            queue.remove(job)
            if job.user_key in self._line:
                self._line.remove(job.user_key)
            self._line.append(job.user_key)
            self._served.add(job.user_key)
            self._running_users.add(job.user_key)
            if job.set_id is not None:
                self._started_sets.add(job.set_id)
            self._running_ids.add(job.version_id)

    def finish(self, batch: Sequence[Job]) -> None:
        """The batch is over (done, failed or crashed): its users may run their next job."""
        for job in batch:
            self._running_users.discard(job.user_key)
            self._running_ids.discard(job.version_id)
            self._pending_ids.discard(job.version_id)
            self._drop_user_if_idle(job.user_key)

    def _drop_user_if_idle(self, user_key: str) -> None:
        if not self._queues.get(user_key) and user_key not in self._running_users:
            self._queues.pop(user_key, None)
            self._served.discard(user_key)
            if user_key in self._line:
                self._line.remove(user_key)

    def _runnable_unit(self, user_key: str) -> list[Job]:
        """A user's next unit of work: the first runnable job, with the rest of its set."""
        first = self._first_runnable(user_key)
        if first is None:
            return []
        if first.set_id is None:
            return [first]
        unit = []
        for job in self._queues[user_key]:
            if job.set_id != first.set_id or job.parent_size is None:
                break
            unit.append(job)
        if len(unit) < first.set_size and first.set_id not in self._started_sets:
            return []  # the rest of the set is still being queued: it runs as one batch
        return unit

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
