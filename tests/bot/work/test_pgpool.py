"""The worker's pool tries a lost server again every 2 s at most, not after doubling waits."""

from __future__ import annotations

from bot.work.pgpool import MAX_RECONNECT_DELAY_S, SteadyPool, _CappedBackoff


def test_reconnection_delays_stop_growing() -> None:
    attempt = _CappedBackoff(timeout=300)
    delays = []
    for now in range(10):
        attempt.update_delay(float(now))
        delays.append(attempt.delay)
    assert delays[0] < 1.2 and max(delays) == MAX_RECONNECT_DELAY_S


async def test_the_worker_pool_connects_and_serves(postgres_url: str) -> None:
    pool = SteadyPool(postgres_url, min_size=1, max_size=2, open=False)
    await pool.open(wait=True)
    try:
        async with pool.connection() as connection:
            assert await (await connection.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()
