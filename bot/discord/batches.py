"""Recipe batches on Discord: one status message per batch, edited in place, then the results
as attachments (up to ten a message) plus a zip of the full-resolution PNGs; over the upload
limit, the compressed copies alone, saying so (as for single results). Files a reply carries
(an exported recipe) are attached."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot.service.conversation import ConversationService
from bot.service.messages import Key, render
from bot.service.replies import Reply, ReplyKind
from editor.errors import UserError
from storage.types import Actor

log = logging.getLogger(__name__)

FILES_PER_MESSAGE = 10
EDIT_INTERVAL_S = 1.5
INTERACTION_LIFETIME_S = 14 * 60

Safely = Callable[[Awaitable[Any]], Awaitable[Any]]
ChannelOf = Callable[[int], Awaitable[Any]]
LimitOf = Callable[[Any], int]


@dataclass
class BatchStatus:
    interaction: discord.Interaction | None
    message: discord.Message | None
    started: float
    edited_at: float


class DiscordBatches:
    """Sends and edits what a recipe batch shows in a channel."""

    def __init__(
        self,
        service: ConversationService,
        safely: Safely,
        channel_of: ChannelOf,
        limit_of: LimitOf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.safely = safely
        self.channel_of = channel_of
        self.limit_of = limit_of
        self.clock = clock
        self._status: dict[int, BatchStatus] = {}

    def handles(self, reply: Reply) -> bool:
        return reply.kind in (ReplyKind.BATCH_STATUS, ReplyKind.DOCUMENT)

    async def answer_interaction(self, interaction: discord.Interaction, reply: Reply) -> None:
        if reply.kind is ReplyKind.DOCUMENT:
            await self.safely(
                interaction.edit_original_response(content=reply.text(), attachments=[_file(reply)])
            )
            return
        await self.safely(interaction.edit_original_response(content=reply.text()))
        self._track(reply, interaction, None)

    async def answer_message(self, message: discord.Message, reply: Reply) -> None:
        if reply.kind is ReplyKind.DOCUMENT:
            await self.safely(
                message.reply(content=reply.text(), file=_file(reply), mention_author=False)
            )
            return
        sent = await self.safely(message.reply(content=reply.text(), mention_author=False))
        if isinstance(sent, discord.Message):
            self._track(reply, None, sent)

    def _track(self, reply: Reply, interaction: discord.Interaction | None, message: Any) -> None:
        now = self.clock()
        self._status[int(reply.args["run"])] = BatchStatus(
            interaction, message, now, now - EDIT_INTERVAL_S
        )

    async def show(self, actor: Actor, reply: Reply) -> None:
        run_id = int(reply.args["run"])
        if reply.kind is ReplyKind.BATCH_STATUS:
            status = self._status.get(run_id)
            now = self.clock()
            if status is None or now - status.edited_at < EDIT_INTERVAL_S:
                return
            status.edited_at = now
            await self._edit(status, reply.text())
            return
        status = self._status.pop(run_id, None)
        if status is not None:
            await self._edit(status, reply.text())
        channel = await self.channel_of(int(actor.chat_id))
        if channel is None:
            log.warning("Discord: channel %s is gone; batch %d kept", actor.chat_id, run_id)
            return
        limit = self.limit_of(getattr(channel, "guild", None))
        mention = f"<@{actor.user_id}>"
        if status is None:
            await self.safely(channel.send(content=f"{mention} {reply.text()}"))
        files = []
        for version_id in reply.versions:
            try:
                data = await self.service.image(actor, version_id)
            except UserError:
                continue
            files.append((f"pix2chat-{version_id}.jpg", data))
        for start in range(0, len(files), FILES_PER_MESSAGE):
            chunk = files[start : start + FILES_PER_MESSAGE]
            if sum(len(data) for _name, data in chunk) > limit:  # one by one, then
                for name, data in chunk:
                    await self._send_file(channel, mention, name, data, limit)
                continue
            await self.safely(
                channel.send(
                    content=mention,
                    files=[discord.File(io.BytesIO(data), filename=name) for name, data in chunk],
                )
            )
        if reply.versions:
            await self._zip(channel, mention, actor, reply, limit)

    async def _zip(
        self, channel: Any, mention: str, actor: Actor, reply: Reply, limit: int
    ) -> None:
        try:
            name, data = await self.service.batch_zip(actor, int(reply.args["run"]))
        except UserError as error:
            log.warning("batch %s: no zip (%s)", reply.args["run"], error)
            return
        if len(data) > limit:
            await self.safely(channel.send(content=f"{mention} {render(Key.RECIPE_ZIP_TOO_BIG)}"))
            return
        caption = render(
            Key.RECIPE_ZIP_CAPTION, {"count": len(reply.versions), "name": reply.args["name"]}
        )
        await self.safely(
            channel.send(
                content=f"{mention} {caption}", file=discord.File(io.BytesIO(data), filename=name)
            )
        )

    async def _send_file(
        self, channel: Any, mention: str, name: str, data: bytes, limit: int
    ) -> None:
        if len(data) > limit:
            await self.safely(channel.send(content=f"{mention} {render(Key.UPLOAD_TOO_BIG)}"))
            return
        await self.safely(
            channel.send(content=mention, file=discord.File(io.BytesIO(data), filename=name))
        )

    async def _edit(self, status: BatchStatus, text: str) -> None:
        if status.interaction is not None:
            if self.clock() - status.started < INTERACTION_LIFETIME_S:
                await self.safely(status.interaction.edit_original_response(content=text))
        elif status.message is not None:
            await self.safely(status.message.edit(content=text))


def _file(reply: Reply) -> discord.File:
    assert reply.attachment is not None
    return discord.File(io.BytesIO(reply.attachment.data), filename=reply.attachment.filename)
