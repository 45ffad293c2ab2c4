"""Recipes on Discord: the `/recipe` slash command (with up to ten photo attachments) and
`/recipes`, and in the message flow `/recipe NAME` with attached photos, `/recipe save ...`
and friends as plain text, and recipe files (JSON) sent back to import."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord import app_commands

from bot.discord.delivery import DiscordDelivery, actor_for
from bot.discord.translator import described
from bot.service.batches import Photo
from bot.service.conversation import ConversationService
from bot.service.messages import Key
from bot.service.replies import Reply
from storage.types import Actor

log = logging.getLogger(__name__)

SUBCOMMANDS = ("save", "show", "delete", "export", "list")
MAX_RECIPE_FILE_BYTES = 64 * 1024


def is_recipe_file(attachment: discord.Attachment) -> bool:
    kind = (attachment.content_type or "").split(";")[0].strip()
    return attachment.filename.lower().endswith(".json") or kind == "application/json"


def wants_recipe(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0].lower() == "/recipe"


async def read_photos(attachments: Sequence[discord.Attachment], max_bytes: int) -> list[Photo]:
    """The attachments' bytes (over `max_bytes`, or unreadable: empty, which the service
    names as a photo it cannot read)."""
    photos = []
    for attachment in attachments:
        data = b""
        if attachment.size <= max_bytes:
            try:
                data = await attachment.read()
            except (discord.HTTPException, discord.NotFound) as error:
                log.warning("attachment download failed: %s", error)
        photos.append(Photo(attachment.filename, data))
    return photos


async def recipe_reply(
    service: ConversationService,
    actor: Actor,
    words: Sequence[str],
    attachments: Sequence[discord.Attachment],
    max_bytes: int,
) -> Reply:
    """`/recipe WORDS` with these attachments: apply to the photos, import a file, or the
    recipe book's command."""
    files = [a for a in attachments if is_recipe_file(a)]
    photos = [a for a in attachments if not is_recipe_file(a)]
    if photos and words and words[0].lower() not in SUBCOMMANDS:
        return await service.apply_recipe(actor, words[0], await read_photos(photos, max_bytes))
    if files:
        return await import_file(service, actor, files[0])
    return await service.recipe(actor, list(words))


async def import_file(
    service: ConversationService, actor: Actor, attachment: discord.Attachment
) -> Reply:
    if attachment.size > MAX_RECIPE_FILE_BYTES:
        return await service.import_recipe(actor, b" " * (MAX_RECIPE_FILE_BYTES + 1))
    try:
        data = await attachment.read()
    except (discord.HTTPException, discord.NotFound) as error:
        log.warning("recipe file download failed: %s", error)
        data = b""
    return await service.import_recipe(actor, data)


def register(
    tree: app_commands.CommandTree[discord.Client],
    service: ConversationService,
    delivery: DiscordDelivery,
    max_bytes: int,
) -> None:
    """`/recipe` and `/recipes`."""

    @tree.command(name="recipe", description=described(Key.COMMAND_RECIPE))
    @app_commands.describe(
        command=described(Key.OPTION_RECIPE_COMMAND),
        photo1=described(Key.OPTION_RECIPE_PHOTO),
        recipe_file=described(Key.OPTION_RECIPE_FILE),
    )
    async def recipe(
        interaction: discord.Interaction,
        command: str,
        photo1: discord.Attachment | None = None,
        photo2: discord.Attachment | None = None,
        photo3: discord.Attachment | None = None,
        photo4: discord.Attachment | None = None,
        photo5: discord.Attachment | None = None,
        photo6: discord.Attachment | None = None,
        photo7: discord.Attachment | None = None,
        photo8: discord.Attachment | None = None,
        photo9: discord.Attachment | None = None,
        photo10: discord.Attachment | None = None,
        recipe_file: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        actor = actor_for(interaction.channel_id or 0, interaction.user.id)
        given = (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8, photo9, photo10)
        attachments = [a for a in given if a is not None]
        if recipe_file is not None:
            attachments.append(recipe_file)
        reply = await recipe_reply(service, actor, command.split(), attachments, max_bytes)
        await delivery.answer_interaction(interaction, actor, reply)

    @tree.command(name="recipes", description=described(Key.COMMAND_RECIPES))
    async def recipes(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        actor = actor_for(interaction.channel_id or 0, interaction.user.id)
        await delivery.answer_interaction(interaction, actor, await service.recipe(actor, ["list"]))
