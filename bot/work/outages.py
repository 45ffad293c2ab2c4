"""Riding out a passing storage outage (PostgreSQL restarting or failing over, SQLite locked,
a full disk) without losing computed work: retry with backoff for a bounded time.

A computed image is expensive (seconds of GPU) and recording it is cheap, so the worker and
the embedded scheduler keep the result and retry its recording until storage is back, rather
than throw it away and run the edit again. Only errors `storage.database.outage` recognises
are retried; anything else is a bug and raises at once. Every try is a whole transaction,
rolled back on failure, so nothing is half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import text

from storage.database import Database, brief, outage
from storage.images import ImageStore

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_S: Sequence[float] = (0.25, 0.5, 1.0, 2.0)
"""Waits between tries: fast at first (a restart takes seconds), then every 2 s."""
OUTAGE_TIMEOUT_S = 120.0
"""How long a computed result waits for storage to come back before its job gives up (the
queue then runs the edit again, or fails it after its attempts)."""


def backoff(tries: int) -> float:
    return BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]


async def through_outage(
    action: Callable[[], Awaitable[T]],
    what: str,
    timeout_s: float = OUTAGE_TIMEOUT_S,
) -> T:
    """`action()`, tried again while storage is away, for up to `timeout_s`.

    Raises the last error once the time is up, or at once for errors that are no outage.
    """
    deadline = time.monotonic() + timeout_s
    tries = 0
    while True:
        try:
            result = await action()
        except Exception as error:
            kind = outage(error)
            if kind is None or time.monotonic() >= deadline:
                raise
            if tries == 0:
                log.warning(
                    "%s: storage %s (%s); retrying for up to %.0f s",
                    what,
                    kind,
                    brief(error),
                    timeout_s,
                )
            await asyncio.sleep(backoff(tries))
            tries += 1
            continue
        if tries:
            log.info("%s: done after %d retries", what, tries)
        return result


async def until_reachable(
    database: Database, stop: asyncio.Event | None = None, timeout_s: float | None = None
) -> bool:
    """Wait until the database answers; False if `stop` was set or `timeout_s` passed first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    tries = 0
    while stop is None or not stop.is_set():
        try:
            async with database.read() as session:
                await session.execute(text("SELECT 1"))
            return True
        except Exception as error:
            if outage(error) is None:
                raise
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(backoff(tries))
        tries += 1
    return False


class PatientImages:
    """An ImageStore whose `put` waits out a passing outage (blocking: it runs in the model
    thread, which has nothing else to do until the result is stored).

    The scaled-out image store is the database itself, so a result computed while PostgreSQL
    restarts would otherwise be lost in the last millisecond; a full disk under a file store
    gets the same chance to clear.
    """

    def __init__(self, inner: ImageStore, timeout_s: float = OUTAGE_TIMEOUT_S) -> None:
        self.inner = inner
        self.timeout_s = timeout_s

    def put(self, data: bytes) -> str:
        deadline = time.monotonic() + self.timeout_s
        tries = 0
        while True:
            try:
                return self.inner.put(data)
            except Exception as error:
                if outage(error) is None or time.monotonic() >= deadline:
                    raise
                if tries == 0:
                    log.warning(
                        "storing a result: storage %s (%s); retrying",
                        outage(error),
                        brief(error),
                    )
                time.sleep(backoff(tries))
                tries += 1

    def get(self, sha: str) -> bytes:
        return self.inner.get(sha)

    def delete(self, sha: str) -> None:
        self.inner.delete(sha)

    def exists(self, sha: str) -> bool:
        return self.inner.exists(sha)


class BriefOutages(logging.Filter):
    """Libraries (procrastinate) log a lost server with a full traceback; an outage is expected
    and handled, so its records keep a one-line message and lose the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and outage(error) is not None:
            record.msg = f"{record.getMessage()} ({brief(error)})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@contextlib.contextmanager
def brief_outage_logs(*names: str) -> Iterator[None]:
    """`BriefOutages` on these loggers (a filter applies to its own logger, not its children)."""
    loggers = [logging.getLogger(name) for name in names]
    brief_outages = BriefOutages()
    for logger in loggers:
        logger.addFilter(brief_outages)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(brief_outages)
