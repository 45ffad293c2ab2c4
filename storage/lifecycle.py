"""A version's lifecycle: every change of `Version.status`, and the fields that go with it.

"Where does an edit's status change?" has one answer: here. The embedded scheduler, the
`pix2chat worker` processes, the remote queue and the conversation service all call these
functions; nothing else assigns a status (tests/storage/test_lifecycle.py checks that).

    add_edit -> queued --claim--> running --mark_done--> done
                  |  ^               |
                  |  +--hand_back----+   (also requeue_interrupted after a crash)
                  |                  +--fail--> failed
                  +--cancel_latest--> cancelled
                  +--cancel_queued (a recipe batch's remaining steps)--> cancelled
                  +--fail (its own, or its parent's, cascading)--> failed

    add_root -> done (a photo is finished from the start)
    done | failed --mark_delivered--> the same status, `delivered` set

A worker's `claim` also takes over a version that is already running: procrastinate retries
the job of a worker it thought dead, and whichever run finishes first records the result
(`mark_done_many` only records running versions). Done, failed and cancelled are final.

Every function works inside the caller's transaction (an AsyncSession from `Database.write()`
or `.read()`), so callers combine a transition with refunds and notifications atomically. On
PostgreSQL, where transitions of one version can race (two workers, a cancel and a claim, a
result and the orphan sweep), each locks the rows it changes and re-checks their status, so
only the diagram's edges are ever taken (tests/storage/test_lifecycle_state_machine.py races
them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import PENDING_STATUSES, Conversation, Version, VersionStatus, utcnow

EDIT_FAILED = "error.edit_failed"
PARENT_FAILED = "error.parent_failed"
TOO_MANY_ATTEMPTS = "too many attempts"
NO_PARENT_IMAGE = "no parent image"
FINAL_STATUSES = (VersionStatus.DONE, VersionStatus.FAILED, VersionStatus.CANCELLED)
ALLOWED = frozenset(
    {
        (VersionStatus.QUEUED, VersionStatus.RUNNING),
        (VersionStatus.QUEUED, VersionStatus.CANCELLED),
        (VersionStatus.QUEUED, VersionStatus.FAILED),
        (VersionStatus.RUNNING, VersionStatus.DONE),
        (VersionStatus.RUNNING, VersionStatus.FAILED),
        (VersionStatus.RUNNING, VersionStatus.QUEUED),
    }
)
"""The edges of the diagram above: (from, to) pairs a version's status may take."""


# ----- birth ---------------------------------------------------------------------------------


def new_root(now: datetime) -> dict[str, Any]:
    """The lifecycle fields of a new photo: done, with nothing to deliver."""
    return {
        "status": VersionStatus.DONE,
        "attempts": 0,
        "delivered": True,
        "finished_at": now,
    }


def new_edit() -> dict[str, Any]:
    """The lifecycle fields of a new edit: queued, never tried, not delivered."""
    return {"status": VersionStatus.QUEUED, "attempts": 0, "delivered": False}


# ----- claims --------------------------------------------------------------------------------


class ParentPending(Exception):
    """The parent edit has not finished yet (cannot happen under the per-user lock)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker's claim found.

    `version` and `parent` are set when the version runs now; otherwise `failed` lists what the
    claim failed instead (too many attempts, no parent image, with their dependants), or is
    empty when there is nothing (left) to do.
    """

    version: Version | None = None
    parent: Version | None = None
    failed: Sequence[Version] = field(default_factory=list)


async def claim(session: AsyncSession, version_id: int, max_attempts: int) -> Claim:
    """A worker's claim of one version, row-locked: running from now on, if it may run.

    Raises ParentPending when the parent edit is still queued or running.
    """
    version = await session.get(Version, version_id, with_for_update=True)
    if version is None or not version.is_pending:
        return Claim()  # cancelled, forgotten, or already finished by an earlier run
    if version.attempts >= max_attempts:
        return Claim(failed=await fail(session, version_id, EDIT_FAILED, TOO_MANY_ATTEMPTS))
    assert version.parent_id is not None and version.params is not None
    parent = await session.get(Version, version.parent_id)
    if parent is not None and parent.is_pending:
        raise ParentPending(version_id)
    if parent is None or parent.image_sha is None or not parent.width or not parent.height:
        return Claim(failed=await fail(session, version_id, PARENT_FAILED, NO_PARENT_IMAGE))
    version.status = VersionStatus.RUNNING
    version.started_at = utcnow()
    version.attempts += 1
    return Claim(version=version, parent=parent)


