"""procrastinate's worker loop, kept running through database outages until a stop signal.

procrastinate 3 stops its worker when its heartbeat or job listener loses the server, and
raises when fetching does; a GPU worker must outlive that (its model stays loaded), so the loop
here starts procrastinate's loop again once the database answers, and only a stop signal (or a
real bug) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from bot.work.outages import until_reachable
from storage.database import Database, brief, outage

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 0.5
"""The least pause before procrastinate's loop starts again after it stopped."""


async def keep_serving(
    run_loop: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    database: Database,
    name: str,
) -> None:
    """Run procrastinate's worker loop; after a database outage, run it again.

    procrastinate 3 stops its worker when its heartbeat or job listener loses the server,
    and raises when fetching does: either way the loop here waits (jobs that were running
    finish and record their results once the database is back), waits for the database and
    starts a fresh loop, registered anew with a fresh heartbeat. The model stays loaded.
    A stop signal ends it gracefully (running edits finish for `shutdown_timeout_s`).
    """
    while True:
        serving = asyncio.create_task(run_loop(), name="procrastinate")
        stopping = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            serving.cancel()  # procrastinate then stops gracefully
            await asyncio.gather(serving, return_exceptions=True)
            raise
        finally:
            stopping.cancel()
        if stop.is_set():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            return
        error = None if serving.cancelled() else serving.exception()
        if error is not None and outage(error) is None:
            raise error
        reason = "its heartbeat or job listener lost it" if error is None else error
        log.warning(
            "worker %s lost the database (%s); the job loop restarts once it is back",
            name,
            brief(reason.__cause__ or reason) if isinstance(reason, BaseException) else reason,
        )
        await asyncio.sleep(RESTART_PAUSE_S)  # never a hot loop, whatever stopped it
        if not await until_reachable(database, stop):
            return
        log.info("worker %s: database back, fetching jobs again", name)


@contextlib.contextmanager
def stop_signals(stop: asyncio.Event, install: bool) -> Iterator[None]:
    """SIGTERM / SIGINT set `stop` (a graceful stop), while the worker serves."""
    if not install:
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
