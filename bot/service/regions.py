"""`/keep <what>`, `/only <what>`, their `off`, and `/regions`: the named regions that
protect or confine a conversation's following edits.

Setting a region masks it on the current photo first (`RegionMasker`, in the model thread):
words that cover nothing or the whole photo are refused and change nothing; otherwise the
region is stored for the conversation and the reply carries a preview of what it covers.
Each following edit records the regions in force (`Edits`) and is masked on its own parent
when it runs (bot/work/batching.py), so the stored mask is the one the result was made with.
"""

from __future__ import annotations

import logging

from bot.service.lookup import started_conversation
from bot.service.messages import Key
from bot.service.replies import Note, Reply, ReplyKind, replies_to_errors
from bot.work.masking import RegionMasker
from editor.errors import ModelLoadError
from editor.regions import KEEP, ONLY, Region, RegionKind
from storage import regions, tree
from storage.database import Database
from storage.errors import NoImageYet
from storage.types import Actor

log = logging.getLogger(__name__)

MAX_REGION_CHARS = 100
"""CLIPSeg reads short phrases (77 tokens at most); a region is a few words."""
OFF_WORDS = frozenset({"off", "none", "clear", "stop"})

SET_KEYS = {KEEP: Key.REGION_KEEP_SET, ONLY: Key.REGION_ONLY_SET}
OFF_KEYS = {KEEP: Key.REGION_KEEP_OFF, ONLY: Key.REGION_ONLY_OFF}
LINE_KEYS = {KEEP: Key.REGION_LINE_KEEP, ONLY: Key.REGION_LINE_ONLY}
QUOTES = "\"'“”‘’«»"


def clean_region_text(text: str | None) -> str:
    """The region's words: spaces tidied and surrounding quotes dropped ("“the logo”")."""
    return " ".join((text or "").split()).strip(QUOTES).strip()


class Regions:
    """Sets, clears and shows the regions of a conversation."""

    def __init__(self, database: Database, masker: RegionMasker | None) -> None:
        self.database = database
        self.masker = masker

    async def command(self, actor: Actor, kind: RegionKind, text: str | None) -> Reply:
        """What `/keep <text>` or `/only <text>` asks: set it, or clear it with "off"."""
        words = clean_region_text(text)
        if words.casefold() in OFF_WORDS:
            return await self.clear(actor, kind)
        return await self.set(actor, kind, words)

    @replies_to_errors
    async def set(self, actor: Actor, kind: RegionKind, text: str) -> Reply:
        """Mask `text` on the current photo; store it as the conversation's `kind` region."""
        words = clean_region_text(text)
        if not words:
            return Reply(key=Key.REGION_USAGE, kind=ReplyKind.ERROR)
        if len(words) > MAX_REGION_CHARS:
            return Reply(
                key=Key.REGION_TOO_LONG, args={"max_chars": MAX_REGION_CHARS}, kind=ReplyKind.ERROR
            )
        if self.masker is None:
            return Reply(key=Key.REGION_UNAVAILABLE, kind=ReplyKind.ERROR)
        async with self.database.read() as session:
            conversation = await started_conversation(session, actor)
            head = await tree.head(session, conversation)
        if head is None or head.image_sha is None:
            raise NoImageYet()
        try:
            preview = await self.masker.preview(head.image_sha, words)
        except ModelLoadError as error:  # the operator's to fix; the user hears it plainly
            log.error("regions unavailable: %s (check PIX2CHAT_SEGMENTER_MODEL)", error)
            return Reply(key=Key.REGION_UNAVAILABLE, kind=ReplyKind.ERROR)
        if preview.coverage.is_nothing:
            return Reply(key=Key.REGION_NOT_FOUND, args={"text": words}, kind=ReplyKind.ERROR)
        if preview.coverage.is_everything:
            return Reply(key=Key.REGION_EVERYTHING, args={"text": words}, kind=ReplyKind.ERROR)
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            await regions.set_region(session, conversation, Region(kind, words))
            active = await regions.active(session, conversation)
        return Reply(
            key=SET_KEYS[kind],
            args={"text": words},
            version_id=head.id,
            kind=ReplyKind.REGION,
            notes=_overlap_note(active),
            picture=preview.jpeg,
        )

    @replies_to_errors
    async def clear(self, actor: Actor, kind: RegionKind) -> Reply:
        """`/keep off`, `/only off`: following edits are no longer constrained that way."""
        async with self.database.write() as session:
            conversation = await tree.find_conversation(session, actor)
            current = await regions.active(session, conversation) if conversation else []
            mine = [region for region in current if region.kind == kind]
            if conversation is None or not mine:
                return Reply(key=Key.REGION_WAS_OFF)
            await regions.clear(session, conversation, kind)
        return Reply(key=OFF_KEYS[kind], args={"text": mine[0].text})

    @replies_to_errors
    async def show(self, actor: Actor) -> Reply:
        """`/regions`: what is set for the next edits."""
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            active = await regions.active(session, conversation) if conversation else []
        if not active:
            return Reply(key=Key.REGION_NONE)
        lines = tuple(Note(LINE_KEYS[region.kind], {"text": region.text}) for region in active)
        return Reply(
            key=Key.REGION_SHOW,
            args={region.kind: region.text for region in active},
            notes=(*lines, *_overlap_note(active)),
        )


def _overlap_note(active: list[Region]) -> tuple[Note, ...]:
    """Both kinds set: say that keep wins where they overlap."""
    texts = {region.kind: region.text for region in active}
    if KEEP in texts and ONLY in texts:
        return (Note(Key.REGION_KEEP_WINS, {"keep": texts[KEEP], "only": texts[ONLY]}),)
    return ()
