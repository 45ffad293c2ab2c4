"""Figures about the whole service, from the version table: what `/stats` shows an admin and
what the metrics endpoint reports as waiting and running (every process shares them)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, Version, VersionStatus


@dataclass(frozen=True, slots=True)
class QueueCounts:
    waiting: int
    running: int


@dataclass(frozen=True, slots=True)
class DayStats:
    """One UTC day of edits (photos are not edits)."""

    edits: int
    """Edits finished today (done)."""
    failures: int
    active_users: int
    """Users who asked for an edit or sent a photo today."""
    waiting: int
    running: int
    p50_s: float | None
    p95_s: float | None
    """Edit time (start to result) of today's finished edits."""
    gpu_s: float
    """Model time: each batch (edits that started and finished together) counted once."""
    top_users: tuple[tuple[str, int], ...]
    """The busiest users today, "platform:user_id" and their finished edits, busiest first."""


async def queue_counts(session: AsyncSession) -> QueueCounts:
    """Edits waiting and running in the whole deployment."""
    rows = await session.execute(
        select(Version.status, func.count())
        .where(Version.status.in_((VersionStatus.QUEUED, VersionStatus.RUNNING)))
        .group_by(Version.status)
    )
    counts = {status: count for status, count in rows.all()}
    return QueueCounts(counts.get(VersionStatus.QUEUED, 0), counts.get(VersionStatus.RUNNING, 0))


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    if start.tzinfo is None:  # SQLite hands back naive UTC datetimes
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


async def day_stats(session: AsyncSession, now: datetime, top: int = 5) -> DayStats:
    """Today's figures (UTC midnight to `now`)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = (
        select(Conversation.platform, Conversation.user_id)
        .join(Version, Version.conversation_id == Conversation.id)
        .where(Version.created_at >= midnight)
        .distinct()
        .subquery()
    )
    active_users = await session.scalar(select(func.count()).select_from(today))
    finished = (
        await session.execute(
            select(
                Version.started_at, Version.finished_at, Conversation.platform, Conversation.user_id
            )
            .join(Conversation, Conversation.id == Version.conversation_id)
            .where(
                Version.status == VersionStatus.DONE,
                Version.parent_id.is_not(None),
                Version.finished_at >= midnight,
                Version.started_at.is_not(None),
            )
        )
    ).all()
    failures = await session.scalar(
        select(func.count()).where(
            Version.status == VersionStatus.FAILED, Version.finished_at >= midnight
        )
    )
    durations = [_seconds(s, f) for s, f, _, _ in finished]
    batches = {(s, f) for s, f, _, _ in finished}
    busiest = Counter(f"{platform}:{user}" for _, _, platform, user in finished)
    counts = await queue_counts(session)
    return DayStats(
        edits=len(finished),
        failures=failures or 0,
        active_users=active_users or 0,
        waiting=counts.waiting,
        running=counts.running,
        p50_s=_percentile(sorted(durations), 0.50),
        p95_s=_percentile(sorted(durations), 0.95),
        gpu_s=float(sum(_seconds(s, f) for s, f in batches)),
        top_users=tuple(busiest.most_common(top)),
    )
