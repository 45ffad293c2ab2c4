"""Persisted per-user rate limits and daily quotas, on SQLite and PostgreSQL.

The clock is passed in. The last test runs two engines against PostgreSQL, as two processes
would: the row lock serialises them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from storage import limits
from storage.database import Database
from storage.errors import QuotaExceeded, RateLimited
from storage.limits import LimitPolicy
from storage.models import UserLimit

PLATFORM = "telegram"
TIMEOUT_S = 10.0

# -- rate limits and quota (SQLite and PostgreSQL) -----------------------------------------------

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


async def consume(database: Database, policy: LimitPolicy, now: float, user: str = "alice") -> None:
    """One admission in its own write transaction, as the service runs it."""
    async with database.write() as session:
        await limits.consume(session, PLATFORM, user, policy, now)


async def refund(database: Database, user: str = "alice") -> None:
    async with database.write() as session:
        await limits.refund(session, PLATFORM, user)


async def limit_row(database: Database, user: str = "alice") -> UserLimit | None:
    async with database.read() as session:
        return await session.get(UserLimit, (PLATFORM, user))


async def test_burst_then_rate_limited_then_refilled(database: Database) -> None:
    policy = LimitPolicy(burst=3, per_minute=6.0, daily_quota=0)  # a token every 10 s
    for _ in range(3):
        await consume(database, policy, NOON)
    with pytest.raises(RateLimited) as refused:
        await consume(database, policy, NOON)
    assert refused.value.args_for_message == {"retry_after_s": 10}
    with pytest.raises(RateLimited) as refused:
        await consume(database, policy, NOON + 9.5)
    assert refused.value.args_for_message == {"retry_after_s": 1}

    await consume(database, policy, NOON + 10)
    with pytest.raises(RateLimited):
        await consume(database, policy, NOON + 10)
    await consume(database, policy, NOON + 10 + 600)  # refills up to the burst, not beyond
    await consume(database, policy, NOON + 10 + 600)
    await consume(database, policy, NOON + 10 + 600)
    with pytest.raises(RateLimited):
        await consume(database, policy, NOON + 10 + 600)
    await consume(database, policy, NOON, user="bob")  # each user has a bucket of their own


async def test_daily_quota_resets_at_utc_midnight(database: Database) -> None:
    policy = LimitPolicy(burst=100, per_minute=600.0, daily_quota=3)
    late = datetime(2024, 5, 1, 23, 58, tzinfo=UTC).timestamp()
    for _ in range(3):
        await consume(database, policy, late)
    with pytest.raises(QuotaExceeded) as refused:
        await consume(database, policy, late)
    assert refused.value.args_for_message == {"resets_in_s": 120, "quota": 3}
    with pytest.raises(QuotaExceeded):
        await consume(database, policy, late + 119)

    midnight = late + 120
    for _ in range(3):
        await consume(database, policy, midnight)
    with pytest.raises(QuotaExceeded) as refused:
        await consume(database, policy, midnight)
    assert refused.value.args_for_message == {"resets_in_s": 24 * 3600, "quota": 3}
    row = await limit_row(database)
    assert row is not None and (row.quota_day, row.quota_used) == ("2024-05-02", 3)


async def test_limits_survive_a_restart(database: Database, db_url: str) -> None:
    policy = LimitPolicy(burst=2, per_minute=60.0, daily_quota=3)  # a token a second
    await consume(database, policy, NOON)
    await consume(database, policy, NOON)
    await database.close()

    async with Database(db_url) as restarted:
        with pytest.raises(RateLimited):
            await consume(restarted, policy, NOON)
        await consume(restarted, policy, NOON + 1)
    async with Database(db_url) as restarted:
        with pytest.raises(QuotaExceeded):
            await consume(restarted, policy, NOON + 3600)
        row = await limit_row(restarted)
    assert row is not None and (row.quota_day, row.quota_used) == ("2024-05-01", 3)


async def test_refund_gives_one_edit_back(database: Database) -> None:
    tokens = LimitPolicy(burst=2, per_minute=1.0, daily_quota=0)
    await consume(database, tokens, NOON)
    await consume(database, tokens, NOON)
    with pytest.raises(RateLimited):
        await consume(database, tokens, NOON)
    await refund(database)
    await consume(database, tokens, NOON)
    with pytest.raises(RateLimited):
        await consume(database, tokens, NOON)

    quota = LimitPolicy(burst=10, per_minute=60.0, daily_quota=2)
    await consume(database, quota, NOON, user="bob")
    await consume(database, quota, NOON, user="bob")
    with pytest.raises(QuotaExceeded):
        await consume(database, quota, NOON, user="bob")
    await refund(database, user="bob")
    await consume(database, quota, NOON, user="bob")
    with pytest.raises(QuotaExceeded):
        await consume(database, quota, NOON, user="bob")

    await refund(database, user="carol")  # nothing taken, nothing to give back
    assert await limit_row(database, user="carol") is None


async def test_concurrent_requests_cannot_overspend_the_burst(database: Database) -> None:
    policy = LimitPolicy(burst=3, per_minute=60.0, daily_quota=0)  # a token a second

    async def request(now: float) -> None:
        async with database.write() as session:
            await limits.consume(session, PLATFORM, "alice", policy, now)
            await asyncio.sleep(0.02)  # the edit is recorded in the same transaction

    async def wave(now: float) -> list[BaseException | None]:
        async with asyncio.timeout(TIMEOUT_S):
            return await asyncio.gather(*(request(now) for _ in range(8)), return_exceptions=True)

    first = await wave(NOON)  # the user's row does not exist yet: all of them race to create it
    assert sum(r is None for r in first) == 3, first
    assert all(r is None or isinstance(r, RateLimited) for r in first), first

    second = await wave(NOON + 2)  # two tokens refilled
    assert sum(r is None for r in second) == 2, second
    assert all(r is None or isinstance(r, RateLimited) for r in second), second
    row = await limit_row(database)
    assert row is not None and row.tokens == pytest.approx(0.0)


async def test_rate_limits_hold_across_processes(postgres_url: str) -> None:
    """Two engines are two processes to PostgreSQL: the row lock serialises them."""
    policy = LimitPolicy(burst=3, per_minute=0.0, daily_quota=0)
    async with Database(postgres_url) as first, Database(postgres_url) as second:
        async with first.write() as session:
            await session.execute(text("DELETE FROM user_limits"))

        async def request(database: Database) -> BaseException | None:
            try:
                async with database.write() as session:
                    await limits.consume(session, "telegram", "zoe", policy, 0.0)
                    await asyncio.sleep(0.02)
            except RateLimited as error:
                return error
            return None

        outcomes = await asyncio.gather(*(request(db) for db in [first, second] * 4))
    assert sum(outcome is None for outcome in outcomes) == 3
