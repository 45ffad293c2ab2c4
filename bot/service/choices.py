"""Choice in every turn: variations of an edit, stronger or subtler re-runs, and picking one
candidate of a set. Each re-runs the current version's instruction on its parent."""

from __future__ import annotations

import dataclasses

from sqlalchemy.ext.asyncio import AsyncSession

from bot.service.admission import Gatekeeper
from bot.service.edits import Edits
from bot.service.messages import Key
from bot.service.preferences import new_seed
from bot.service.replies import Reply, ReplyKind, replies_to_errors
from bot.service.sets import RESULT_ACTIONS
from editor.params import GUIDANCE_RANGE, IMAGE_GUIDANCE_RANGE, EditParams
from storage import regions, tree
from storage.database import Database
from storage.errors import (
    AtStrongest,
    AtSubtlest,
    NotACandidate,
    NothingToRegenerate,
    NothingToVary,
    SetNotCurrent,
    VersionNotReady,
)
from storage.models import CandidateOrigin, Conversation, Version
from storage.types import Actor

VARIATION_COUNT = 4
"""Variations make this many candidates (one micro-batch with the default PIX2CHAT_MAX_BATCH)."""
TEXT_GUIDANCE_STEP = 2.5
"""Stronger raises text guidance by this much (Subtler lowers it), within GUIDANCE_RANGE."""
IMAGE_GUIDANCE_STEP = 0.25
"""Stronger lowers image guidance by this much (Subtler raises it), within
IMAGE_GUIDANCE_RANGE."""


def stronger(params: EditParams) -> EditParams | None:
    """One step stronger (more text guidance, less image guidance); None at the edge."""
    return _step(params, +1)


def subtler(params: EditParams) -> EditParams | None:
    """One step subtler (less text guidance, more image guidance); None at the edge."""
    return _step(params, -1)


def _step(params: EditParams, direction: int) -> EditParams | None:
    text = _clamp(params.guidance_scale + direction * TEXT_GUIDANCE_STEP, GUIDANCE_RANGE)
    image = _clamp(
        params.image_guidance_scale - direction * IMAGE_GUIDANCE_STEP, IMAGE_GUIDANCE_RANGE
    )
    if (text, image) == (params.guidance_scale, params.image_guidance_scale):
        return None
    return dataclasses.replace(params, guidance_scale=text, image_guidance_scale=image)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return round(min(max(value, bounds[0]), bounds[1]), 2)


class Choices:
    """Variations, Stronger / Subtler and the pick of a candidate, on top of `Edits`."""

    def __init__(self, database: Database, gate: Gatekeeper, edits: Edits) -> None:
        self.database = database
        self.gate = gate
        self.edits = edits

    @replies_to_errors
    async def variations(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Four candidates of the version's instruction on its parent, with new seeds."""
        async with self.database.write() as session:
            conversation, target, parent = await self._rerun_target(session, actor, version_id)
            params = target.edit_params()
            seeds = _distinct_seeds(VARIATION_COUNT)
            candidates = await self.gate.admit_set(
                session,
                actor,
                conversation,
                parent,
                target.instruction or "",
                [dataclasses.replace(params, seed=seed) for seed in seeds],
                CandidateOrigin.VARIATIONS.value,
            )
            for candidate in candidates:
                await _same_regions(session, target, candidate)
        return await self.edits.queue_set(actor, candidates, parent, Key.VARIATIONS_QUEUED)

    @replies_to_errors
    async def stronger(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The same instruction and seed, applied more strongly."""
        return await self._tuned(actor, version_id, CandidateOrigin.STRONGER)

    @replies_to_errors
    async def subtler(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The same instruction and seed, applied more gently."""
        return await self._tuned(actor, version_id, CandidateOrigin.SUBTLER)

    async def _tuned(self, actor: Actor, version_id: int | None, origin: CandidateOrigin) -> Reply:
        async with self.database.write() as session:
            conversation, target, parent = await self._rerun_target(session, actor, version_id)
            current = target.edit_params()
            is_stronger = origin is CandidateOrigin.STRONGER
            params = stronger(current) if is_stronger else subtler(current)
            if params is None:
                edge = AtStrongest if is_stronger else AtSubtlest
                raise edge(
                    guidance_scale=current.guidance_scale,
                    image_guidance_scale=current.image_guidance_scale,
                )
            version = await self.gate.admit(
                session, actor, conversation, parent, target.instruction or "", params, None
            )
            version.origin = origin.value
            await _same_regions(session, target, version)
        reply = await self.edits.queue_one(actor, version, parent)
        if reply.is_error:
            return reply
        return dataclasses.replace(
            reply,
            key=Key.TUNED_QUEUED,
            args={
                **reply.args,
                "direction": "stronger" if is_stronger else "subtler",
                "guidance_scale": params.guidance_scale,
                "image_guidance_scale": params.image_guidance_scale,
            },
        )

    @replies_to_errors
    async def pick(self, actor: Actor, version_id: int) -> Reply:
        """ "Use n": that candidate becomes the current version; its siblings stay in the tree.

        Refused when the set is no longer current: the user undid it, reset, or started over
        (the head's path passes through none of its candidates).
        """
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
            if version.set_id is None:
                raise NotACandidate()
            if not version.is_done:
                raise VersionNotReady(version_id=version.id)
            siblings = {v.id for v in await tree.candidates_of(session, version.set_id)}
            path = await tree.path_to(session, conversation.head_id) if conversation.head_id else []
            if not siblings & {v.id for v in path}:
                raise SetNotCurrent()
            await tree.pick(session, conversation, version)
        return Reply(
            key=Key.VARIATIONS_PICKED,
            args={
                "number": version.set_index,
                "instruction": version.instruction or "",
                "seed": (version.params or {}).get("seed"),
            },
            version_id=version.id,
            kind=ReplyKind.VERSION,
            actions=RESULT_ACTIONS,
        )

    async def _rerun_target(
        self, session: AsyncSession, actor: Actor, version_id: int | None
    ) -> tuple[Conversation, Version, Version]:
        """The version whose instruction runs again (the given one, else the newest pending
        edit, else the head), and its parent."""
        conversation = await tree.get_or_create_conversation(session, actor)
        if version_id is None:
            target = await tree.latest_pending(session, conversation) or await tree.head(
                session, conversation
            )
        else:
            target = await tree.get_version(session, conversation, version_id)
        if target is None or target.parent_id is None or target.params is None:
            raise NothingToRegenerate()
        if target.finishing() is not None:
            raise NothingToVary()
        parent = await tree.get_version(session, conversation, target.parent_id)
        return conversation, target, parent


async def _same_regions(session: AsyncSession, target: Version, rerun: Version) -> None:
    """A re-run keeps the /keep and /only regions its target was made with."""
    same = await regions.of_versions(session, [target.id])
    await regions.record_for_edit(session, rerun.id, same.get(target.id, ()))


def _distinct_seeds(count: int) -> list[int]:
    seeds: list[int] = []
    while len(seeds) < count:
        seed = new_seed()
        if seed not in seeds:
            seeds.append(seed)
    return seeds
