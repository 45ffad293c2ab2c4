"""Turns service replies and job events into Telegram messages.

One status message per pending edit shows its place in line, then its progress, edited in
place no more often than Telegram allows (about once a second in private chats, every three
seconds in groups); the result photo replaces it. Send failures never escape: a user who
blocked the bot keeps their data, and the result is marked delivered so it is not retried.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image
from telegram import Bot, InlineKeyboardMarkup, InputFile, InputMediaPhoto, Message
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.service.conversation import ConversationService
from bot.service.mailboxes import EventDelivery
from bot.service.messages import Key, render
from bot.service.rendering import history_lines
from bot.service.replies import Reply, ReplyKind
from bot.telegram import keyboards
from bot.telegram.batches import BatchMessages
from editor.errors import UserError
from storage.types import Actor

log = logging.getLogger(__name__)

PLATFORM = "telegram"
PRIVATE_EDIT_INTERVAL_S = 1.0
GROUP_EDIT_INTERVAL_S = 3.0
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
"""The Bot API's upload limit for documents (a noisy 24 MP PNG can come close)."""
MAX_PHOTO_SIDE_SUM = 10_000
MAX_PHOTO_RATIO = 20
ALBUM_SIZE = 10


@dataclass
class StatusMessage:
    """The message that tracks one pending edit."""

    chat_id: int
    message_id: int
    reply_to: int | None
    is_group: bool
    text: str
    edited_at: float


def actor_for(chat_id: int, user_id: int) -> Actor:
    return Actor(PLATFORM, str(chat_id), str(user_id))


def fits_as_photo(data: bytes) -> bool:
    """Telegram's sendPhoto limits: 10 MB, width + height <= 10,000, ratio <= 20."""
    if len(data) > MAX_PHOTO_BYTES:
        return False
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return width + height <= MAX_PHOTO_SIDE_SUM and max(width, height) <= MAX_PHOTO_RATIO * min(
        width, height
    )


