"""Finishing commands: /upscale, /cutout, /white [square] as new versions in the history.

Each is admitted like an edit (same caps, counted as one edit, refunded if it fails), recorded
as a queued child of the current version with the operation in its parameters, and run by
whichever scheduler runs edits, in the model thread; undo, branching and Full resolution work
as for edits. What can be known before running (an image already at the pixel cap, a
cut-out's transparency reused, a result that will be capped) is said at once.
"""

from __future__ import annotations

import asyncio
import io

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from bot.service.admission import Gatekeeper, job_for
from bot.service.media import Media
from bot.service.messages import Key
from bot.service.preferences import Preferences
from bot.service.relay import Owner, Relay
from bot.service.replies import Action, Note, Reply, ReplyKind, replies_to_errors
from bot.work.jobs import JobQueue
from editor.errors import UserError
from editor.finishing.errors import UpscaleAtCap
from editor.finishing.spec import SCALES, Finish
from editor.finishing.upscale import can_grow, target_size
from editor.params import EditParams
from storage import tree
from storage.database import Database
from storage.errors import NoImageYet, VersionNotReady
from storage.models import Conversation, Version
from storage.types import Actor


class BadScale(UserError):
    """/upscale takes 2x or 4x."""

    key = Key.ERROR_UPSCALE_SCALE


def parse_scale(text: str | None) -> int:
    """ "", "4", "4x", "x4" -> the factor (2 by default); anything else is refused."""
    word = (text or "").strip().lower().removeprefix("x").removesuffix("x")
    if not word:
        return SCALES[0]
    if word.isdigit() and int(word) in SCALES:
        return int(word)
    raise BadScale(scales=" or ".join(f"{s}x" for s in SCALES))


class Finishing:
    """Queues finishing operations; the relay reports them like edits."""

    def __init__(
        self,
        database: Database,
        queue: JobQueue,
        gate: Gatekeeper,
        media: Media,
        relay: Relay,
        defaults: EditParams,
    ) -> None:
        self.database = database
        self.queue = queue
        self.gate = gate
        self.media = media
        self.relay = relay
        self.defaults = defaults

    @replies_to_errors
    async def upscale(
        self, actor: Actor, scale: str | None = None, version_id: int | None = None
    ) -> Reply:
        """2x or 4x super-resolution of the current version (or `version_id`)."""
        finish = Finish(
            "upscale", scale=parse_scale(scale), max_pixels=self.media.max_stored_pixels
        )
        return await self._queue(actor, finish, version_id)

    @replies_to_errors
    async def cutout(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The subject on a transparent background (a PNG file)."""
        return await self._queue(actor, Finish("cutout"), version_id)

    @replies_to_errors
    async def white(
        self, actor: Actor, square: bool = False, version_id: int | None = None
    ) -> Reply:
        """The subject centred on pure white with a margin; a 1:1 canvas if `square`."""
        return await self._queue(actor, Finish("white", square=square), version_id)

    async def command(self, actor: Actor, text: str, version_id: int | None) -> Reply | None:
        """A finishing command typed as text, for chats without slash-command menus."""
        words = text.split()
        if not words:
            return None
        name, rest = words[0].lower(), words[1:]
        if name == "/upscale":
            return await self.upscale(actor, " ".join(rest) or None, version_id)
        if name == "/cutout":
            return await self.cutout(actor, version_id)
        if name == "/white":
            return await self.white(actor, "square" in [w.lower() for w in rest], version_id)
        return None

    async def _queue(self, actor: Actor, finish: Finish, version_id: int | None) -> Reply:
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            base = await self._base(session, conversation, version_id)
            notes = await self._notes(finish, base)
            prefs = Preferences.load(conversation.settings, self.defaults)
            version = await self.gate.admit(
                session, actor, conversation, base, finish.label(), prefs.params(), None, finish
            )
        self.relay.expect(version.id, Owner(actor, finish.label(), None, finish))
        await self.queue.submit(job_for(actor, version, base))
        position = await self.queue.position(version.id)
        return Reply(
            key=Key.FINISH_QUEUED if position and position > 1 else Key.FINISH_QUEUED_NEXT,
            args={"operation": finish.label(), "position": position or 1},
            version_id=version.id,
            kind=ReplyKind.QUEUED,
            actions=(Action.CANCEL,),
            notes=notes,
        )

    async def _base(
        self, session: AsyncSession, conversation: Conversation, version_id: int | None
    ) -> Version:
        """An explicit version (a branch), else the newest pending edit, else the head."""
        if version_id is not None:
            base = await tree.get_version(session, conversation, version_id)
            if not (base.is_done or base.is_pending):
                raise VersionNotReady(version_id=base.id)
            return base
        current = await tree.latest_pending(session, conversation) or await tree.head(
            session, conversation
        )
        if current is None:
            raise NoImageYet()
        return current

    async def _notes(self, finish: Finish, base: Version) -> tuple[Note, ...]:
        """What is known before running; refuses an upscale that cannot add pixels."""
        if not base.is_done or not base.width or not base.height:
            return ()  # a pending base: its size is known when it is done
        size = (base.width, base.height)
        if finish.operation == "upscale":
            max_mp = f"{finish.max_pixels / 1_000_000:g}"
            if not can_grow(size, finish.max_pixels):
                raise UpscaleAtCap(width=size[0], height=size[1], max_mp=max_mp)
            (width, height), capped = target_size(size, finish.scale, finish.max_pixels)
            if capped:
                args = {"width": width, "height": height, "max_mp": max_mp}
                return (Note(Key.FINISH_CAPPED, args),)
            return ()
        if base.image_sha is not None and await self._is_cutout(base.image_sha):
            return (Note(Key.FINISH_ALREADY_CUTOUT),)
        return ()

    async def _is_cutout(self, sha: str) -> bool:
        """Whether the stored image has an alpha channel (only cut-outs have one)."""

        def check() -> bool:
            with Image.open(io.BytesIO(self.media.images.get(sha))) as image:
                return image.mode in ("RGBA", "LA", "PA")

        return await asyncio.to_thread(check)
