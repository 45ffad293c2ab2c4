"""The edit-history tree: edit, undo, redo, regenerate, branch, reset and forget.

Conversations, versions and their links (parent, head, redo target), the path to a version,
history listings, pending counts and settings. A version's status is not changed here: new
versions take their first status from `storage.lifecycle`, which owns every later change.

Every function works inside the caller's transaction (an AsyncSession from `Database.write()`
or `.read()`), so the service can combine them with admission checks atomically. Nothing here
deletes a version except `forget`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from editor.finishing.spec import Finish
from editor.params import EditParams
from storage import lifecycle, regions
from storage.errors import NothingToRedo, NothingToUndo, VersionNotFound
from storage.models import PENDING_STATUSES, Conversation, Version, VersionStatus, utcnow
from storage.types import Actor


async def find_conversation(session: AsyncSession, actor: Actor) -> Conversation | None:
    return await session.scalar(
        select(Conversation).where(
            Conversation.platform == actor.platform,
            Conversation.chat_id == actor.chat_id,
            Conversation.user_id == actor.user_id,
        )
    )


async def get_or_create_conversation(session: AsyncSession, actor: Actor) -> Conversation:
    """The actor's conversation, created empty on first contact (write transaction).

    The insert skips on conflict, so two first messages racing on PostgreSQL both end up with
    the one row instead of one of them failing on the unique constraint.
    """
    conversation = await find_conversation(session, actor)
    if conversation is not None:
        return conversation
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        insert(Conversation)
        .values(
            platform=actor.platform,
            chat_id=actor.chat_id,
            user_id=actor.user_id,
            settings={},
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["platform", "chat_id", "user_id"])
    )
    conversation = await find_conversation(session, actor)
    assert conversation is not None
    return conversation


async def conversations_of_user(
    session: AsyncSession, platform: str, user_id: str
) -> Sequence[Conversation]:
    """All of a user's conversations on one platform (one per chat)."""
    return (
        await session.scalars(
            select(Conversation).where(
                Conversation.platform == platform, Conversation.user_id == user_id
            )
        )
    ).all()


async def get_version(
    session: AsyncSession, conversation: Conversation, version_id: int
) -> Version:
    """A version of this conversation; another actor's version looks exactly like a missing one."""
    version = await session.get(Version, version_id)
    if version is None or version.conversation_id != conversation.id:
        raise VersionNotFound(version_id=version_id)
    return version


async def head(session: AsyncSession, conversation: Conversation) -> Version | None:
    if conversation.head_id is None:
        return None
    return await session.get(Version, conversation.head_id)


async def find_by_request_key(
    session: AsyncSession, conversation: Conversation, request_key: str
) -> Version | None:
    """The version a platform update already created (updates may be delivered twice)."""
    return await session.scalar(
        select(Version).where(
            Version.conversation_id == conversation.id, Version.request_key == request_key
        )
    )


async def add_root(
    session: AsyncSession,
    conversation: Conversation,
    image_sha: str,
    size: tuple[int, int],
    request_key: str | None = None,
) -> Version:
    """A new photo (or a reset): a done root that becomes the head at once."""
    now = utcnow()
    root = Version(
        conversation_id=conversation.id,
        image_sha=image_sha,
        width=size[0],
        height=size[1],
        request_key=request_key,
        created_at=now,
        **lifecycle.new_root(now),
    )
    session.add(root)
    await session.flush()
    conversation.head_id = root.id
    return root


async def add_edit(
    session: AsyncSession,
    conversation: Conversation,
    parent: Version,
    instruction: str,
    params: EditParams,
    request_key: str | None = None,
    finish: Finish | None = None,
) -> Version:
    """A queued child of `parent` (`lifecycle.new_edit`); it becomes the head when it is done.

    With `finish` the child is a finishing operation (kept in its params beside the edit
    parameters), not an instruction edit.
    """
    stored = params.to_dict()
    if finish is not None:
        stored["finish"] = finish.to_dict()
    version = Version(
        conversation_id=conversation.id,
        parent_id=parent.id,
        instruction=instruction,
        params=stored,
        request_key=request_key,
        created_at=utcnow(),
        **lifecycle.new_edit(),
    )
    session.add(version)
    await session.flush()
    return version


