"""Per-user admission state, persisted: a token bucket for bursts and a daily quota."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import QuotaExceeded, QuotaTooSmall, RateLimited
from storage.models import UserLimit


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """burst edits at once, refilled at per_minute; at most daily_quota per UTC day (0 = off)."""

    burst: int = 5
    per_minute: float = 6.0
    daily_quota: int = 200


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _seconds_to_midnight(now: float) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return math.ceil((midnight - moment).total_seconds())


async def consume(
    session: AsyncSession,
    platform: str,
    user_id: str,
    policy: LimitPolicy,
    now: float,
    cost: int = 1,
) -> None:
    """Take `cost` edits from the user's allowance or raise RateLimited / QuotaExceeded /
    QuotaTooSmall.

    The rate limit counts the request once whatever its cost; the daily quota counts every
    edit (four variations are four edits).

    Must run inside the write transaction that records the edit, so a refused edit costs
    nothing and two concurrent requests cannot both take the last token (the row is locked
    FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transaction serialises writers).
    """
    locked = (
        select(UserLimit)
        .where(UserLimit.platform == platform, UserLimit.user_id == user_id)
        .with_for_update()
    )
    row = await session.scalar(locked)
    if row is None:
        # A user's first requests race to create the row: insert-if-absent, then lock it, so
        # the losers wait for the winner instead of failing on the primary key.
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        await session.execute(
            insert(UserLimit)
            .values(
                platform=platform,
                user_id=user_id,
                tokens=float(policy.burst),
                refilled_at=now,
                quota_day=_day(now),
                quota_used=0,
            )
            .on_conflict_do_nothing(index_elements=["platform", "user_id"])
        )
        row = await session.scalar(locked)
        assert row is not None
    refill = max(0.0, now - row.refilled_at) * policy.per_minute / 60.0
    row.tokens = min(float(policy.burst), row.tokens + refill)
    row.refilled_at = now
    if row.quota_day != _day(now):
        row.quota_day, row.quota_used = _day(now), 0
    if policy.daily_quota and row.quota_used >= policy.daily_quota:
        raise QuotaExceeded(resets_in_s=_seconds_to_midnight(now), quota=policy.daily_quota)
    if policy.daily_quota and row.quota_used + cost > policy.daily_quota:
        left = policy.daily_quota - row.quota_used
        raise QuotaTooSmall(
            cost=cost, left=left, resets_in_s=_seconds_to_midnight(now), quota=policy.daily_quota
        )
    if row.tokens < 1.0:
        wait = (1.0 - row.tokens) * 60.0 / policy.per_minute if policy.per_minute > 0 else 3600.0
        raise RateLimited(retry_after_s=max(1, math.ceil(wait)))
    row.tokens -= 1.0
    row.quota_used += cost


async def refund(session: AsyncSession, platform: str, user_id: str) -> None:
    """Give back one edit (a cancelled or failed edit should not count against the user)."""
    row = await session.get(UserLimit, (platform, user_id))
    if row is not None:
        row.tokens += 1.0
        row.quota_used = max(0, row.quota_used - 1)


async def charge(
    session: AsyncSession, platform: str, user_id: str, policy: LimitPolicy, now: float, count: int
) -> None:
    """Count `count` more edits against today's quota (a recipe batch after its first edit,
    which `consume` took); QuotaExceeded if they do not all fit. Call after `consume`, in the
    same transaction (the row is locked and exists)."""
    row = await session.get(UserLimit, (platform, user_id))
    assert row is not None, "charge follows consume"
    if policy.daily_quota and row.quota_used + count > policy.daily_quota:
        raise QuotaExceeded(resets_in_s=_seconds_to_midnight(now), quota=policy.daily_quota)
    row.quota_used += count


def quota_exceeded(policy: LimitPolicy, now: float) -> QuotaExceeded:
    """The refusal for a user whose quota is spent (with when it refills)."""
    return QuotaExceeded(resets_in_s=_seconds_to_midnight(now), quota=policy.daily_quota)


async def remaining(
    session: AsyncSession, platform: str, user_id: str, policy: LimitPolicy, now: float
) -> int | None:
    """Edits left in today's quota (None: no quota)."""
    if not policy.daily_quota:
        return None
    row = await session.get(UserLimit, (platform, user_id))
    if row is None or row.quota_day != _day(now):
        return policy.daily_quota
    return max(0, policy.daily_quota - row.quota_used)
