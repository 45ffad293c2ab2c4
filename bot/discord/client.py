"""The discord.py client: slash commands, the message flow and button presses.

Each handler turns one interaction or message into one conversation-service call and hands
the reply to `DiscordDelivery`. Interactions are deferred first: Discord wants an answer
within 3 seconds, and a download plus a database write can take longer.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands

from bot.config import Settings
from bot.discord import admin, recipes, views
from bot.discord.delivery import DiscordDelivery, actor_for
from bot.discord.translator import CatalogueTranslator, described
from bot.service.conversation import ConversationService, error_reply
from bot.service.messages import Key, render, set_task_locale
from bot.service.replies import Action, Reply, ReplyKind
from editor.errors import ImageError, ImageTooLarge
from storage.types import Actor

log = logging.getLogger(__name__)

MAX_ATTACHMENT_PIXELS_SIDE = 12_000


def intents_for(settings: Settings) -> discord.Intents:
    """Minimal intents; message content only where plain messages are instructions."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.dm_messages = True
    intents.guild_messages = True
    intents.message_content = bool(settings.discord_channel_ids)
    return intents


class Pix2ChatClient(discord.Client):
    """A Discord client wired to the conversation service."""

    def __init__(
        self, settings: Settings, service: ConversationService, **client_options: Any
    ) -> None:
        super().__init__(intents=intents_for(settings), **client_options)
        self.settings = settings
        self.service = service
        self.tree = LocalizedTree(self)
        self.button_class = views.make_button_class(self.on_press)
        self.delivery = DiscordDelivery(self, service, self.button_class)
        self.max_bytes = settings.max_upload_bytes
        _register_commands(self)
        admin.register_admin_commands(self.tree, service, self.delivery)
        recipes.register(self.tree, service, self.delivery, self.max_bytes)

    async def setup_hook(self) -> None:
        """Register persistent buttons, then sync commands (at once to the test guilds)."""
        self.add_dynamic_items(self.button_class)
        await self.tree.set_translator(CatalogueTranslator())
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        await self.tree.sync()

    # ----- the message flow --------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """DMs, allowed channels and mentions: a photo starts over, text is an instruction."""
        if message.author.bot or not self._addressed(message):
            return
        actor = actor_for(message.channel.id, message.author.id)
        # Messages carry no locale: the user's choice, else the one their last interaction had
        set_task_locale(await self.service.locale(actor))
        decision = await admin.check_message(self.service, message, actor)
        if not decision.allowed:  # before any download: nothing of theirs is stored
            if decision.notice is not None:
                await self.delivery.answer_message(message, actor, decision.notice)
            return
        text = _without_mention(message.content, self.user)
        if recipes.wants_recipe(text) or any(
            recipes.is_recipe_file(a) for a in message.attachments
        ):
            words = text.split()[1:] if recipes.wants_recipe(text) else []
            reply = await recipes.recipe_reply(
                self.service, actor, words, message.attachments, self.max_bytes
            )
            await self.delivery.answer_message(message, actor, reply)
            return
        images = [a for a in message.attachments if _looks_like_image(a)]
        if message.attachments and not images:
            await self.delivery.answer_message(
                message, actor, Reply(key=Key.MEDIA_UNSUPPORTED, kind=ReplyKind.ERROR)
            )
            return
        if images:
            reply = await self._receive_attachment(actor, images[0], text, f"dc:{message.id}")
            if len(message.attachments) > 1:
                await self.delivery.answer_message(message, actor, Reply(key=Key.ALBUM_FIRST))
        else:
            base = await self._replied_version(message)
            reply = await self.service.instruct(
                actor, text, base_version_id=base, request_key=f"dc:{message.id}"
            )
        await self.delivery.answer_message(message, actor, reply)

    def _addressed(self, message: discord.Message) -> bool:
        if message.guild is None:
            return True
        if message.channel.id in self.settings.discord_channel_ids:
            return True
        return self.user is not None and self.user.mentioned_in(message)

    async def _replied_version(self, message: discord.Message) -> int | None:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        replied = reference.resolved
        if not isinstance(replied, discord.Message):
            try:
                replied = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                return None
        if self.user is None or replied.author.id != self.user.id:
            return None
        return views.version_of(replied)

    async def _receive_attachment(
        self, actor: Actor, attachment: discord.Attachment, caption: str, request_key: str
    ) -> Reply:
        """Check the declared size and dimensions before downloading; decode decides the rest."""
        if attachment.size > self.max_bytes:
            return error_reply(ImageTooLarge(max_mb=round(self.max_bytes / 2**20)))
        width, height = attachment.width or 0, attachment.height or 0
        if (
            max(width, height) > MAX_ATTACHMENT_PIXELS_SIDE
            or width * height > self.settings.max_image_pixels
        ):
            return error_reply(
                ImageTooLarge(max_megapixels=round(self.settings.max_image_pixels / 1e6))
            )
        try:
            data = await attachment.read()
        except (discord.HTTPException, discord.NotFound) as error:
            log.warning("attachment download failed: %s", error)
            return error_reply(ImageError())
        return await self.service.receive_image(
            actor, data, caption=caption or None, request_key=request_key
        )

    # ----- buttons -----------------------------------------------------------------------------

    async def on_press(
        self, interaction: discord.Interaction, action: str, version_id: int, owner_id: str
    ) -> None:
        """A result's button: only its owner may press it."""
        set_task_locale(await self.service.locale(_actor_of(interaction), interaction.locale.value))
        if not await admin.check_interaction(self.service, interaction):
            return
        if str(interaction.user.id) != owner_id:
            await interaction.response.send_message(render(Key.BUTTON_NOT_YOURS), ephemeral=True)
            return
        actor = actor_for(interaction.channel_id or 0, interaction.user.id)
        if action == Action.FULL_RESOLUTION.value:
            await interaction.response.defer(thinking=True)
            await self.delivery.send_full_resolution(interaction, actor, version_id)
            return
        if action in (Action.FORGET_CONFIRM.value, views.FORGET_NO):
            reply = (
                await self.service.forget(actor)
                if action == Action.FORGET_CONFIRM.value
                else Reply(key=Key.FORGET_KEPT)
            )
            await interaction.response.edit_message(content=reply.text(), view=None)
            return
        await interaction.response.defer(thinking=True)
        version = version_id or None
        if action == Action.UNDO.value:
            reply = await self.service.undo(actor, version)
        elif action == Action.REDO.value:
            reply = await self.service.redo(actor)
        elif action == Action.REGENERATE.value:
            reply = await self.service.regenerate(actor, version)
        elif action == Action.CANCEL.value:
            reply = await self.service.cancel(actor)
        elif action == Action.VARIATIONS.value:
            reply = await self.service.variations(actor, version)
        elif action == Action.STRONGER.value:
            reply = await self.service.stronger(actor, version)
        elif action == Action.SUBTLER.value:
            reply = await self.service.subtler(actor, version)
        elif action == Action.USE.value:
            reply = await self.service.pick(actor, version_id)
        else:
            reply = Reply(key=Key.BUTTON_EXPIRED, kind=ReplyKind.ERROR)
        await self.delivery.answer_interaction(interaction, actor, reply)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """Log, never crash the gateway connection."""
        log.exception("Discord: error in %s", event_method)


