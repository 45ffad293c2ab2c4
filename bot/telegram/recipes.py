"""Telegram handlers for recipes: `/recipe`, `/recipes`, photos captioned `/recipe NAME`
(an album is one batch), `/recipe NAME` in reply to a photo or an album, and recipe files.

An album reaches a bot as separate updates that share a media_group_id, and only one carries
the caption: its items are collected for a short window (`ALBUM_WINDOW_S` after the last
one), then applied together if one caption asks for a recipe, else handled as before (its
first photo). Recent albums are remembered, so `/recipe NAME` in reply to any of their photos
takes them all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from telegram import Message, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import ContextTypes, filters

from bot.service.batches import Photo
from bot.service.conversation import error_reply
from bot.service.replies import Reply, ReplyKind
from bot.telegram.delivery import actor_for
from bot.telegram.handlers import (
    _addressed_to_bot,
    _answer,
    _ctx,
    _receive,
    _who,
    _without_mention,
)
from editor.errors import ImageError, ImageTooLarge

log = logging.getLogger(__name__)

ALBUM_WINDOW_S = 1.5
"""How long after an album's last item to wait for more (Telegram sends them within ~1 s)."""
REMEMBERED_ALBUMS = 500
CAPTION = re.compile(r"^/recipe(?:@\w+)?\s+(\S+)\s*$", re.IGNORECASE)
RECIPE_FILE = filters.Document.FileExtension("json") | filters.Document.MimeType("application/json")


class _InAlbum(filters.MessageFilter):
    """Photos and image files that belong to an album (a media group)."""

    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


IN_ALBUM = _InAlbum(name="InAlbum")
CAPTIONED = filters.CaptionRegex(r"^/recipe(@\w+)?\s")