async def add_candidates(
    session: AsyncSession,
    conversation: Conversation,
    parent: Version,
    instruction: str,
    params: Sequence[EditParams],
    origin: str,
    request_key: str | None = None,
) -> list[Version]:
    """A candidate set: queued siblings of one instruction on `parent`, one per parameter set.

    They share `set_id`, the first candidate's id, and are numbered 1..N (`set_index`).
    """
    candidates: list[Version] = []
    for index, each in enumerate(params, start=1):
        version = await add_edit(
            session,
            conversation,
            parent,
            instruction,
            each,
            request_key=request_key if index == 1 else None,
        )
        version.origin = origin
        version.set_index = index
        version.set_id = candidates[0].id if candidates else version.id
        candidates.append(version)
    await session.flush()
    return candidates


async def candidates_of(session: AsyncSession, set_id: int) -> Sequence[Version]:
    """Every candidate of a set, in their order (1..N)."""
    return (
        await session.scalars(
            select(Version).where(Version.set_id == set_id).order_by(Version.set_index, Version.id)
        )
    ).all()


async def siblings_on_path(
    session: AsyncSession, set_ids: Iterable[int], exclude: Iterable[int]
) -> list[Step]:
    """The other candidates of the sets a history path passes through (reachable by branching)."""
    wanted = set(set_ids)
    if not wanted:
        return []
    rows = await session.execute(
        select(*_STEP_COLUMNS)
        .where(Version.set_id.in_(wanted), Version.id.not_in(set(exclude)))
        .order_by(Version.set_id, Version.set_index)
    )
    return [Step(*row) for row in rows]


async def pick(session: AsyncSession, conversation: Conversation, version: Version) -> None:
    """The user chose `version` among its set: it becomes the head and stays the leader.

    The caller checks the set is still current (`storage.errors.SetNotCurrent`).
    """
    assert version.set_id is not None
    await session.execute(
        update(Version).where(Version.set_id == version.set_id).values(picked=False)
    )
    version.picked = True
    await move_head(session, conversation, version)


async def move_head(session: AsyncSession, conversation: Conversation, version: Version) -> None:
    """Point the head at `version` and remember it as its parent's redo target."""
    conversation.head_id = version.id
    if version.parent_id is not None:
        await session.execute(
            update(Version).where(Version.id == version.parent_id).values(redo_child_id=version.id)
        )


async def undo(session: AsyncSession, conversation: Conversation) -> Version:
    """Head moves to its parent; the child stays, as the parent's redo target."""
    current = aliased(Version)
    parent = await session.scalar(
        select(Version)
        .join(current, current.parent_id == Version.id)
        .where(current.id == conversation.head_id)
    )
    if conversation.head_id is None or parent is None:
        raise NothingToUndo()
    parent.redo_child_id = conversation.head_id  # redo retraces this undo, even after a branch
    conversation.head_id = parent.id
    return parent


async def undo_from(session: AsyncSession, conversation: Conversation, version: Version) -> Version:
    """Head moves to the parent of `version` (an older result's Undo button); redo returns to it."""
    if version.parent_id is None:
        raise NothingToUndo()
    parent = await session.get(Version, version.parent_id)
    assert parent is not None
    parent.redo_child_id = version.id
    conversation.head_id = parent.id
    return parent


async def redo(session: AsyncSession, conversation: Conversation) -> Version:
    """Head moves back down to the child it was most recently on."""
    current = aliased(Version)
    child = await session.scalar(
        select(Version)
        .join(current, current.redo_child_id == Version.id)
        .where(current.id == conversation.head_id, Version.status == VersionStatus.DONE)
    )
    if conversation.head_id is None or child is None:
        raise NothingToRedo()
    conversation.head_id = child.id
    return child


