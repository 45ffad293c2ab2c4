"""Keeps the queue gauges of the metrics endpoint current: the whole deployment's waiting and
running edits, counted in the database (so every frontend process reports the same)."""

from __future__ import annotations

import asyncio
import logging

from bot.work.metrics import Metrics
from storage import stats
from storage.database import Database, brief

log = logging.getLogger(__name__)


async def count_once(database: Database, metrics: Metrics) -> None:
    async with database.read() as session:
        counts = await stats.queue_counts(session)
    metrics.waiting.set(counts.waiting)
    metrics.running_all.set(counts.running)


async def refresh_queue_counts(database: Database, metrics: Metrics, every_s: float) -> None:
    """Count every `every_s` seconds until cancelled; a storage outage skips a round."""
    while True:
        try:
            await count_once(database, metrics)
        except Exception as error:
            log.warning("metrics: could not count the queue (%s)", brief(error))
        await asyncio.sleep(every_s)