@dataclass
class _Album:
    items: list[tuple[Update, Message]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    last_at: float = 0.0


class Albums:
    """Album items by (chat, media group): collected for a window, remembered afterwards."""

    def __init__(self, window_s: float = ALBUM_WINDOW_S) -> None:
        self.window_s = window_s
        self._open: dict[tuple[int, str], _Album] = {}
        self.recent: OrderedDict[tuple[int, str], list[Message]] = OrderedDict()

    def members(self, message: Message) -> list[Message]:
        """The photos of the album `message` belongs to (itself if none is remembered)."""
        group = message.media_group_id
        if group is None:
            return [message]
        return self.recent.get((message.chat.id, group), [message])

    def add(self, update: Update, message: Message, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        album = self._open.setdefault(key, _Album())
        album.items.append((update, message))
        album.last_at = asyncio.get_running_loop().time()
        if album.task is None:
            album.task = asyncio.create_task(self._close(key, context), name=f"album-{key}")

    async def _close(self, key: tuple[int, str], context: ContextTypes.DEFAULT_TYPE) -> None:
        album = self._open[key]
        loop = asyncio.get_running_loop()
        while True:  # each later item moves the deadline
            left = album.last_at + self.window_s - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(left)
        del self._open[key]
        items = sorted(album.items, key=lambda item: item[1].message_id)
        self.recent[key] = [message for _update, message in items]
        while len(self.recent) > REMEMBERED_ALBUMS:
            self.recent.popitem(last=False)
        try:
            await _album_complete(items, context)
        except Exception:
            log.exception("album %s could not be handled", key)


def recipe_name(text: str | None) -> str | None:
    """NAME of a `/recipe NAME` caption (subcommands are not names to apply)."""
    found = CAPTION.match((text or "").strip())
    if found is None or found.group(1).lower() in ("save", "show", "delete", "export", "list"):
        return None
    return found.group(1)


def _albums(context: ContextTypes.DEFAULT_TYPE) -> Albums:
    albums = context.bot_data.get("pix2chat-albums")
    if not isinstance(albums, Albums):
        albums = context.bot_data["pix2chat-albums"] = Albums()
    return albums


# ----- handlers -----------------------------------------------------------------------------


async def recipe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/recipe save|show|delete|export NAME, /recipe NAME in reply to a photo or album."""
    message, user = _who(update)
    words = list(context.args or [])
    replied = message.reply_to_message
    if words and replied is not None and (replied.photo or replied.document):
        name = recipe_name(f"/recipe {words[0]}")
        if name is not None:
            await _apply(update, context, name, _albums(context).members(replied))
            return
    reply = await _ctx(context).service.recipe(actor_for(message.chat.id, user.id), words)
    await _answer(update, context, reply)


async def recipes(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/recipes: the user's recipes."""
    message, user = _who(update)
    reply = await _ctx(context).service.recipe(actor_for(message.chat.id, user.id), ["list"])
    await _answer(update, context, reply)


async def album_item(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo of an album: collected with the others for a moment."""
    message, _user = _who(update)
    _albums(context).add(update, message, context)


async def captioned(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One photo captioned /recipe NAME."""
    message, _user = _who(update)
    name = recipe_name(_without_mention(message.caption or "", context.bot.username))
    if name is None:
        reply = await _ctx(context).service.recipe(
            actor_for(message.chat.id, _who(update)[1].id), (message.caption or "").split()[1:]
        )
        await _answer(update, context, reply)
        return
    await _apply(update, context, name, [message])


async def recipe_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A recipe file (JSON) sent back: imported, or a clear reply why not."""
    message, user = _who(update)
    if not _addressed_to_bot(message, context, needs_caption=True):
        return
    document = message.document
    assert document is not None
    ctx = _ctx(context)
    data = await _download(context, document.file_id, document.file_size, ctx.download_limit)
    if isinstance(data, Reply):
        await _answer(update, context, data)
        return
    await _answer(
        update, context, await ctx.service.import_recipe(actor_for(message.chat.id, user.id), data)
    )


# ----- applying -----------------------------------------------------------------------------


async def _album_complete(
    items: list[tuple[Update, Message]], context: ContextTypes.DEFAULT_TYPE
) -> None:
    """The whole album is here: a recipe batch if a caption asks for one, else as before."""
    for update, message in items:
        name = recipe_name(_without_mention(message.caption or "", context.bot.username))
        if name is not None:
            await _apply(update, context, name, [m for _u, m in items])
            return
    update, message = next(((u, m) for u, m in items if m.caption), items[0])
    if not _addressed_to_bot(message, context, needs_caption=True):
        return
    if message.photo:
        largest = message.photo[-1]
        await _receive(update, context, largest.file_id, largest.file_size)
    elif message.document is not None:
        await _receive(update, context, message.document.file_id, message.document.file_size)


async def _apply(
    update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, messages: list[Message]
) -> None:
    """Download every photo (with Telegram's limits), then hand the batch to the service."""
    message, user = _who(update)
    ctx = _ctx(context)
    await ctx.delivery.safely(context.bot.send_chat_action(message.chat.id, ChatAction.TYPING))
    photos: list[Photo] = []
    for number, item in enumerate(messages, start=1):
        if item.photo:
            file_id, size, label = (
                item.photo[-1].file_id,
                item.photo[-1].file_size,
                f"photo {number}",
            )
        elif item.document is not None:
            document = item.document
            file_id, size = document.file_id, document.file_size
            label = document.file_name or f"file {number}"
        else:
            continue
        data = await _download(context, file_id, size, ctx.download_limit)
        if isinstance(data, Reply):
            data = b""  # refused by Telegram: the service names it as a photo it cannot read
        photos.append(Photo(label, data))
    reply = await ctx.service.apply_recipe(actor_for(message.chat.id, user.id), name, photos)
    await _answer(update, context, reply)


async def _download(
    context: ContextTypes.DEFAULT_TYPE, file_id: str, size: int | None, limit: int
) -> bytes | Reply:
    if size is not None and size > limit:
        return error_reply(ImageTooLarge(max_mb=round(limit / 2**20)))
    try:
        file = await context.bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())
    except TelegramError as error:
        log.info("download refused: %s", error)
        return Reply(key=error_reply(ImageError()).key, kind=ReplyKind.ERROR)
