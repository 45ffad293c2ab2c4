"""The regions of a conversation (`/keep`, `/only`) and the ones each edit was made with.

A conversation holds at most one region of each kind; an edit copies them when it is queued
(`record_for_edit`) and gets the mask it used when it is done (`record_masks`), so a version
says exactly which constraint produced it (kind, text, mask sha) and can be replayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from editor.regions import KINDS, Region, RegionKind, RegionMask
from storage.models import Conversation, ConversationRegion, Version, VersionRegion, utcnow


def _kind(value: str) -> RegionKind:
    for kind in KINDS:
        if kind == value:
            return kind
    raise ValueError(f"unknown region kind {value!r}")


async def active(session: AsyncSession, conversation: Conversation) -> list[Region]:
    """The conversation's regions, keep first."""
    rows = await session.scalars(
        select(ConversationRegion).where(ConversationRegion.conversation_id == conversation.id)
    )
    regions = [Region(_kind(row.kind), row.text) for row in rows.all()]
    return sorted(regions, key=lambda region: KINDS.index(region.kind))


async def set_region(session: AsyncSession, conversation: Conversation, region: Region) -> None:
    """Set (or replace) the conversation's region of this kind."""
    await clear(session, conversation, region.kind)
    session.add(
        ConversationRegion(
            conversation_id=conversation.id,
            kind=region.kind,
            text=region.text,
            created_at=utcnow(),
        )
    )
    await session.flush()


async def clear(session: AsyncSession, conversation: Conversation, kind: RegionKind) -> bool:
    """Remove the region of this kind; whether there was one."""
    result = await session.execute(
        delete(ConversationRegion).where(
            ConversationRegion.conversation_id == conversation.id, ConversationRegion.kind == kind
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_for_edit(
    session: AsyncSession, version_id: int, regions: Sequence[Region]
) -> None:
    """The queued edit `version_id` is made with these regions (masks come when it is done)."""
    for region in regions:
        session.add(VersionRegion(version_id=version_id, kind=region.kind, text=region.text))
    if regions:
        await session.flush()


async def of_versions(
    session: AsyncSession, version_ids: Iterable[int]
) -> dict[int, tuple[Region, ...]]:
    """The regions each of these edits is made with (edits without any are absent)."""
    wanted = set(version_ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(VersionRegion).where(VersionRegion.version_id.in_(wanted)))
    found: dict[int, list[Region]] = {}
    for row in rows.all():
        found.setdefault(row.version_id, []).append(Region(_kind(row.kind), row.text))
    return {
        version_id: tuple(sorted(regions, key=lambda region: KINDS.index(region.kind)))
        for version_id, regions in found.items()
    }


async def masks_of(session: AsyncSession, version_id: int) -> list[RegionMask]:
    """The regions and masks a done edit was made with, keep first."""
    rows = await session.scalars(
        select(VersionRegion).where(
            VersionRegion.version_id == version_id, VersionRegion.mask_sha.is_not(None)
        )
    )
    masks = [RegionMask(_kind(row.kind), row.text, row.mask_sha or "") for row in rows.all()]
    return sorted(masks, key=lambda mask: KINDS.index(mask.kind))


async def record_masks(session: AsyncSession, masks: Mapping[int, Sequence[RegionMask]]) -> None:
    """Record the masks done edits used (call in the transaction that marks them done)."""
    for version_id, used in masks.items():
        for mask in used:
            await session.execute(
                update(VersionRegion)
                .where(VersionRegion.version_id == version_id, VersionRegion.kind == mask.kind)
                .values(mask_sha=mask.mask_sha)
            )


async def mask_shas_of_conversations(
    session: AsyncSession, conversation_ids: Sequence[int]
) -> set[str]:
    """Every mask stored for edits of these conversations (for /forget)."""
    rows = await session.scalars(
        select(VersionRegion.mask_sha)
        .join(Version, Version.id == VersionRegion.version_id)
        .where(Version.conversation_id.in_(conversation_ids), VersionRegion.mask_sha.is_not(None))
    )
    return {sha for sha in rows.all() if sha is not None}


async def masks_in_use(session: AsyncSession, shas: Iterable[str]) -> set[str]:
    """The digests among `shas` that some version still uses as a region mask."""
    wanted = set(shas)
    if not wanted:
        return set()
    rows = await session.scalars(
        select(VersionRegion.mask_sha).where(VersionRegion.mask_sha.in_(wanted))
    )
    return {sha for sha in rows.all() if sha is not None}


async def forget(session: AsyncSession, conversation_ids: Sequence[int]) -> None:
    """Delete the region rows of these conversations (before their versions go)."""
    await session.execute(
        delete(VersionRegion).where(
            VersionRegion.version_id.in_(
                select(Version.id).where(Version.conversation_id.in_(conversation_ids))
            )
        )
    )
    await session.execute(
        delete(ConversationRegion).where(ConversationRegion.conversation_id.in_(conversation_ids))
    )