async def claim_many(session: AsyncSession, version_ids: Sequence[int]) -> list[int]:
    """Claim queued versions for a run; returns the ids actually claimed.

    Only queued versions are taken, in one UPDATE: a version claimed already, cancelled,
    failed or forgotten drops out, so claiming twice gives the second claim nothing.
    """
    if not version_ids:
        return []
    claimed = await session.scalars(
        update(Version)
        .where(Version.id.in_(version_ids), Version.status == VersionStatus.QUEUED)
        .values(status=VersionStatus.RUNNING, started_at=utcnow(), attempts=Version.attempts + 1)
        .returning(Version.id)
    )
    return list(claimed.all())


async def hand_back(session: AsyncSession, version_id: int) -> bool:
    """A running version waits for the next worker, as if this run never started.

    Shutdown took too long, which is not a crash, so the attempt does not count. True if it
    was running.
    """
    version = await session.get(Version, version_id, with_for_update=True)
    if version is None or version.status != VersionStatus.RUNNING:
        return False
    version.status = VersionStatus.QUEUED
    version.started_at = None
    version.attempts = max(0, version.attempts - 1)
    return True


async def requeue_interrupted(session: AsyncSession) -> int:
    """After a crash, running jobs go back to the queue (their results never landed).

    The attempt still counts, so a version that crashes the process every time is failed
    once it reaches the scheduler's maximum.
    """
    result = await session.execute(
        update(Version)
        .where(Version.status == VersionStatus.RUNNING)
        .values(status=VersionStatus.QUEUED, started_at=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ----- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """A computed image for a running version: `image_sha` at `size` is what it shows;
    `raw_sha` the model's output before developing, if kept."""

    version_id: int
    image_sha: str
    size: tuple[int, int]
    raw_sha: str | None = None
    score: float | None = None


async def mark_done_many(session: AsyncSession, results: Sequence[Result]) -> set[int]:
    """Record a batch of results and make each the head of its conversation.

    A few set-based statements per batch rather than several per version, so recording results
    stays cheap next to the model. Versions that are no longer running (forgotten, or already
    recorded by another run) are skipped; returns the ids that were recorded.

    A candidate of a set (variations, best-of-N) becomes the head only while it leads its set
    (`set_leader`): until the user picks, the head is candidate 1, or the best-scored one.
    """
    if not results:
        return set()
    rows = (
        await session.execute(
            select(Version.id, Version.conversation_id, Version.parent_id, Version.set_id)
            .where(
                Version.id.in_([result.version_id for result in results]),
                Version.status == VersionStatus.RUNNING,
            )
            .with_for_update()  # a concurrent failure either lands first or waits for us
        )
    ).all()
    running = {row.id: row for row in rows}
    recorded = [result for result in results if result.version_id in running]
    if not recorded:
        return set()
    now = utcnow()
    await session.execute(
        update(Version),
        [
            {
                "id": result.version_id,
                "status": VersionStatus.DONE,
                "image_sha": result.image_sha,
                "raw_image_sha": result.raw_sha,
                "width": result.size[0],
                "height": result.size[1],
                "score": result.score,
                "finished_at": now,
            }
            for result in recorded
        ],
    )
    heads: dict[int, int] = {}  # version id -> the version its conversation's head moves to
    leaders: dict[int, int | None] = {}
    for result in recorded:
        set_id = running[result.version_id].set_id
        if set_id is None:
            heads[result.version_id] = result.version_id
            continue
        if set_id not in leaders:
            leaders[set_id] = await set_leader(session, set_id)
        if leaders[set_id] is not None:
            heads[result.version_id] = leaders[set_id] or result.version_id
    moves = [(running[vid], head_id) for vid, head_id in heads.items()]
    if moves:
        await session.execute(
            update(Conversation),
            [{"id": row.conversation_id, "head_id": head_id} for row, head_id in moves],
        )
    parents = [
        {"id": row.parent_id, "redo_child_id": head_id}
        for row, head_id in moves
        if row.parent_id is not None
    ]
    if parents:
        await session.execute(update(Version), parents)
    return {result.version_id for result in recorded}


async def set_leader(session: AsyncSession, set_id: int) -> int | None:
    """The finished candidate of a set the conversation shows until the user picks one.

    The picked one if any; else the best-scored one when scores exist; else the lowest index.
    None while no candidate is done.
    """
    rows = (
        await session.execute(
            select(Version.id, Version.set_index, Version.score, Version.picked).where(
                Version.set_id == set_id, Version.status == VersionStatus.DONE
            )
        )
    ).all()
    if not rows:
        return None
    picked = [row.id for row in rows if row.picked]
    if picked:
        return picked[0]
    best = min(rows, key=lambda row: (-(row.score or 0.0), row.set_index or 0, row.id))
    return int(best.id)


async def mark_done(
    session: AsyncSession, version_id: int, image_sha: str, size: tuple[int, int]
) -> Version | None:
    """Record one result and make it the head; None if the version is not running."""
    if not await mark_done_many(session, [Result(version_id, image_sha, size)]):
        return None
    version = await session.get(Version, version_id, populate_existing=True)
    return version


async def _queued_dependants(session: AsyncSession, version_id: int) -> list[Version]:
    """The queued edits built on `version_id`, directly or through other queued edits."""
    found: list[Version] = []
    frontier = [version_id]
    while frontier:
        children = (
            await session.scalars(
                select(Version)
                .where(Version.parent_id.in_(frontier), Version.status == VersionStatus.QUEUED)
                .order_by(Version.id)
                .with_for_update()
            )
        ).all()
        found.extend(children)
        frontier = [child.id for child in children]
    return found


async def fail(
    session: AsyncSession, version_id: int, error_key: str, detail: str | None = None
) -> list[Version]:
    """Fail a pending version and every queued edit built on it; returns all that failed.

    The dependants fail with `PARENT_FAILED`; running ones (claimed out of order) are left to
    their run. A version that is no longer pending is left alone (an empty list).
    """
    version = await session.get(Version, version_id, with_for_update=True)
    if version is None or not version.is_pending:
        return []
    failed = [version, *await _queued_dependants(session, version.id)]
    now = utcnow()
    for index, item in enumerate(failed):
        item.status = VersionStatus.FAILED
        item.error_key = error_key if index == 0 else PARENT_FAILED
        item.error_detail = detail if index == 0 else None
        item.finished_at = now
    return failed


async def cancel_latest(session: AsyncSession, conversation: Conversation) -> list[Version]:
    """Cancel the newest queued edit and the queued edits built on it (all of a candidate set's
    queued candidates when it is one of them).

    A running edit is never cancelled: it finishes (or fails) as claimed.
    """
    while True:
        target_id = await session.scalar(
            select(Version.id)
            .where(
                Version.conversation_id == conversation.id,
                Version.status == VersionStatus.QUEUED,
            )
            .order_by(Version.id.desc())
            .limit(1)
        )
        if target_id is None:
            return []
        # Locked, and still queued: a claim that took it meanwhile makes us look again.
        target = await session.scalar(
            select(Version)
            .where(Version.id == target_id, Version.status == VersionStatus.QUEUED)
            .with_for_update()
        )
        if target is not None:
            break
    cancelled = [target]
    if target.set_id is not None:  # a candidate set is cancelled whole
        cancelled = list(
            (
                await session.scalars(
                    select(Version)
                    .where(Version.set_id == target.set_id, Version.status == VersionStatus.QUEUED)
                    .order_by(Version.id)
                    .with_for_update()
                )
            ).all()
        )
    for item in list(cancelled):
        cancelled.extend(await _queued_dependants(session, item.id))
    now = utcnow()
    for item in cancelled:
        item.status = VersionStatus.CANCELLED
        item.finished_at = now
        item.delivered = True
    return cancelled


async def cancel_queued(session: AsyncSession, version_ids: Sequence[int]) -> list[Version]:
    """Cancel the queued versions among `version_ids` (a recipe batch's remaining steps).

    Running ones finish as claimed; finished ones stay as they are. Row-locked and re-checked,
    like `cancel_latest`, so a claim racing the cancel wins or loses cleanly.
    """
    if not version_ids:
        return []
    targets = (
        await session.scalars(
            select(Version)
            .where(Version.id.in_(version_ids), Version.status == VersionStatus.QUEUED)
            .order_by(Version.id)
            .with_for_update()
        )
    ).all()
    now = utcnow()
    for item in targets:
        item.status = VersionStatus.CANCELLED
        item.finished_at = now
        item.delivered = True
    return list(targets)


# ----- delivery ------------------------------------------------------------------------------


async def undelivered(
    session: AsyncSession, platform: str | None
) -> Sequence[tuple[Version, Conversation]]:
    """Finished or failed edits whose reply never reached the chat (e.g. a crash in between).

    `platform` picks one frontend's chats; None takes every platform's (the remote queue
    re-announces to a service that routes each result to its own platform's frontend).
    """
    query = (
        select(Version, Conversation)
        .join(Conversation, Conversation.id == Version.conversation_id)
        .where(
            Version.delivered.is_(False),
            Version.status.in_((VersionStatus.DONE, VersionStatus.FAILED)),
        )
        .order_by(Version.id)
    )
    if platform is not None:
        query = query.where(Conversation.platform == platform)
    rows = await session.execute(query)
    return [(version, conversation) for version, conversation in rows.all()]


async def mark_delivered(session: AsyncSession, version_id: int) -> None:
    """The result (or failure) reached the chat: `undelivered` no longer lists it.

    A candidate set is delivered as one reply (named by its set id, or by its best candidate):
    that marks every candidate of the set.
    """
    set_id = await session.scalar(select(Version.set_id).where(Version.id == version_id))
    await session.execute(
        update(Version)
        .where(or_(Version.id == version_id, Version.set_id == (set_id or version_id)))
        .values(delivered=True)
    )


# ----- reading the queue ---------------------------------------------------------------------


async def queued_jobs(session: AsyncSession) -> Sequence[tuple[Version, Conversation]]:
    """Every queued version with its conversation, oldest first (for scheduler start-up)."""
    rows = await session.execute(
        select(Version, Conversation)
        .join(Conversation, Conversation.id == Version.conversation_id)
        .where(Version.status == VersionStatus.QUEUED)
        .order_by(Version.id)
    )
    return [(version, conversation) for version, conversation in rows.all()]


async def done_sizes(session: AsyncSession, version_ids: set[int]) -> dict[int, tuple[int, int]]:
    """Image sizes of the finished versions among `version_ids` (inputs ready for their edits)."""
    if not version_ids:
        return {}
    rows = await session.execute(
        select(Version.id, Version.width, Version.height).where(
            Version.id.in_(version_ids), Version.status == VersionStatus.DONE
        )
    )
    return {vid: (w, h) for vid, w, h in rows.all() if w is not None and h is not None}


__all__ = [
    "ALLOWED",
    "EDIT_FAILED",
    "FINAL_STATUSES",
    "PARENT_FAILED",
    "PENDING_STATUSES",
    "Claim",
    "ParentPending",
    "Result",
    "cancel_latest",
    "cancel_queued",
    "claim",
    "claim_many",
    "done_sizes",
    "fail",
    "hand_back",
    "mark_delivered",
    "mark_done",
    "mark_done_many",
    "new_edit",
    "new_root",
    "queued_jobs",
    "requeue_interrupted",
    "set_leader",
    "undelivered",
]
