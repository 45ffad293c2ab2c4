"""The GPU worker's connection pool for procrastinate: quick to come back after an outage.

psycopg_pool retries a lost server with doubling delays (1, 2, 4 ... 64 s), so after a minute's
PostgreSQL outage a worker's pool could wait another minute before it tries again, its
heartbeat and fetching stalled all the while. Here the delay stops growing at
`MAX_RECONNECT_DELAY_S`: a restarted server is found within a couple of seconds.
"""

from __future__ import annotations

import psycopg_pool
from psycopg_pool.base import AttemptWithBackoff

MAX_RECONNECT_DELAY_S = 2.0


class _CappedBackoff(AttemptWithBackoff):
    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_RECONNECT_DELAY_S)


class SteadyPool(psycopg_pool.AsyncConnectionPool):
    """An AsyncConnectionPool whose reconnection attempts come every 2 s at most.

    psycopg_pool offers no setting for it; `_add_connection` is where it starts a series of
    attempts (psycopg_pool 3.2 and 3.3), so that is where the capped series is handed in.
    """

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        if attempt is None:
            attempt = _CappedBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)
