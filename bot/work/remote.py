"""The frontend's job queue when GPU workers run elsewhere (`PIX2CHAT_WORKER=remote`).

Jobs go into procrastinate inside the version's own transaction; job events come back over
LISTEN/NOTIFY on a dedicated connection and are handed to subscribers as the same `JobEvent`s
the embedded scheduler publishes. While that connection is down nothing is lost: results are
in the database, and after a reconnect the queue re-announces every finished result that is
not marked delivered (deliveries skip what they already sent), as frontends do at start-up
with `ConversationService.redeliver`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import TracebackType

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work import pgqueue, queue_sql
from bot.work.jobs import Job, JobDone, JobEvent, JobEvents, JobFailed, JobListener
from storage import lifecycle, tree
from storage.database import Database, brief, outage
from storage.lifecycle import EDIT_FAILED

log = logging.getLogger(__name__)

LIVENESS_CHECK_S = 10.0
RECONNECT_DELAY_S = 0.5
MAX_RECONNECT_DELAY_S = 2.0
"""Backoff of the event connection's reconnects: the first retries come fast (a restart takes
seconds), later ones every 2 s (a failover or a longer outage)."""
APPLICATION_NAME = "pix2chat-events"


class RemoteJobQueue:
    """Defers edit jobs to procrastinate and relays the workers' events to subscribers.

    Usage: `async with RemoteJobQueue(database) as queue: ...`; the listener is running (and
    so no event can be missed) once the context is entered.
    """

    def __init__(self, database: Database, *, liveness_check_s: float = LIVENESS_CHECK_S) -> None:
        if database.is_sqlite:
            raise ValueError("remote workers need PostgreSQL (PIX2CHAT_DATABASE_URL)")
        self.database = database
        self.conninfo = pgqueue.libpq_url(database.url)
        self.liveness_check_s = liveness_check_s
        self._events = JobEvents()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ----- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> RemoteJobQueue:
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
        """Connect and LISTEN before returning, so events of jobs deferred next are heard."""
        connection = await self._connect()
        self._task = asyncio.create_task(self._listen(connection), name="pix2chat-events")

    async def stop(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ----- JobQueue --------------------------------------------------------------------------

    def subscribe(self, listener: JobListener) -> None:
        self._events.subscribe(listener)

    async def defer_in(self, session: AsyncSession, job: Job) -> None:
        await pgqueue.defer_in(session, job)

    async def submit(self, job: Job) -> None:
        """Nothing left to do: the job was deferred in the version's own transaction."""

    def discard(self, version_ids: set[int]) -> None:
        """Cancel the waiting jobs of cancelled or forgotten versions (in the background).

        Only an optimisation, so they stop counting in positions: a worker that picks one up
        first finds its version no longer queued and does nothing.
        """
        if version_ids:
            task = asyncio.get_running_loop().create_task(self._cancel_jobs(set(version_ids)))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _cancel_jobs(self, version_ids: set[int]) -> None:
        try:
            async with self.database.write() as session:
                await session.execute(
                    queue_sql.CANCEL, {"queue": pgqueue.QUEUE, "ids": sorted(version_ids)}
                )
        except Exception:
            log.exception("could not cancel the jobs of versions %s", sorted(version_ids))

    async def position(self, version_id: int) -> int | None:
        """0 while running; else the waiting jobs procrastinate would fetch first, plus one.

        Per-user locks can hold some of those back, so this is an upper bound.
        """
        async with self.database.read() as session:
            row = (
                await session.execute(
                    queue_sql.POSITION,
                    {"queue": pgqueue.QUEUE, "args": json.dumps(pgqueue.job_args(version_id))},
                )
            ).first()
        if row is None:
            return None
        status, ahead = row
        return 0 if status == "doing" else int(ahead) + 1

    async def depth(self) -> int:
        async with self.database.read() as session:
            return await tree.count_queued(session)

    # ----- events ----------------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        connection = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name=APPLICATION_NAME
        )
        await connection.execute(f"LISTEN {pgqueue.EVENTS_CHANNEL}")
        return connection

    async def _listen(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Relay events until cancelled; on a lost connection, reconnect, then resync.

        The resync runs after LISTEN on the new connection, so a result finishing in between
        is announced by both (deliveries skip the second) rather than by neither.
        """
        resync = False
        while True:
            try:
                async with connection:
                    if resync:
                        await self._resync()
                    while True:
                        async for notice in connection.notifies(timeout=self.liveness_check_s):
                            event = pgqueue.decode_event(notice.payload)
                            if event is not None:
                                await self._emit(event)
                        await connection.execute("SELECT 1")  # raises if the server went away
            except Exception as error:
                if outage(error) is None:
                    log.exception("job event listener failed; reconnecting")
                else:
                    log.warning("lost the job event connection (%s); reconnecting", brief(error))
            connection = await self._reconnect()
            resync = True

    async def _reconnect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        """A new listening connection, retried with backoff while the server is away."""
        delay = RECONNECT_DELAY_S
        down_since = time.monotonic()
        while True:
            await asyncio.sleep(delay)
            try:
                connection = await self._connect()
            except psycopg.OperationalError as error:
                log.warning(
                    "job event connection still down after %.0f s: %s",
                    time.monotonic() - down_since,
                    brief(error),
                )
                delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
                continue
            log.info("job event connection back after %.1f s", time.monotonic() - down_since)
            return connection

    async def _resync(self) -> None:
        """Announce results that finished while the connection was down.

        Every platform's: like the NOTIFY events this queue relays, they go to the service,
        which hands each to its own platform's frontend.
        """
        async with self.database.read() as session:
            missed = await lifecycle.undelivered(session, platform=None)
        for version, _ in missed:
            if version.is_done:
                await self._emit(JobDone(version.id, 0.0))
            else:
                await self._emit(JobFailed(version.id, version.error_key or EDIT_FAILED, True))

    async def _emit(self, event: JobEvent) -> None:
        await self._events.emit(event)
