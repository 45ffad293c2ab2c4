"""The conversation service: every frontend's single entry point.

Frontends translate platform events into these calls and render the `Reply` they get back;
progress and results arrive later through `subscribe`. The service never imports a chat
library and never touches the model: it records versions and hands jobs to a `JobQueue`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec

from PIL import Image
from sqlalchemy.exc import IntegrityError

from bot.service.messages import format_wait
from bot.service.preferences import Preferences, new_seed
from bot.service.replies import Action, HistoryEntry, Reply, UpdateListener
from bot.work.jobs import Job, JobDone, JobEvent, JobPreview, JobProgress, JobQueue, JobStarted
from editor.base import Editor
from editor.errors import EmptyInstruction, ImageTooLarge, InstructionTooLong, UserError
from editor.images import (
    ImageLimits,
    encode_png,
    encode_preview_jpeg,
    fit_to_resolution,
    load_image,
)
from editor.params import RESOLUTIONS, EditParams
from storage import lifecycle, limits, tree
from storage.database import Database
from storage.errors import (
    EditAlreadyRunning,
    NoImageYet,
    NothingToCancel,
    NothingToRegenerate,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    TooManyPending,
    VersionNotReady,
)
from storage.images import ImageStore
from storage.models import Conversation, Version
from storage.types import Actor

log = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 1000
STORED_LONG_SIDE = 2 * max(RESOLUTIONS)
"""Uploads are kept losslessly but no larger than twice the largest edit resolution."""
MAX_PREVIEWS = 256
"""Running edits whose latest preview is kept in memory (a few tens of kB each)."""

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class _Owner:
    """What the service remembers about a queued version to report on it without a query."""

    actor: Actor
    instruction: str
    seed: int | None


def _done_reply(version_id: int, instruction: str, seed: int | None) -> Reply:
    return Reply(
        key="edit.done",
        args={"instruction": instruction, "seed": seed},
        version_id=version_id,
        show_image=True,
        actions=(Action.UNDO, Action.REGENERATE, Action.FULL_RESOLUTION),
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """Caps checked before an edit is queued."""

    max_pending_per_user: int = 3
    queue_cap: int = 200
    rate: limits.LimitPolicy = dataclasses.field(default_factory=limits.LimitPolicy)


def error_reply(error: UserError) -> Reply:
    args = dict(error.args_for_message)
    if isinstance(error, RateLimited | QuotaExceeded):
        args["wait"] = format_wait(args.get("retry_after_s") or args.get("resets_in_s") or 1)
    if isinstance(error, ImageTooLarge):
        if "max_mb" in args:
            args["limit"] = f"{args['max_mb']} MB"
        elif "max_megapixels" in args:
            args["limit"] = f"{args['max_megapixels']} megapixels"
    return Reply(key=error.key, args=args, is_error=True)


def replies_to_errors(
    method: Callable[P, Awaitable[Reply]],
) -> Callable[P, Awaitable[Reply]]:
    """User errors become friendly error replies, so frontends never see a traceback."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Reply:
        try:
            return await method(*args, **kwargs)
        except UserError as error:
            return error_reply(error)

    return wrapper


