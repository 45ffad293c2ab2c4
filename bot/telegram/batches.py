"""Recipe batches on Telegram: one status line per batch, edited in place ("7 of 12 photos
done"), then the results as albums of up to ten and one zip of the full-resolution PNGs; and
files a reply carries (an exported recipe).

Albums cannot carry buttons, so a batch's results are reachable for undo, regenerate or
branch through /history and by replying to them; a batch of one photo gets its buttons.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Bot, InputFile, InputMediaPhoto, Message
from telegram.constants import ChatAction

from bot.service.conversation import ConversationService
from bot.service.messages import Key, render
from bot.service.replies import Action, Reply, ReplyKind
from bot.telegram import keyboards
from editor.errors import UserError
from storage.types import Actor

log = logging.getLogger(__name__)

ALBUM_SIZE = 10
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
EDIT_INTERVAL_S = 1.0
"""At most one edit of a batch's status line a second (the last count always shows)."""

Safely = Callable[[Awaitable[Any]], Awaitable[Message | None]]
SendVersion = Callable[[int, int | None, Actor, Reply], Awaitable[Message | None]]


@dataclass
class BatchLine:
    """The message that tracks one batch."""

    chat_id: int
    message_id: int
    reply_to: int | None
    text: str
    edited_at: float


class BatchMessages:
    """Sends and edits what a recipe batch shows in a chat."""

    def __init__(
        self,
        bot: Bot,
        service: ConversationService,
        safely: Safely,
        send_version: SendVersion,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.service = service
        self.safely = safely
        self.send_version = send_version
        self.clock = clock
        self._lines: dict[int, BatchLine] = {}

    async def answer(self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply) -> None:
        """The immediate answer: a batch's first status line, or a file."""
        if reply.kind is ReplyKind.DOCUMENT and reply.attachment is not None:
            await self.safely(
                self.bot.send_document(
                    chat_id,
                    InputFile(reply.attachment.data, filename=reply.attachment.filename),
                    caption=reply.text(),
                    reply_to_message_id=reply_to,
                    allow_sending_without_reply=True,
                )
            )
            return
        run_id = int(reply.args["run"])
        text = reply.text()
        markup = keyboards.for_actions(reply.actions, None, actor.user_id)
        message = await self.safely(
            self.bot.send_message(
                chat_id,
                text,
                reply_to_message_id=reply_to,
                reply_markup=markup,
                allow_sending_without_reply=True,
            )
        )
        if message is not None and run_id not in self._lines:
            self._lines[run_id] = BatchLine(
                chat_id, message.message_id, reply_to, text, self.clock() - EDIT_INTERVAL_S
            )

    async def show(self, actor: Actor, reply: Reply) -> None:
        """A later status line, or the batch's results."""
        run_id = int(reply.args["run"])
        if reply.kind is ReplyKind.BATCH_STATUS:
            line = self._lines.get(run_id)
            now = self.clock()
            if line is None or now - line.edited_at < EDIT_INTERVAL_S:
                return
            text = reply.text()
            line.text, line.edited_at = text, now
            markup = keyboards.for_actions(reply.actions, None, actor.user_id)
            await self.safely(
                self.bot.edit_message_text(text, line.chat_id, line.message_id, reply_markup=markup)
            )
            return
        await self._results(actor, reply, self._lines.pop(run_id, None))

    async def _results(self, actor: Actor, reply: Reply, line: BatchLine | None) -> None:
        chat_id = int(actor.chat_id)
        reply_to = line.reply_to if line is not None else None
        if line is not None:
            await self.safely(self.bot.edit_message_text(reply.text(), chat_id, line.message_id))
        else:
            await self.safely(self.bot.send_message(chat_id, reply.text()))
        versions = list(reply.versions)
        if len(versions) == 1:
            single = Reply(
                key=Key.RECIPE_FINISHED,
                args=reply.args,
                version_id=versions[0],
                kind=ReplyKind.RESULT,
                actions=(Action.UNDO, Action.REGENERATE, Action.FULL_RESOLUTION),
            )
            await self.safely(self.send_version(chat_id, reply_to, actor, single))
        elif versions:
            for start in range(0, len(versions), ALBUM_SIZE):
                await self._album(chat_id, actor, versions[start : start + ALBUM_SIZE])
        if versions:
            await self._zip(chat_id, reply_to, actor, reply)

    async def _album(self, chat_id: int, actor: Actor, versions: list[int]) -> None:
        media = []
        for version_id in versions:
            try:
                data = await self.service.image(actor, version_id)
            except UserError:
                continue
            media.append(InputMediaPhoto(data, filename=f"pix2chat-{version_id}.jpg"))
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO))
        if len(media) == 1:  # an album needs two; the last chunk may have one
            await self.safely(self.bot.send_photo(chat_id, media[0].media))
        elif media:
            await self.safely(self.bot.send_media_group(chat_id, media))

    async def _zip(self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply) -> None:
        run_id = int(reply.args["run"])
        try:
            name, data = await self.service.batch_zip(actor, run_id)
        except UserError as error:
            log.warning("batch %d: no zip (%s)", run_id, error)
            return
        if len(data) > MAX_DOCUMENT_BYTES:
            await self.safely(self.bot.send_message(chat_id, render(Key.RECIPE_ZIP_TOO_BIG)))
            return
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_DOCUMENT))
        await self.safely(
            self.bot.send_document(
                chat_id,
                InputFile(data, filename=name),
                caption=render(
                    Key.RECIPE_ZIP_CAPTION,
                    {"count": len(reply.versions), "name": reply.args["name"]},
                ),
                reply_to_message_id=reply_to,
                allow_sending_without_reply=True,
            )
        )
