"""Photos and instructions in, queued edits out: a photo starts a tree, an instruction or a
regenerate adds a queued version on it (with the conversation's `/keep` and `/only` regions)."""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.service.admission import Gatekeeper, job_for
from bot.service.media import Media, StoredUpload
from bot.service.messages import Key
from bot.service.preferences import Preferences, new_seed
from bot.service.relay import Owner, Relay
from bot.service.replies import Action, Note, Reply, ReplyKind, replies_to_errors
from bot.service.sets import tuning_of
from bot.work.jobs import JobQueue
from bot.work.warmup import Warmup
from editor.params import EditParams
from storage import regions, tree
from storage.database import Database
from storage.errors import NoImageYet, NothingToRegenerate, VersionNotReady
from storage.models import CandidateOrigin, Conversation, Version
from storage.types import Actor


class Edits:
    """Records new photos and edits; admitted edits go to the queue and the relay waits for
    their events."""

    def __init__(
        self,
        database: Database,
        queue: JobQueue,
        gate: Gatekeeper,
        media: Media,
        relay: Relay,
        defaults: EditParams,
        warmup: Warmup | None = None,
    ) -> None:
        self.warmup = warmup
        """The model's load when this process runs it; None: it is ready (or elsewhere)."""
        self.database = database
        self.queue = queue
        self.gate = gate
        self.media = media
        self.relay = relay
        self.defaults = defaults

    @replies_to_errors
    async def receive_image(
        self, actor: Actor, data: bytes, caption: str | None = None, request_key: str | None = None
    ) -> Reply:
        """A new photo starts a new tree; a caption is its first instruction."""
        if request_key is not None:
            duplicate = await self._duplicate(actor, request_key)
            if duplicate is not None:
                return duplicate
        upload = await asyncio.to_thread(self.media.store_upload, data)
        try:
            async with self.database.write() as session:
                conversation = await tree.get_or_create_conversation(session, actor)
                root = await tree.add_root(
                    session, conversation, upload.sha, upload.size, request_key=request_key
                )
        except IntegrityError:
            duplicate = await self._raced_duplicate(actor, request_key)
            if duplicate is None:
                raise
            return duplicate
        notes = self._upload_notes(upload)
        if caption and caption.strip():
            reply = await self.instruct(actor, caption, base_version_id=root.id)
            # The photo is kept even when its caption is refused; the reply says why.
            if reply.is_error:
                reply = dataclasses.replace(reply, version_id=root.id)
            return dataclasses.replace(reply, notes=(*notes, *reply.notes))
        if self._warming_up():
            notes = (*notes, Note(Key.MODEL_WARMING_NOTE, {"progress": self._load_progress()}))
        return Reply(key=Key.PHOTO_RECEIVED, version_id=root.id, notes=notes)

    def _warming_up(self) -> bool:
        return self.warmup is not None and not self.warmup.ready

    def _load_progress(self) -> str:
        return self.warmup.describe() if self.warmup is not None else ""

    def _upload_notes(self, upload: StoredUpload) -> tuple[Note, ...]:
        """What the user should know about how their photo was kept."""
        if not upload.downscaled:
            return ()
        max_mp = self.media.max_stored_pixels / 1_000_000
        width, height = upload.size
        return (
            Note(
                Key.PHOTO_DOWNSCALED,
                {"max_mp": f"{max_mp:g}", "width": width, "height": height},
            ),
        )

    @replies_to_errors
    async def instruct(
        self,
        actor: Actor,
        text: str,
        base_version_id: int | None = None,
        request_key: str | None = None,
    ) -> Reply:
        """Edit the latest result (or an explicit earlier version: a branch)."""
        instruction = self.gate.clean_instruction(text)
        try:
            async with self.database.write() as session:
                conversation = await tree.get_or_create_conversation(session, actor)
                if request_key is not None:  # checked in this transaction: one fewer round trip
                    seen = await tree.find_by_request_key(session, conversation, request_key)
                    if seen is not None:
                        return Reply(key=Key.EDIT_DUPLICATE, version_id=seen.id)
                base = await self._edit_base(session, conversation, base_version_id)
                notes = await self._candidate_notes(session, base, base_version_id)
                prefs = Preferences.load(conversation.settings, self.defaults)
                active = await regions.active(session, conversation)
                if prefs.candidates > 1:
                    candidates = await self.gate.admit_set(
                        session,
                        actor,
                        conversation,
                        base,
                        instruction,
                        _candidate_params(prefs.params(), prefs.candidates),
                        CandidateOrigin.BEST_OF.value,
                        request_key,
                    )
                    for candidate in candidates:
                        await regions.record_for_edit(session, candidate.id, active)
                else:
                    version = await self.gate.admit(
                        session, actor, conversation, base, instruction, prefs.params(), request_key
                    )
                    await regions.record_for_edit(session, version.id, active)
        except IntegrityError:
            duplicate = await self._raced_duplicate(actor, request_key)
            if duplicate is None:
                raise
            return duplicate
        if prefs.candidates > 1:
            reply = await self.queue_set(actor, candidates, base, Key.BEST_OF_QUEUED)
        else:
            reply = await self._queue(actor, version, base)
        return dataclasses.replace(reply, notes=(*reply.notes, *notes)) if notes else reply

    @replies_to_errors
    async def regenerate(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Same instruction on the same parent with a new seed; the old result stays reachable."""
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            if version_id is None:
                target = await tree.latest_pending(session, conversation) or await tree.head(
                    session, conversation
                )
            else:
                target = await tree.get_version(session, conversation, version_id)
            if target is None or target.parent_id is None or target.params is None:
                raise NothingToRegenerate()
            parent = await tree.get_version(session, conversation, target.parent_id)
            params = EditParams.from_dict({**target.params, "seed": new_seed()})
            version = await self.gate.admit(
                session,
                actor,
                conversation,
                parent,
                target.instruction or "",
                params,
                None,
                target.finishing(),  # an upscale or cut-out runs again as what it was
            )
            # The same constraint as the edit it regenerates, re-masked on the same parent.
            same = await regions.of_versions(session, [target.id])
            await regions.record_for_edit(session, version.id, same.get(target.id, ()))
        return await self._queue(actor, version, parent)

    async def _edit_base(
        self, session: AsyncSession, conversation: Conversation, base_version_id: int | None
    ) -> Version:
        """An explicit version (a branch), else the newest pending edit, else the head."""
        if base_version_id is not None:
            base = await tree.get_version(session, conversation, base_version_id)
            if not (base.is_done or base.is_pending):
                raise VersionNotReady(version_id=base.id)
            return base
        latest = await tree.latest_pending(session, conversation)
        if latest is not None and latest.set_id is not None and latest.set_id != latest.id:
            # A set still running: build on candidate 1 (the reply says so), not on the last.
            latest = await tree.get_version(session, conversation, latest.set_id)
        current = latest or await tree.head(session, conversation)
        if current is None:
            raise NoImageYet()
        return current

    async def _candidate_notes(
        self, session: AsyncSession, base: Version, base_version_id: int | None
    ) -> tuple[Note, ...]:
        """Which candidate an instruction edits while its variations wait for a pick."""
        if base_version_id is not None or base.origin != CandidateOrigin.VARIATIONS.value:
            return ()
        assert base.set_id is not None
        if any(v.picked for v in await tree.candidates_of(session, base.set_id)):
            return ()
        return (Note(Key.VARIATIONS_EDITS_CANDIDATE, {"number": base.set_index}),)

    async def queue_one(self, actor: Actor, version: Version, parent: Version) -> Reply:
        """Hand one committed version to the scheduler (for the other services' re-runs)."""
        return await self._queue(actor, version, parent)

    async def queue_set(
        self, actor: Actor, candidates: list[Version], parent: Version, key: Key
    ) -> Reply:
        """Hand a committed candidate set to the scheduler; one reply, named by the set id."""
        first = candidates[0]
        for version in candidates:
            owner = Owner(
                actor, version.instruction or "", version.edit_params().seed, set_id=first.id
            )
            self.relay.expect(version.id, owner)
        for version in candidates:
            await self.queue.submit(job_for(actor, version, parent, set_size=len(candidates)))
        position = await self.queue.position(first.id)
        return Reply(
            key=key,
            args={
                "instruction": first.instruction or "",
                "position": position or 1,
                "count": len(candidates),
            },
            version_id=first.id,
            kind=ReplyKind.QUEUED,
            actions=(Action.CANCEL,),
        )

    async def _queue(self, actor: Actor, version: Version, parent: Version) -> Reply:
        """Hand the committed version to the scheduler and say where it stands."""
        instruction = version.instruction or ""
        owner = Owner(
            actor,
            instruction,
            version.edit_params().seed,
            finish=version.finishing(),
            tuned=tuning_of(version),
        )
        self.relay.expect(version.id, owner)
        await self.queue.submit(job_for(actor, version, parent))
        position = await self.queue.position(version.id)
        key = Key.EDIT_QUEUED if position and position > 1 else Key.EDIT_QUEUED_NEXT
        args = {"instruction": instruction, "position": position or 1}
        if self._warming_up():
            key, args["progress"] = Key.MODEL_WARMING, self._load_progress()
        return Reply(
            key=key,
            args=args,
            version_id=version.id,
            kind=ReplyKind.QUEUED,
            actions=(Action.CANCEL,),
        )

    async def _duplicate(self, actor: Actor, request_key: str) -> Reply | None:
        """The reply for a platform update that was already handled (delivered twice)."""
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            if conversation is None:
                return None
            version = await tree.find_by_request_key(session, conversation, request_key)
        if version is None:
            return None
        return Reply(key=Key.EDIT_DUPLICATE, version_id=version.id)

    async def _raced_duplicate(self, actor: Actor, request_key: str | None) -> Reply | None:
        """After a unique-key clash: the reply for the copy of the update that won the race."""
        if request_key is None:
            return None
        return await self._duplicate(actor, request_key)


def _candidate_params(params: EditParams, count: int) -> list[EditParams]:
    """Best-of-N: the edit's own parameters first, then the same with other seeds."""
    seeds = [params.seed]
    while len(seeds) < count:
        seed = new_seed()
        if seed not in seeds:
            seeds.append(seed)
    return [dataclasses.replace(params, seed=seed) for seed in seeds]