async def path_to(session: AsyncSession, version_id: int) -> list[Version]:
    """The chain root -> version, in one recursive query."""
    chain = (
        select(Version.id, Version.parent_id).where(Version.id == version_id).cte(recursive=True)
    )
    chain = chain.union_all(
        select(Version.id, Version.parent_id).join(chain, Version.id == chain.c.parent_id)
    )
    versions = (await session.scalars(select(Version).join(chain, Version.id == chain.c.id))).all()
    by_id = {v.id: v for v in versions}
    ordered: list[Version] = []
    cursor: int | None = version_id
    while cursor is not None and cursor in by_id:
        ordered.append(by_id[cursor])
        cursor = by_id[cursor].parent_id
    ordered.reverse()
    return ordered


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a history listing: what to show, without loading a full ORM row."""

    id: int
    instruction: str | None
    params: dict[str, Any] | None
    status: VersionStatus
    set_id: int | None = None
    set_index: int | None = None
    score: float | None = None


_STEP_COLUMNS = (
    Version.id,
    Version.instruction,
    Version.params,
    Version.status,
    Version.set_id,
    Version.set_index,
    Version.score,
)


async def history_steps(
    session: AsyncSession, conversation: Conversation
) -> tuple[list[Step], list[Step]]:
    """The path root -> head and the pending edits, as plain column rows.

    `/history` on a long chain reads many rows; plain rows skip the ORM's per-object cost. A
    parent is always created before its children, so ordering by id orders the path.
    """
    path: list[Step] = []
    if conversation.head_id is not None:
        chain = (
            select(Version.id, Version.parent_id)
            .where(Version.id == conversation.head_id)
            .cte(recursive=True)
        )
        chain = chain.union_all(
            select(Version.id, Version.parent_id).join(chain, Version.id == chain.c.parent_id)
        )
        rows = await session.execute(
            select(*_STEP_COLUMNS).join(chain, Version.id == chain.c.id).order_by(Version.id)
        )
        path = [Step(*row) for row in rows]
    rows = await session.execute(
        select(*_STEP_COLUMNS)
        .where(Version.conversation_id == conversation.id, Version.status.in_(PENDING_STATUSES))
        .order_by(Version.id)
    )
    return path, [Step(*row) for row in rows]


async def pending(session: AsyncSession, conversation: Conversation) -> Sequence[Version]:
    """Queued and running edits of this conversation, oldest first."""
    return (
        await session.scalars(
            select(Version)
            .where(Version.conversation_id == conversation.id, Version.status.in_(PENDING_STATUSES))
            .order_by(Version.id)
        )
    ).all()


async def latest_pending(session: AsyncSession, conversation: Conversation) -> Version | None:
    """The newest queued or running edit: chained instructions build on it, not on the head."""
    return await session.scalar(
        select(Version)
        .where(Version.conversation_id == conversation.id, Version.status.in_(PENDING_STATUSES))
        .order_by(Version.id.desc())
        .limit(1)
    )


async def count_pending_for_user(session: AsyncSession, platform: str, user_id: str) -> int:
    """Pending requests of one user across all their chats (for the per-user cap).

    A candidate set (variations, best-of-N) is one request, however many candidates it has.
    """
    return (
        await session.scalar(
            select(func.count(func.distinct(func.coalesce(Version.set_id, Version.id))))
            .join(Conversation, Conversation.id == Version.conversation_id)
            .where(
                Conversation.platform == platform,
                Conversation.user_id == user_id,
                Version.status.in_(PENDING_STATUSES),
            )
        )
    ) or 0


async def count_queued(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count(Version.id)).where(Version.status.in_(PENDING_STATUSES))
        )
    ) or 0


async def update_settings(
    session: AsyncSession, conversation: Conversation, settings: dict[str, Any]
) -> None:
    conversation.settings = dict(settings)


async def forget(session: AsyncSession, platform: str, user_id: str) -> set[str]:
    """Delete every conversation and version of a user on a platform.

    Returns the image digests that no remaining version references, for the caller to delete
    from the image store after the transaction commits.
    """
    conversation_ids = (
        await session.scalars(
            select(Conversation.id).where(
                Conversation.platform == platform, Conversation.user_id == user_id
            )
        )
    ).all()
    if not conversation_ids:
        return set()
    rows = await session.execute(
        select(Version.image_sha, Version.raw_image_sha).where(
            Version.conversation_id.in_(conversation_ids)
        )
    )
    shas = {sha for row in rows.all() for sha in row if sha is not None}
    shas |= await regions.mask_shas_of_conversations(session, conversation_ids)
    await regions.forget(session, conversation_ids)
    await session.execute(
        update(Conversation).where(Conversation.id.in_(conversation_ids)).values(head_id=None)
    )
    await session.execute(
        update(Version)
        .where(Version.conversation_id.in_(conversation_ids))
        .values(redo_child_id=None, parent_id=None)
    )
    await session.execute(delete(Version).where(Version.conversation_id.in_(conversation_ids)))
    await session.execute(delete(Conversation).where(Conversation.id.in_(conversation_ids)))
    return shas - await images_in_use(session, shas)


async def images_in_use(session: AsyncSession, shas: Iterable[str]) -> set[str]:
    """The digests among `shas` that some version still references, as its image, its raw
    model output or a region mask (the rest may be deleted)."""
    wanted = set(shas)
    if not wanted:
        return set()
    shown = await session.scalars(select(Version.image_sha).where(Version.image_sha.in_(wanted)))
    raw = await session.scalars(
        select(Version.raw_image_sha).where(Version.raw_image_sha.in_(wanted))
    )
    masks = await regions.masks_in_use(session, wanted)
    return {sha for sha in [*shown.all(), *raw.all()] if sha is not None} | masks