class ConversationService:
    """Photo in, instructions in, versions out; one per process, shared by every frontend."""

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        queue: JobQueue,
        tokens: Editor,
        *,
        defaults: EditParams | None = None,
        admission: Admission | None = None,
        image_limits: ImageLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.images = images
        self.queue = queue
        self.tokens = tokens
        self.defaults = defaults or EditParams()
        self.admission = admission or Admission()
        self.image_limits = image_limits or ImageLimits()
        self.clock = clock
        self._listeners: dict[str, list[UpdateListener]] = {}
        self._owners: dict[int, _Owner] = {}
        self._previews: dict[int, JobPreview] = {}  # latest per running version, oldest first
        queue.subscribe(self._on_job_event)

    # ----- subscriptions ---------------------------------------------------------------------

    def subscribe(self, platform: str, listener: UpdateListener) -> None:
        """Receive progress, results and failures for this platform's chats."""
        self._listeners.setdefault(platform, []).append(listener)

    def unsubscribe(self, platform: str, listener: UpdateListener) -> None:
        """Stop receiving; results that finish meanwhile wait for `redeliver`."""
        listeners = self._listeners.get(platform, [])
        if listener in listeners:
            listeners.remove(listener)

    async def redeliver(self, platform: str) -> int:
        """Re-send results that finished while nobody was there to deliver them (after a crash)."""
        async with self.database.read() as session:
            rows = await lifecycle.undelivered(session, platform)
        for version, conversation in rows:
            actor = Actor(conversation.platform, conversation.chat_id, conversation.user_id)
            await self._publish(actor, self._result_reply(version))
        return len(rows)

    async def mark_delivered(self, version_id: int) -> None:
        """A frontend calls this once the result (or failure) reached the chat."""
        async with self.database.write() as session:
            await lifecycle.mark_delivered(session, version_id)

    # ----- photos and instructions -------------------------------------------------------------

    @replies_to_errors
    async def receive_image(
        self, actor: Actor, data: bytes, caption: str | None = None, request_key: str | None = None
    ) -> Reply:
        """A new photo starts a new tree; a caption is its first instruction."""
        if request_key is not None:
            duplicate = await self._duplicate(actor, request_key)
            if duplicate is not None:
                return duplicate
        sha, size = await asyncio.to_thread(self._store_upload, data)
        try:
            async with self.database.write() as session:
                conversation = await tree.get_or_create_conversation(session, actor)
                root = await tree.add_root(
                    session, conversation, sha, size, request_key=request_key
                )
        except IntegrityError:
            duplicate = await self._raced_duplicate(actor, request_key)
            if duplicate is None:
                raise
            return duplicate
        if caption and caption.strip():
            reply = await self.instruct(actor, caption, base_version_id=root.id)
            # The photo is kept even when its caption is refused; the reply says why.
            return reply if not reply.is_error else dataclasses.replace(reply, version_id=root.id)
        return Reply(key="photo.received", version_id=root.id)

    def _store_upload(self, data: bytes) -> tuple[str, tuple[int, int]]:
        """Validate, normalise and store an upload losslessly (runs in a worker thread)."""
        image = load_image(data, self.image_limits)
        if max(image.size) > STORED_LONG_SIDE:
            image = fit_to_resolution(image, STORED_LONG_SIDE)
        return self.images.put(encode_png(image)), image.size

    @replies_to_errors
    async def instruct(
        self,
        actor: Actor,
        text: str,
        base_version_id: int | None = None,
        request_key: str | None = None,
    ) -> Reply:
        """Edit the latest result (or an explicit earlier version: a branch)."""
        instruction = self._clean_instruction(text)
        try:
            async with self.database.write() as session:
                conversation = await tree.get_or_create_conversation(session, actor)
                if request_key is not None:  # checked in this transaction: one fewer round trip
                    seen = await tree.find_by_request_key(session, conversation, request_key)
                    if seen is not None:
                        return Reply(key="edit.duplicate", version_id=seen.id)
                base = await self._edit_base(session, conversation, base_version_id)
                prefs = Preferences.load(conversation.settings, self.defaults)
                version = await self._admit_edit(
                    session, actor, conversation, base, instruction, prefs.params(), request_key
                )
        except IntegrityError:
            duplicate = await self._raced_duplicate(actor, request_key)
            if duplicate is None:
                raise
            return duplicate
        return await self._queue(actor, version, base)

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
            version = await self._admit_edit(
                session, actor, conversation, parent, target.instruction or "", params, None
            )
        return await self._queue(actor, version, parent)

    async def _edit_base(
        self, session: Any, conversation: Conversation, base_version_id: int | None
    ) -> Version:
        """An explicit version (a branch), else the newest pending edit, else the head."""
        if base_version_id is not None:
            base = await tree.get_version(session, conversation, base_version_id)
            if not (base.is_done or base.is_pending):
                raise VersionNotReady(version_id=base.id)
            return base
        latest = await tree.latest_pending(session, conversation)
        current = latest or await tree.head(session, conversation)
        if current is None:
            raise NoImageYet()
        return current

    def _clean_instruction(self, text: str) -> str:
        instruction = " ".join((text or "").split())
        if not instruction:
            raise EmptyInstruction()
        max_tokens = self.tokens.max_instruction_tokens
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise InstructionTooLong(tokens=f"over {max_tokens}", max_tokens=max_tokens)
        count = self.tokens.count_tokens(instruction)
        if count > max_tokens:
            raise InstructionTooLong(tokens=count, max_tokens=max_tokens)
        return instruction

    async def _admit_edit(
        self,
        session: Any,
        actor: Actor,
        conversation: Conversation,
        parent: Version,
        instruction: str,
        params: EditParams,
        request_key: str | None,
    ) -> Version:
        """Check every cap and record the queued version, all in one write transaction."""
        if await self.queue.depth() >= self.admission.queue_cap:  # the queue knows
            raise QueueFull()
        pending = await tree.count_pending_for_user(session, actor.platform, actor.user_id)
        if pending >= self.admission.max_pending_per_user:
            raise TooManyPending(count=pending)
        await limits.consume(
            session, actor.platform, actor.user_id, self.admission.rate, self.clock()
        )
        version = await tree.add_edit(
            session, conversation, parent, instruction, params, request_key=request_key
        )
        await self.queue.defer_in(session, _job(actor, version, parent))
        return version

    async def _queue(self, actor: Actor, version: Version, parent: Version) -> Reply:
        """Hand the committed version to the scheduler and say where it stands."""
        instruction = version.instruction or ""
        self._owners[version.id] = _Owner(actor, instruction, version.edit_params().seed)
        await self.queue.submit(_job(actor, version, parent))
        position = await self.queue.position(version.id)
        key = "edit.queued" if position and position > 1 else "edit.queued_next"
        return Reply(
            key=key,
            args={"instruction": instruction, "position": position or 1},
            version_id=version.id,
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
        return Reply(key="edit.duplicate", version_id=version.id)

    async def _raced_duplicate(self, actor: Actor, request_key: str | None) -> Reply | None:
        """After a unique-key clash: the reply for the copy of the update that won the race."""
        if request_key is None:
            return None
        return await self._duplicate(actor, request_key)

    # ----- navigation --------------------------------------------------------------------------

    @replies_to_errors
    async def undo(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Show the version before the head, or before `version_id` (an older result's button).

        The undone version stays, ready for redo.
        """
        async with self.database.write() as session:
            conversation = await self._conversation(session, actor)
            if version_id is None:
                version = await tree.undo(session, conversation)
            else:
                undone = await tree.get_version(session, conversation, version_id)
                version = await tree.undo_from(session, conversation, undone)
        return self._image_reply("undo.done", version)

    @replies_to_errors
    async def redo(self, actor: Actor) -> Reply:
        async with self.database.write() as session:
            conversation = await self._conversation(session, actor)
            version = await tree.redo(session, conversation)
        key = "redo.done" if version.instruction else "redo.done_photo"
        return self._image_reply(key, version)

    @replies_to_errors
    async def reset(self, actor: Actor) -> Reply:
        """Start over from the original photo of the current chain (as a new root)."""
        async with self.database.write() as session:
            conversation = await self._conversation(session, actor)
            if conversation.head_id is None:
                raise NoImageYet()
            path = await tree.path_to(session, conversation.head_id)
            original = path[0]
            assert original.image_sha is not None and original.width and original.height
            root = await tree.add_root(
                session, conversation, original.image_sha, (original.width, original.height)
            )
        return self._image_reply("reset.done", root)

    @replies_to_errors
    async def history(self, actor: Actor) -> Reply:
        """The chain root -> head, with instructions and parameters, plus edits still pending."""
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            if conversation is None or conversation.head_id is None:
                return Reply(key="history.empty")
            path, pending = await tree.history_steps(session, conversation)
        entries = tuple(
            HistoryEntry(
                version_id=v.id,
                instruction=v.instruction,
                params=v.params,
                status=v.status.value,
                is_head=v.id == conversation.head_id,
            )
            for v in [*path, *pending]
        )
        return Reply(
            key="history.show",
            args={"count": len(path)},
            version_id=conversation.head_id,
            history=entries,
        )

    # ----- settings ----------------------------------------------------------------------------

    @replies_to_errors
    async def settings(self, actor: Actor) -> Reply:
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            stored = conversation.settings if conversation else {}
        return self._settings_reply("settings.show", Preferences.load(stored, self.defaults))

    @replies_to_errors
    async def update_setting(self, actor: Actor, name: str, value: Any) -> Reply:
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            prefs = Preferences.load(conversation.settings, self.defaults).with_value(name, value)
            await tree.update_settings(session, conversation, _changed(prefs, self.defaults))
        return self._settings_reply("settings.updated", prefs, name=name, value=value)

    @replies_to_errors
    async def reset_settings(self, actor: Actor) -> Reply:
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            await tree.update_settings(session, conversation, {})
        return self._settings_reply("settings.reset", Preferences.load({}, self.defaults))

    def _settings_reply(self, key: str, prefs: Preferences, **extra: Any) -> Reply:
        values = prefs.to_dict()
        seed_text = "random" if prefs.seed_mode == "random" else f"fixed at {prefs.seed}"
        return Reply(key=key, args={**values, "seed_text": seed_text, **extra}, settings=values)

    # ----- queue -------------------------------------------------------------------------------

    @replies_to_errors
    async def cancel(self, actor: Actor) -> Reply:
        """Cancel the newest queued edit (and edits queued on top of it)."""
        async with self.database.write() as session:
            conversation = await self._conversation(session, actor)
            cancelled = await lifecycle.cancel_latest(session, conversation)
            if not cancelled:
                if await tree.pending(session, conversation):
                    raise EditAlreadyRunning()
                raise NothingToCancel()
            for _ in cancelled:
                await limits.refund(session, actor.platform, actor.user_id)
        self.queue.discard({v.id for v in cancelled})
        self._drop_previews(v.id for v in cancelled)
        return Reply(key="cancel.done", args={"count": len(cancelled)})

    @replies_to_errors
    async def status(self, actor: Actor) -> Reply:
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            pending = await tree.pending(session, conversation) if conversation else []
        if not pending:
            return Reply(key="status.idle")
        positions = [p for p in [await self.queue.position(v.id) for v in pending] if p is not None]
        if 0 in positions:
            return Reply(key="status.running", args={"count": len(pending)})
        return Reply(
            key="status.pending",
            args={"count": len(pending), "position": min(positions, default=1)},
            actions=(Action.CANCEL,),
        )

    # ----- privacy -----------------------------------------------------------------------------

    @replies_to_errors
    async def forget(self, actor: Actor) -> Reply:
        """Delete all of this user's versions and images on this platform (every chat)."""
        async with self.database.write() as session:
            conversations = await tree.conversations_of_user(session, actor.platform, actor.user_id)
            doomed = [v.id for c in conversations for v in await tree.pending(session, c)]
            unreferenced = await tree.forget(session, actor.platform, actor.user_id)
        if not conversations:
            return Reply(key="forget.nothing")
        self.queue.discard(set(doomed))
        self._drop_previews(doomed)
        for sha in unreferenced:
            self.images.delete(sha)
        return Reply(key="forget.done", args={"count": len(unreferenced)})

    # ----- images ------------------------------------------------------------------------------

    async def image(self, actor: Actor, version_id: int, *, full: bool = False) -> bytes:
        """A version's image for this actor only: lossless PNG if `full`, else a chat JPEG.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady.
        """
        async with self.database.read() as session:
            conversation = await self._conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
        if not version.is_done or version.image_sha is None:
            raise VersionNotReady(version_id=version_id)
        data = await asyncio.to_thread(self.images.get, version.image_sha)
        if full:
            return data
        return await asyncio.to_thread(_preview, data)

    async def thumbnail(self, actor: Actor, version_id: int, long_side: int = 160) -> bytes:
        """A small JPEG of a version for history strips, with the same ownership checks as
        `image` (VersionNotFound for other users' versions, VersionNotReady while pending)."""
        data = await self.image(actor, version_id, full=True)
        return await asyncio.to_thread(_thumbnail, data, long_side)

    async def preview(self, actor: Actor, version_id: int) -> bytes:
        """The latest progress preview (JPEG) of a running edit, for its owner only.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady when the
        edit has no preview (not started, finished, or the worker makes none).
        """
        async with self.database.read() as session:
            conversation = await self._conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
        latest = self._previews.get(version.id)
        if latest is None or not version.is_pending:
            raise VersionNotReady(version_id=version_id)
        return latest.jpeg

    def _keep_preview(self, event: JobPreview) -> None:
        self._previews.pop(event.version_id, None)
        self._previews[event.version_id] = event
        while len(self._previews) > MAX_PREVIEWS:
            del self._previews[next(iter(self._previews))]

    def _drop_previews(self, version_ids: Iterable[int]) -> None:
        for version_id in version_ids:
            self._previews.pop(version_id, None)

    # ----- events from the scheduler -----------------------------------------------------------

    async def _on_job_event(self, event: JobEvent) -> None:
        if isinstance(event, JobStarted):
            return
        owner = await self._owner(event.version_id)
        if owner is None:
            return
        if isinstance(event, JobProgress):
            reply = Reply(
                key="edit.progress",
                args={"step": event.step, "total": event.total, "instruction": owner.instruction},
                version_id=event.version_id,
            )
            await self._publish(owner.actor, reply)
            return
        if isinstance(event, JobPreview):
            if event.version_id not in self._owners:
                return  # it finished while its owner was looked up
            self._keep_preview(event)
            reply = Reply(
                key="edit.preview",
                args={"step": event.step, "total": event.total, "instruction": owner.instruction},
                version_id=event.version_id,
            )
            await self._publish(owner.actor, reply)
            return
        self._owners.pop(event.version_id, None)
        self._previews.pop(event.version_id, None)
        if isinstance(event, JobDone):
            # Everything the reply needs is known since submit: no query on the result path.
            reply = _done_reply(event.version_id, owner.instruction, owner.seed)
            await self._publish(owner.actor, reply)
            return
        async with self.database.write() as session:
            version = await session.get(Version, event.version_id)
            if version is None:
                return
            if not event.refunded:
                await limits.refund(session, owner.actor.platform, owner.actor.user_id)
        await self._publish(owner.actor, self._result_reply(version))

    async def _owner(self, version_id: int) -> _Owner | None:
        """Who to tell about a version: cached since submit, else (after a restart) loaded."""
        cached = self._owners.get(version_id)
        if cached is not None:
            return cached
        async with self.database.read() as session:
            version = await session.get(Version, version_id)
            if version is None:
                return None
            conversation = await session.get(Conversation, version.conversation_id)
        assert conversation is not None
        owner = _Owner(
            Actor(conversation.platform, conversation.chat_id, conversation.user_id),
            version.instruction or "",
            (version.params or {}).get("seed"),
        )
        self._owners[version_id] = owner
        return owner

    def _result_reply(self, version: Version) -> Reply:
        if version.is_done:
            seed = (version.params or {}).get("seed")
            return _done_reply(version.id, version.instruction or "", seed)
        return Reply(
            key=version.error_key or "error.edit_failed",
            args={"instruction": version.instruction or ""},
            version_id=version.id,
            is_error=True,
            actions=(Action.REGENERATE,),
        )

    async def _publish(self, actor: Actor, reply: Reply) -> None:
        for listener in self._listeners.get(actor.platform, []):
            try:
                await listener(actor, reply)
            except Exception:
                log.exception("listener for %s failed on %s", actor.platform, reply.key)

    # ----- helpers -----------------------------------------------------------------------------

    async def _conversation(self, session: Any, actor: Actor) -> Conversation:
        conversation = await tree.find_conversation(session, actor)
        if conversation is None or conversation.head_id is None:
            raise NoImageYet()
        return conversation

    def _image_reply(self, key: str, version: Version) -> Reply:
        return Reply(
            key=key,
            args={"instruction": version.instruction or ""},
            version_id=version.id,
            show_image=True,
            actions=(Action.UNDO, Action.REDO, Action.REGENERATE, Action.FULL_RESOLUTION)
            if version.parent_id
            else (Action.REDO,),
        )


def _job(actor: Actor, version: Version, parent: Version) -> Job:
    """The scheduler's view of a queued version (the parent size is known once it is done)."""
    parent_size = (
        (parent.width, parent.height) if parent.is_done and parent.width and parent.height else None
    )
    return Job(
        version_id=version.id,
        user_key=f"{actor.platform}:{actor.user_id}",
        parent_id=parent.id,
        parent_size=parent_size,
        instruction=version.instruction or "",
        params=version.edit_params(),
    )


def _changed(prefs: Preferences, defaults: EditParams) -> dict[str, Any]:
    """Only what differs from the server defaults is stored, so new defaults reach old users."""
    base = Preferences.load({}, defaults).to_dict()
    return {k: v for k, v in prefs.to_dict().items() if base.get(k) != v}


def _preview(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return encode_preview_jpeg(image.convert("RGB"))


def _thumbnail(data: bytes, long_side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((long_side, long_side))
        return encode_preview_jpeg(small, quality=80)


__all__ = ["Actor", "Admission", "ConversationService", "Reply"]
