"""Turns service replies and job events into Discord messages.

A pending edit has one status: the deferred interaction response (for slash commands and
buttons) or a bot message (for the message flow). Progress edits it at a rate-limit-safe
cadence; the result replaces it. An interaction can only be edited for 15 minutes, so a result
that finishes later (or whose response was deleted) is posted in the channel instead.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot.discord import views
from bot.discord.batches import DiscordBatches
from bot.service.conversation import ConversationService
from bot.service.mailboxes import EventDelivery
from bot.service.messages import Key, render
from bot.service.rendering import history_lines
from bot.service.replies import Reply, ReplyKind
from editor.errors import UserError
from storage.types import Actor

log = logging.getLogger(__name__)

PLATFORM = "discord"
PROGRESS_INTERVAL_S = 1.5
INTERACTION_LIFETIME_S = 14 * 60  # Discord allows 15 minutes; keep a margin
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass
class Status:
    """Where a pending edit is being shown."""

    channel_id: int
    interaction: discord.Interaction | None
    message: discord.Message | None
    started: float
    edited_at: float
    text: str


def actor_for(channel_id: int, user_id: int) -> Actor:
    return Actor(PLATFORM, str(channel_id), str(user_id))


class DiscordDelivery(EventDelivery):
    """Sends what the service says to the channel it concerns."""

    def __init__(
        self,
        client: discord.Client,
        service: ConversationService,
        button_class: type[Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(service)
        self.client = client
        self.button_class = button_class
        self.clock = clock
        self._status: dict[int, Status] = {}
        self.batches = DiscordBatches(service, self._safely, self._channel, upload_limit, clock)

    def view(self, reply: Reply, actor: Actor) -> discord.ui.View | None:
        if reply.kind is ReplyKind.VARIATIONS:
            return views.candidates_view(self.button_class, reply.candidates, actor.user_id)
        return views.view_for(self.button_class, reply.actions, reply.version_id, actor.user_id)

    # ----- immediate answers -------------------------------------------------------------------

    async def answer_interaction(
        self, interaction: discord.Interaction, actor: Actor, reply: Reply
    ) -> None:
        """Fill the (deferred) interaction response with the service's answer."""
        if self.batches.handles(reply):
            await self.batches.answer_interaction(interaction, reply)
            return
        if reply.kind is ReplyKind.QUEUED and reply.version_id is not None:
            await self._edit_original(
                interaction, content=reply.text(), view=self.view(reply, actor)
            )
            self._track(reply.version_id, interaction.channel_id or 0, interaction, None, reply)
            return
        kwargs = await self._render(actor, reply, interaction_limit(interaction))
        await self._edit_original(interaction, **kwargs)

    async def answer_message(self, message: discord.Message, actor: Actor, reply: Reply) -> None:
        """Reply to a user's message (message flow)."""
        if self.batches.handles(reply):
            await self.batches.answer_message(message, reply)
            return
        kwargs = await self._render(actor, reply, upload_limit(message.guild))
        sent = await self._safely(message.reply(mention_author=False, **_files_for_send(kwargs)))
        if sent is not None and reply.kind is ReplyKind.QUEUED and reply.version_id is not None:
            self._track(reply.version_id, message.channel.id, None, sent, reply)

    async def _render(self, actor: Actor, reply: Reply, limit: int) -> dict[str, Any]:
        """content / attachments / view for a reply (image replies carry their picture)."""
        text = reply.text()
        if reply.kind is ReplyKind.HISTORY:
            text = "\n".join([text, *history_lines(reply)])
        kwargs: dict[str, Any] = {"content": text, "view": self.view(reply, actor)}
        if reply.kind is ReplyKind.VARIATIONS:
            return await self._render_candidates(actor, reply, limit, kwargs)
        if reply.show_image and reply.version_id is not None:
            try:
                data = await self.service.image(actor, reply.version_id)
            except UserError as error:
                return {"content": render(error.key, error.args_for_message), "view": None}
            if len(data) > limit:
                kwargs["content"] = f"{text}\n{render(Key.UPLOAD_TOO_BIG)}"
            else:
                name = f"pix2chat-{reply.version_id}.jpg"
                kwargs["attachments"] = [discord.File(io.BytesIO(data), filename=name)]
        elif reply.picture is not None and len(reply.picture) <= limit:  # a region's preview
            picture = discord.File(io.BytesIO(reply.picture), filename="pix2chat-region.jpg")
            kwargs["attachments"] = [picture]
        return kwargs

    async def _render_candidates(
        self, actor: Actor, reply: Reply, limit: int, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """A set of variations: one message, the pictures as attachments, a Use button each."""
        pictures = []
        for candidate in reply.candidates:
            try:
                data = await self.service.image(actor, candidate.version_id)
            except UserError as error:
                return {"content": render(error.key, error.args_for_message), "view": None}
            pictures.append((candidate, data))
        if sum(len(data) for _, data in pictures) > limit:
            kwargs["content"] = f"{kwargs['content']}\n{render(Key.UPLOAD_TOO_BIG)}"
            return kwargs
        kwargs["attachments"] = [
            discord.File(
                io.BytesIO(data), filename=f"pix2chat-{candidate.number}-{candidate.version_id}.jpg"
            )
            for candidate, data in pictures
        ]
        return kwargs

    async def send_full_resolution(
        self, interaction: discord.Interaction, actor: Actor, version_id: int
    ) -> None:
        """The lossless PNG; if over the channel's upload limit, the chat copy, saying so."""
        try:
            data = await self.service.image(actor, version_id, full=True)
        except UserError as error:
            await interaction.followup.send(
                render(error.key, error.args_for_message), ephemeral=True
            )
            return
        limit = interaction_limit(interaction)
        note = ""
        name = f"pix2chat-{version_id}.png"
        if len(data) > limit:
            data, name = await self.service.image(actor, version_id), f"pix2chat-{version_id}.jpg"
            note = "\n" + render(Key.FULL_TOO_BIG)
        await self._safely(
            interaction.followup.send(
                content=render(Key.FULL_CAPTION_PLAIN) + note,
                file=discord.File(io.BytesIO(data), filename=name),
            )
        )

    # ----- events from the worker --------------------------------------------------------------

    async def send_notice(self, actor: Actor, reply: Reply) -> None:
        """A message about the service (the model failed to load) into the user's channel."""
        channel = await self._channel(int(actor.chat_id))
        if channel is not None:
            await self._safely(channel.send(content=f"<@{actor.user_id}> {reply.text()}"))

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        """Into the interaction response while it lives, else into the channel."""
        assert reply.version_id is not None
        status = self._status.pop(reply.version_id, None)
        for candidate in reply.candidates:  # a best-of result's status names its set
            status = self._status.pop(candidate.version_id, None) or status
        try:
            return await self._deliver_result(actor, reply, status)
        except discord.Forbidden as error:
            log.warning("Discord: no permission to deliver to %s: %s", actor.chat_id, error)
            self.service.metrics.failed_deliveries.labels(platform=actor.platform).inc()
            return True  # keep the data; do not retry a channel we cannot write to
        except (discord.HTTPException, RuntimeError, OSError) as error:
            log.warning("Discord: delivery of %s postponed: %s", reply.version_id, error)
            return False

    async def _deliver_result(self, actor: Actor, reply: Reply, status: Status | None) -> bool:
        interaction = status.interaction if status else None
        if interaction is not None and status is not None:
            fresh = self.clock() - status.started < INTERACTION_LIFETIME_S
            if fresh:
                kwargs = await self._render(actor, reply, interaction_limit(interaction))
                try:
                    await interaction.edit_original_response(**kwargs)
                    return True
                except (discord.NotFound, discord.HTTPException) as error:
                    log.info("Discord: interaction expired (%s); posting in the channel", error)
        channel = await self._channel(int(actor.chat_id))
        if channel is None:
            log.warning(
                "Discord: channel %s is gone; result %s kept", actor.chat_id, reply.version_id
            )
            return True
        guild = getattr(channel, "guild", None)
        kwargs = await self._render(actor, reply, upload_limit(guild))
        content = f"<@{actor.user_id}> {kwargs.pop('content', '')}"
        await channel.send(content=content, **_files_for_send(kwargs))
        if status is not None and status.message is not None:
            await self._safely(status.message.delete())
        return True

    async def show_batch(self, actor: Actor, reply: Reply) -> None:
        """A recipe batch's status, edited in place, or its results and zip."""
        await self.batches.show(actor, reply)

    async def show_progress(self, reply: Reply) -> None:
        assert reply.version_id is not None
        status = self._status.get(reply.version_id)
        if status is None:
            return
        text, now = reply.text(), self.clock()
        if text == status.text or now - status.edited_at < PROGRESS_INTERVAL_S:
            return
        status.text, status.edited_at = text, now
        if status.interaction is not None:
            if now - status.started < INTERACTION_LIFETIME_S:
                await self._edit_original(status.interaction, content=text)
        elif status.message is not None:
            await self._safely(status.message.edit(content=text))

    # ----- helpers -----------------------------------------------------------------------------

    def _track(
        self,
        version_id: int,
        channel_id: int,
        interaction: discord.Interaction | None,
        message: discord.Message | None,
        reply: Reply,
    ) -> None:
        now = self.clock()
        self._status[version_id] = Status(channel_id, interaction, message, now, now, reply.text())

    async def _channel(self, channel_id: int) -> Any:
        channel = self.client.get_channel(channel_id)
        if channel is not None:
            return channel
        try:
            return await self.client.fetch_channel(channel_id)
        except (discord.NotFound, discord.Forbidden):
            return None

    async def _edit_original(self, interaction: discord.Interaction, **kwargs: Any) -> None:
        await self._safely(interaction.edit_original_response(**kwargs))

    async def _safely(self, call: Any) -> Any:
        """Await a Discord call; log refusals (permissions, deleted messages) instead of crashing."""
        try:
            return await call
        except discord.Forbidden as error:
            log.warning("Discord refused (missing permissions?): %s", error)
        except discord.NotFound as error:
            log.info("Discord: gone (deleted message or channel?): %s", error)
        except discord.HTTPException as error:
            log.error("Discord call failed: %s", error)
        return None


def upload_limit(guild: discord.Guild | None) -> int:
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def interaction_limit(interaction: discord.Interaction) -> int:
    return upload_limit(interaction.guild)


def _files_for_send(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`Messageable.send` takes files=..., interaction edits take attachments=..."""
    sendable = {k: v for k, v in kwargs.items() if k != "attachments" and v is not None}
    if kwargs.get("attachments"):
        sendable["files"] = kwargs["attachments"]
    return sendable