def _looks_like_image(attachment: discord.Attachment) -> bool:
    """Declared type or dimensions say image; decoding later is what decides."""
    declared = (attachment.content_type or "").startswith("image/")
    return (
        declared
        or attachment.width is not None
        or attachment.filename.lower().endswith(
            (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff", ".gif")
        )
    )


def _without_mention(text: str, user: discord.ClientUser | None) -> str:
    if user is None:
        return text.strip()
    for mention in (f"<@{user.id}>", f"<@!{user.id}>"):
        text = text.replace(mention, "")
    return " ".join(text.split())


# ----- slash commands ----------------------------------------------------------------------------


def _actor_of(interaction: discord.Interaction) -> Actor:
    return actor_for(interaction.channel_id or 0, interaction.user.id)


class LocalizedTree(app_commands.CommandTree):
    """Runs every slash command in its user's language (/language, else Discord's locale),
    behind the access gate (a refused user's command never runs)."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # discord.py runs the check and the command in one task of their own
        client = self.client
        assert isinstance(client, Pix2ChatClient)
        locale = await client.service.locale(_actor_of(interaction), interaction.locale.value)
        set_task_locale(locale)
        return await admin.check_interaction(client.service, interaction)


def _register_commands(client: Pix2ChatClient) -> None:
    tree, service, delivery = client.tree, client.service, client.delivery

    actor_of = _actor_of

    async def respond(interaction: discord.Interaction, reply: Reply) -> None:
        await delivery.answer_interaction(interaction, actor_of(interaction), reply)

    @tree.command(name="edit", description=described(Key.COMMAND_EDIT))
    @app_commands.describe(
        image=described(Key.OPTION_IMAGE), instruction=described(Key.OPTION_INSTRUCTION)
    )
    async def edit(
        interaction: discord.Interaction, image: discord.Attachment, instruction: str | None = None
    ) -> None:
        await interaction.response.defer(thinking=True)
        reply = await client._receive_attachment(
            actor_of(interaction), image, instruction or "", f"dc-i:{interaction.id}"
        )
        await respond(interaction, reply)

    @tree.command(name="instruct", description=described(Key.COMMAND_INSTRUCT))
    @app_commands.describe(text=described(Key.OPTION_TEXT))
    async def instruct(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer(thinking=True)
        reply = await service.instruct(
            actor_of(interaction), text, request_key=f"dc-i:{interaction.id}"
        )
        await respond(interaction, reply)

    async def simple(interaction: discord.Interaction, call: Any) -> None:
        await interaction.response.defer(thinking=True)
        await respond(interaction, await call(actor_of(interaction)))

    @tree.command(name="undo", description=described(Key.COMMAND_UNDO))
    async def undo(interaction: discord.Interaction) -> None:
        await simple(interaction, service.undo)

    @tree.command(name="redo", description=described(Key.COMMAND_REDO))
    async def redo(interaction: discord.Interaction) -> None:
        await simple(interaction, service.redo)

    @tree.command(name="regenerate", description=described(Key.COMMAND_REGENERATE))
    async def regenerate(interaction: discord.Interaction) -> None:
        await simple(interaction, service.regenerate)

    @tree.command(name="variations", description=described(Key.COMMAND_VARIATIONS))
    async def variations(interaction: discord.Interaction) -> None:
        await simple(interaction, service.variations)

    @tree.command(name="stronger", description=described(Key.COMMAND_STRONGER))
    async def stronger(interaction: discord.Interaction) -> None:
        await simple(interaction, service.stronger)

    @tree.command(name="subtler", description=described(Key.COMMAND_SUBTLER))
    async def subtler(interaction: discord.Interaction) -> None:
        await simple(interaction, service.subtler)

    @tree.command(name="history", description=described(Key.COMMAND_HISTORY))
    async def history(interaction: discord.Interaction) -> None:
        await simple(interaction, service.history)

    @tree.command(name="reset", description=described(Key.COMMAND_RESET))
    async def reset(interaction: discord.Interaction) -> None:
        await simple(interaction, service.reset)

    @tree.command(name="cancel", description=described(Key.COMMAND_CANCEL))
    async def cancel(interaction: discord.Interaction) -> None:
        await simple(interaction, service.cancel)

    @tree.command(name="model", description=described(Key.COMMAND_MODEL))
    @app_commands.describe(name=described(Key.OPTION_MODEL))
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        actor = actor_of(interaction)
        if name:
            reply = await service.update_setting(actor, "model", name)
        else:
            reply = await service.model_choices(actor)
        await respond(interaction, reply)

    @tree.command(name="status", description=described(Key.COMMAND_STATUS))
    async def status(interaction: discord.Interaction) -> None:
        await simple(interaction, service.status)

    @tree.command(name="keep", description=described(Key.COMMAND_KEEP))
    @app_commands.describe(region=described(Key.OPTION_KEEP_REGION))
    async def keep(interaction: discord.Interaction, region: str) -> None:
        await interaction.response.defer(thinking=True)
        await respond(interaction, await service.keep(actor_of(interaction), region))

    @tree.command(name="only", description=described(Key.COMMAND_ONLY))
    @app_commands.describe(region=described(Key.OPTION_ONLY_REGION))
    async def only(interaction: discord.Interaction, region: str) -> None:
        await interaction.response.defer(thinking=True)
        await respond(interaction, await service.only(actor_of(interaction), region))

    @tree.command(name="regions", description=described(Key.COMMAND_REGIONS))
    async def regions(interaction: discord.Interaction) -> None:
        await simple(interaction, service.show_regions)

    @tree.command(name="help", description=described(Key.COMMAND_HELP))
    async def help_command(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"{render(Key.WELCOME)}\n\n{render(Key.HELP)}", ephemeral=True
        )

    @tree.command(name="language", description=described(Key.COMMAND_LANGUAGE))
    @app_commands.describe(code=described(Key.OPTION_CODE))
    async def language(interaction: discord.Interaction, code: str | None = None) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        reply = await service.choose_language(actor_of(interaction), code, interaction.locale.value)
        await respond(interaction, reply)

    @tree.command(name="forget", description=described(Key.COMMAND_FORGET))
    async def forget(interaction: discord.Interaction) -> None:
        view = views.forget_view(client.button_class, str(interaction.user.id))
        await interaction.response.send_message(
            render(Key.FORGET_CONFIRM), view=view, ephemeral=True
        )

    @tree.command(name="settings", description=described(Key.COMMAND_SETTINGS))
    @app_commands.describe(
        steps=described(Key.OPTION_STEPS),
        text_guidance=described(Key.OPTION_TEXT_GUIDANCE),
        image_guidance=described(Key.OPTION_IMAGE_GUIDANCE),
        seed_mode=described(Key.OPTION_SEED_MODE),
        resolution=described(Key.OPTION_RESOLUTION),
        defaults=described(Key.OPTION_DEFAULTS),
    )
    async def settings(
        interaction: discord.Interaction,
        steps: app_commands.Range[int, 1, 100] | None = None,
        text_guidance: app_commands.Range[float, 1.0, 20.0] | None = None,
        image_guidance: app_commands.Range[float, 1.0, 5.0] | None = None,
        seed_mode: Literal["random", "fixed"] | None = None,
        resolution: Literal[256, 384, 512, 640, 768] | None = None,
        defaults: bool = False,
    ) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        actor = actor_of(interaction)
        reply: Reply | None = await service.reset_settings(actor) if defaults else None
        changes = {
            "steps": steps,
            "text_guidance": text_guidance,
            "image_guidance": image_guidance,
            "seed_mode": seed_mode,
            "resolution": resolution,
        }
        for name, value in changes.items():
            if value is not None:
                reply = await service.update_setting(actor, name, value)
                if reply.is_error:
                    break
        if reply is None or not reply.is_error:
            reply = await service.settings(actor)
        await respond(interaction, reply)