class Delivery(EventDelivery):
    """Sends what the service says to the chat it concerns."""

    def __init__(
        self, bot: Bot, service: ConversationService, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(service)
        self.bot = bot
        self.clock = clock
        self._status: dict[int, StatusMessage] = {}
        self.batches = BatchMessages(bot, service, self.safely, self._send_version, clock)

    # ----- answers to the user's own actions ---------------------------------------------------

    async def answer(
        self, chat_id: int, chat_type: str, reply_to: int | None, actor: Actor, reply: Reply
    ) -> None:
        """Render the service's immediate answer to a message, command or button."""
        if reply.kind is ReplyKind.QUEUED and reply.version_id is not None:
            await self._open_status(chat_id, chat_type, reply_to, actor, reply)
        elif reply.picture is not None:
            await self.safely(
                self.bot.send_photo(
                    chat_id,
                    InputFile(reply.picture, filename="pix2chat-region.jpg"),
                    caption=reply.text(),
                    reply_to_message_id=reply_to,
                    allow_sending_without_reply=True,
                )
            )
        elif reply.kind in (ReplyKind.BATCH_STATUS, ReplyKind.DOCUMENT):
            await self.batches.answer(chat_id, reply_to, actor, reply)
        elif reply.show_image and reply.version_id is not None:
            await self.send_version(chat_id, reply_to, actor, reply)
        elif reply.kind is ReplyKind.HISTORY:
            await self._send_history(chat_id, reply_to, actor, reply)
        elif reply.settings is not None:
            await self.send_text(
                chat_id,
                f"{reply.text()}\n{render(Key.SETTINGS_CHOOSE)}",
                reply_to,
                keyboards.settings(reply.settings, actor.user_id),
            )
        else:
            markup = keyboards.for_actions(reply.actions, reply.version_id, actor.user_id)
            await self.send_text(chat_id, reply.text(), reply_to, markup)

    async def send_notice(self, actor: Actor, reply: Reply) -> None:
        """A message about the service (the model failed to load) into the user's chat."""
        await self.send_text(int(actor.chat_id), reply.text())

    async def send_text(
        self,
        chat_id: int,
        text: str,
        reply_to: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
    ) -> Message | None:
        return await self.safely(
            self.bot.send_message(
                chat_id,
                text,
                reply_to_message_id=reply_to,
                reply_markup=markup,
                allow_sending_without_reply=True,
            )
        )

    async def send_version(
        self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply
    ) -> None:
        """A version's picture with its caption and buttons; refusals are logged, not raised."""
        await self.safely(self._send_version(chat_id, reply_to, actor, reply))

    async def _send_version(
        self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply
    ) -> Message | None:
        """A version's picture (a file if too big for a photo); raises what Telegram refuses."""
        assert reply.version_id is not None
        if reply.document:
            return await self._send_document(chat_id, reply_to, actor, reply)
        try:
            data = await self.service.image(actor, reply.version_id)
        except UserError as error:
            text = render(error.key, error.args_for_message)
            return await self.bot.send_message(chat_id, text, reply_to_message_id=reply_to)
        markup = keyboards.for_actions(reply.actions, reply.version_id, actor.user_id)
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO))
        file = InputFile(data, filename=f"pix2chat-{reply.version_id}.jpg")
        if fits_as_photo(data):
            return await self.bot.send_photo(
                chat_id,
                file,
                caption=reply.text(),
                reply_to_message_id=reply_to,
                reply_markup=markup,
                allow_sending_without_reply=True,
            )
        return await self.bot.send_document(
            chat_id,
            file,
            caption=f"{reply.text()}\n{render(Key.FULL_AS_DOCUMENT)}",
            reply_to_message_id=reply_to,
            reply_markup=markup,
            allow_sending_without_reply=True,
        )

    async def _send_document(
        self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply
    ) -> Message | None:
        """A result that must stay lossless (a cut-out's transparency): its PNG as a file,
        with its caption and buttons; over the upload limit, the chat copy."""
        assert reply.version_id is not None
        try:
            data = await self.service.image(actor, reply.version_id, full=True)
        except UserError as error:
            text = render(error.key, error.args_for_message)
            return await self.bot.send_message(chat_id, text, reply_to_message_id=reply_to)
        if len(data) > MAX_DOCUMENT_BYTES:
            return await self._send_version(
                chat_id, reply_to, actor, dataclasses.replace(reply, document=False)
            )
        markup = keyboards.for_actions(reply.actions, reply.version_id, actor.user_id)
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_DOCUMENT))
        return await self.bot.send_document(
            chat_id,
            InputFile(data, filename=f"pix2chat-{reply.version_id}.png"),
            caption=reply.text(),
            reply_to_message_id=reply_to,
            reply_markup=markup,
            allow_sending_without_reply=True,
        )

    async def send_full_resolution(
        self, chat_id: int, reply_to: int | None, actor: Actor, version_id: int
    ) -> None:
        """The lossless PNG as a document (Telegram would recompress a photo); over the Bot
        API's upload limit, the chat copy, saying so."""
        try:
            data = await self.service.image(actor, version_id, full=True)
            too_big = len(data) > MAX_DOCUMENT_BYTES
            if too_big:
                data = await self.service.image(actor, version_id)
        except UserError as error:
            await self.send_text(chat_id, render(error.key, error.args_for_message), reply_to)
            return
        if too_big:
            await self.safely(
                self.bot.send_photo(
                    chat_id,
                    InputFile(data, filename=f"pix2chat-{version_id}.jpg"),
                    caption=render(Key.FULL_TOO_BIG),
                    reply_to_message_id=reply_to,
                    allow_sending_without_reply=True,
                )
            )
            return
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_DOCUMENT))
        await self.safely(
            self.bot.send_document(
                chat_id,
                InputFile(data, filename=f"pix2chat-{version_id}.png"),
                caption=render(Key.FULL_CAPTION, {"width": width, "height": height}),
                reply_to_message_id=reply_to,
                allow_sending_without_reply=True,
            )
        )

    async def _send_history(
        self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply
    ) -> None:
        """The chain of instructions as text, then the finished versions as an album."""
        lines = [reply.text(), *history_lines(reply)]
        await self.send_text(chat_id, "\n".join(lines), reply_to)
        done = [entry for entry in reply.history if entry.status == "done"][-ALBUM_SIZE:]
        if len(done) < 2:
            return
        media = []
        for entry in done:
            try:
                data = await self.service.image(actor, entry.version_id)
            except UserError:
                continue
            media.append(
                InputMediaPhoto(
                    data, caption=entry.instruction or render(Key.HISTORY_LINE_PHOTO, {"number": 1})
                )
            )
        if len(media) >= 2:
            await self.safely(self.bot.send_media_group(chat_id, media))

    # ----- events from the worker ----------------------------------------------------------------

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        """The result photo (or failure text) replaces the status message."""
        assert reply.version_id is not None
        status = self._status.pop(reply.version_id, None)
        for candidate in reply.candidates:  # a best-of result's status names its set
            status = self._status.pop(candidate.version_id, None) or status
        chat_id = int(actor.chat_id)
        reply_to = status.reply_to if status is not None else None
        try:
            if reply.kind is ReplyKind.VARIATIONS:
                await self._send_candidates(chat_id, reply_to, actor, reply)
            elif reply.show_image:
                await self._send_version(chat_id, reply_to, actor, reply)
            else:
                markup = keyboards.for_actions(reply.actions, reply.version_id, actor.user_id)
                await self.bot.send_message(
                    chat_id,
                    reply.text(),
                    reply_to_message_id=reply_to,
                    reply_markup=markup,
                    allow_sending_without_reply=True,
                )
        except Forbidden as error:
            # Blocked or removed: keep the user's data, stop trying to send this one.
            log.warning("Telegram: cannot deliver to chat %s: %s", chat_id, error)
            self.service.metrics.failed_deliveries.labels(platform=PLATFORM).inc()
            return True
        except (TelegramError, RuntimeError) as error:
            # Network trouble or shutting down: the start-up sweep delivers it later.
            log.warning("Telegram: delivery of version %s postponed: %s", reply.version_id, error)
            return False
        if status is not None:
            await self.safely(self.bot.delete_message(status.chat_id, status.message_id))
        return True

    async def _send_candidates(
        self, chat_id: int, reply_to: int | None, actor: Actor, reply: Reply
    ) -> None:
        """A set of variations: one media group of the pictures, then the "Use n" buttons.

        Telegram puts no buttons on a media group, so they follow in a message of their own
        (named by version, they keep working after a restart). Raises what Telegram refuses.
        """
        media = []
        for candidate in reply.candidates:
            data = await self.service.image(actor, candidate.version_id)
            caption = render(
                Key.VARIATIONS_CANDIDATE, {"number": candidate.number, "seed": candidate.seed}
            )
            media.append(
                InputMediaPhoto(
                    data, caption=caption, filename=f"pix2chat-{candidate.version_id}.jpg"
                )
            )
        await self.safely(self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO))
        if len(media) >= 2:
            await self.bot.send_media_group(
                chat_id, media, reply_to_message_id=reply_to, allow_sending_without_reply=True
            )
        elif media:
            await self.bot.send_photo(
                chat_id,
                media[0].media,
                reply_to_message_id=reply_to,
                allow_sending_without_reply=True,
            )
        await self.bot.send_message(
            chat_id,
            reply.text(),
            reply_markup=keyboards.for_candidates(reply.candidates, actor.user_id),
        )

    async def _open_status(
        self, chat_id: int, chat_type: str, reply_to: int | None, actor: Actor, reply: Reply
    ) -> None:
        assert reply.version_id is not None
        markup = keyboards.for_actions(reply.actions, reply.version_id, actor.user_id)
        text = reply.text()
        message = await self.send_text(chat_id, text, reply_to, markup)
        if message is not None and self.was_delivered(reply.version_id):
            # The result overtook its own status message: nothing left to show.
            await self.safely(self.bot.delete_message(chat_id, message.message_id))
        elif message is not None:
            self._status[reply.version_id] = StatusMessage(
                chat_id=chat_id,
                message_id=message.message_id,
                reply_to=reply_to,
                is_group=chat_type != ChatType.PRIVATE,
                text=text,
                edited_at=self.clock(),
            )

    async def show_batch(self, actor: Actor, reply: Reply) -> None:
        """A recipe batch's status line, edited in place, or its albums and zip."""
        await self.batches.show(actor, reply)

    async def show_progress(self, reply: Reply) -> None:
        assert reply.version_id is not None
        status = self._status.get(reply.version_id)
        if status is None:
            return
        interval = GROUP_EDIT_INTERVAL_S if status.is_group else PRIVATE_EDIT_INTERVAL_S
        text = reply.text()
        now = self.clock()
        if text == status.text or now - status.edited_at < interval:
            return
        status.text, status.edited_at = text, now
        await self.safely(self.bot.edit_message_text(text, status.chat_id, status.message_id))
        await self.safely(self.bot.send_chat_action(status.chat_id, ChatAction.UPLOAD_PHOTO))

    # ----- failure handling ----------------------------------------------------------------------

    async def safely(self, call: Awaitable[Any]) -> Message | None:
        """Await a Bot API call; log what Telegram refuses instead of crashing the bot."""
        try:
            result = await call
        except Forbidden as error:
            log.warning("Telegram refused (user blocked the bot or left the chat): %s", error)
            return None
        except BadRequest as error:
            log.warning("Telegram rejected a request: %s", error)
            return None
        except TelegramError as error:
            log.error("Telegram call failed: %s", error)
            return None
        return result if isinstance(result, Message) else None
