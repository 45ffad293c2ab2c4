"""Discord: the access gate for messages, slash commands and buttons, and the admin commands.

The gate runs before anything is downloaded, so nothing of a refused user is stored; they
get one polite notice (ephemeral for slash commands and buttons), then silence.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.discord.delivery import PLATFORM, DiscordDelivery, actor_for
from bot.service.access import Decision
from bot.service.conversation import ConversationService
from bot.service.replies import Reply
from storage.access import SERVER, Subject
from storage.types import Actor


def places_of(guild_id: int | None) -> tuple[Subject, ...]:
    """The server a request comes from (none in a DM)."""
    return () if guild_id is None else (Subject(PLATFORM, SERVER, str(guild_id)),)


async def check_interaction(service: ConversationService, interaction: discord.Interaction) -> bool:
    """Whether to serve an interaction; a refused user is told once (only they see it)."""
    actor = actor_for(interaction.channel_id or 0, interaction.user.id)
    decision = await service.access.check(actor, places_of(interaction.guild_id))
    if decision.allowed:
        return True
    if decision.notice is not None and not interaction.response.is_done():
        await interaction.response.send_message(decision.notice.text(), ephemeral=True)
    return False


async def check_message(
    service: ConversationService, message: discord.Message, actor: Actor
) -> Decision:
    return await service.access.check(actor, places_of(message.guild.id if message.guild else None))


def register_admin_commands(
    tree: app_commands.CommandTree[Any], service: ConversationService, delivery: DiscordDelivery
) -> None:
    """/allow, /deny, /ban, /unban, /quota, /stats: answered only to the admin who asked."""
    admin = service.admin

    def actor_of(interaction: discord.Interaction) -> Actor:
        return actor_for(interaction.channel_id or 0, interaction.user.id)

    def here(interaction: discord.Interaction) -> Subject | None:
        found = places_of(interaction.guild_id)
        return found[0] if found else None

    async def respond(interaction: discord.Interaction, reply: Reply) -> None:
        await delivery.answer_interaction(interaction, actor_of(interaction), reply)

    async def defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)

    target_help = 'A user id or @mention, "here" for this server, or server:<id>'

    @tree.command(name="allow", description="Admins: serve a user or this server")
    @app_commands.describe(target=target_help)
    async def allow(interaction: discord.Interaction, target: str) -> None:
        await defer(interaction)
        await respond(
            interaction, await admin.allow(actor_of(interaction), target, here(interaction))
        )

    @tree.command(name="deny", description="Admins: take a user or server off the allow-list")
    @app_commands.describe(target=target_help)
    async def deny(interaction: discord.Interaction, target: str) -> None:
        await defer(interaction)
        await respond(
            interaction, await admin.deny(actor_of(interaction), target, here(interaction))
        )

    @tree.command(name="ban", description="Admins: refuse a user")
    @app_commands.describe(user="A user id or @mention")
    async def ban(interaction: discord.Interaction, user: str) -> None:
        await defer(interaction)
        await respond(interaction, await admin.ban(actor_of(interaction), user))

    @tree.command(name="unban", description="Admins: serve a banned user again")
    @app_commands.describe(user="A user id or @mention")
    async def unban(interaction: discord.Interaction, user: str) -> None:
        await defer(interaction)
        await respond(interaction, await admin.unban(actor_of(interaction), user))

    @tree.command(name="quota", description="Admins: a user's own daily quota")
    @app_commands.describe(
        user="A user id or @mention", edits='Edits per day, 0 for no limit, or "default"'
    )
    async def quota(interaction: discord.Interaction, user: str, edits: str) -> None:
        await defer(interaction)
        await respond(interaction, await admin.quota(actor_of(interaction), user, edits))

    @tree.command(name="stats", description="Admins: today's edits, users, queue and timings")
    async def stats(interaction: discord.Interaction) -> None:
        await defer(interaction)
        await respond(interaction, await admin.stats(actor_of(interaction)))
