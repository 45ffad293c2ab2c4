"""What flows between the conversation service and whichever scheduler runs the edits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from editor.base import is_out_of_memory
from editor.errors import UserError
from editor.finishing.spec import Finish
from editor.params import EditParams
from storage.database import Outage, outage
from storage.lifecycle import EDIT_FAILED

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One queued version to compute. The database row is the truth; this is its index entry.

    Attributes:
        version_id: the version (and job) id.
        user_key: "platform:user_id"; fairness and per-user order are by user.
        parent_id: the version whose image is edited.
        parent_size: the parent's image size, or None while the parent is itself pending.
        instruction: the edit instruction.
        params: every generation parameter including the seed.
        finish: a finishing operation (upscale, cut-out, white) instead of an edit.
        set_id: the candidate set (variations, best-of-N) it belongs to: the set runs as one
            unit of its user's turn, counting as many units of work as it has candidates.
        scored: the candidate scorer ranks its result.
        set_size: how many candidates of its set are queued together (the embedded line waits
            for all of them before the set runs, so they share one batch).
    """

    version_id: int
    user_key: str
    parent_id: int
    parent_size: tuple[int, int] | None
    instruction: str
    params: EditParams
    finish: Finish | None = None
    set_id: int | None = None
    scored: bool = False
    set_size: int = 1


@dataclass(frozen=True, slots=True)
class JobStarted:
    version_id: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class JobProgress:
    version_id: int
    step: int
    total: int


@dataclass(frozen=True, slots=True)
class JobPreview:
    """A rough picture of a running edit after `step` of `total` steps (embedded worker only).

    Remote workers send no previews: PostgreSQL NOTIFY payloads are limited to 8000 bytes.
    """

    version_id: int
    step: int
    total: int
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class JobDone:
    version_id: int
    seconds: float


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The version failed; `error_key` names the catalogue message (parent_failed for dependents).

    `refunded` is True when whoever failed it already gave the user's edit back in the same
    transaction (remote workers do, so that several frontend processes do not refund it twice).
    """

    version_id: int
    error_key: str
    refunded: bool = False


JobEvent = JobStarted | JobProgress | JobPreview | JobDone | JobFailed
JobListener = Callable[[JobEvent], Awaitable[None]]


class JobEvents:
    """The listeners of one job queue: each event reaches every listener, in order.

    A failing listener is logged and does not stop the others (nor the scheduler that emits).
    Any fan-out of events to subscribers can use it (schedulers here; the conversation
    service's update listeners are the same shape).
    """

    def __init__(self) -> None:
        self._listeners: list[JobListener] = []
        self._background: set[asyncio.Future[None]] = set()

    def subscribe(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    async def emit(self, event: JobEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("job listener failed on %s", event)

    def emit_soon(self, event: JobEvent) -> None:
        """Emit without waiting (for reports that arrive as event loop callbacks)."""
        task = asyncio.ensure_future(self.emit(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class JobQueue(Protocol):
    """The service's view of a scheduler: embedded here, procrastinate when scaled out.

    `defer_in` runs inside the transaction that inserts the version row, `submit` after it
    commits; a restart reloads jobs from the database, so losing the process loses no work.
    """

    def subscribe(self, listener: JobListener) -> None:
        """Receive every job event (progress, done, failed)."""

    async def defer_in(self, session: AsyncSession, job: Job) -> None:
        """Record the job in the version's own transaction: neither exists without the other.

        Embedded, the version row is the job and this does nothing; scaled out it inserts the
        procrastinate job.
        """

    async def submit(self, job: Job) -> None:
        """Queue a committed job (idempotent by version id)."""

    def discard(self, version_ids: set[int]) -> None:
        """Forget queued jobs that were cancelled or deleted in the database."""

    async def position(self, version_id: int) -> int | None:
        """1-based place in line (0 = running now), None if unknown."""

    async def depth(self) -> int:
        """Jobs waiting or running."""


OUT_OF_MEMORY = "error.out_of_memory"


OUTAGE_KEYS = {Outage.UNAVAILABLE: "error.unavailable", Outage.FULL: "error.storage_full"}


def failure_key(error: BaseException) -> str:
    """The message a failed edit gets: out of memory (a smaller size may fit), storage away
    or full (the edit was fine: try again later), or failed."""
    kind = outage(error)
    if kind is not None:
        return OUTAGE_KEYS[kind]
    if isinstance(error, UserError):  # says what went wrong (no subject, missing weights...)
        return error.key
    return OUT_OF_MEMORY if is_out_of_memory(error) else EDIT_FAILED
