"""The fake Discord (REST + gateway) against the real discord.py client.

These tests are the fake's contract: whatever the Discord frontend's tests rely on (gateway
login and reconnects, slash commands with attachments, deferred responses with files,
persistent views, 429/403 answers, attachment downloads) is shown here to work through
discord.py's own HTTP and gateway code, so a frontend test failing against the fake points at
the frontend, not at the fake.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable

import discord
import pytest
from discord import app_commands
from PIL import Image

from tests.fakes.discord_api import FakeDiscord, GuildSpec, Upload
from tests.fakes.discord_payloads import ATTACH_FILES, DEFAULT_BOT_PERMISSIONS

GUILD = 111_000_000_000_000_001
CHANNEL = 111_000_000_000_000_010
OTHER_CHANNEL = 111_000_000_000_000_011
USER = 222_000_000_000_000_001
TIMEOUT = 5.0


def png(width: int = 32, height: int = 24, color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def intents(*, message_content: bool = True) -> discord.Intents:
    wanted = discord.Intents.default()
    wanted.message_content = message_content
    return wanted


class Bot(discord.Client):
    """A small bot in the shape of the frontend: a command tree, a persistent view, events."""

    def __init__(self, *, message_content: bool = True) -> None:
        super().__init__(intents=intents(message_content=message_content), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: dict[str, list[object]] = {"ready": [], "resumed": [], "message": []}

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s here before every re-IDENTIFY; no need against the fake."""

    async def on_ready(self) -> None:
        self.seen["ready"].append(None)

    async def on_resumed(self) -> None:
        self.seen["resumed"].append(None)

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id != self.user.id:  # type: ignore[union-attr]
            self.seen["message"].append(message)

    async def nth(self, kind: str, n: int = 1) -> object:
        """The n-th (1-based) event of this kind since the client started."""
        await until(lambda: len(self.seen[kind]) >= n)
        return self.seen[kind][n - 1]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guild = GuildSpec(GUILD, channels={CHANNEL: "photos", OTHER_CHANNEL: "readonly"})
    async with FakeDiscord(guilds=[guild], users={USER: "ann"}) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    client = Bot()
    async with fake.running(client):
        yield client


async def until(condition: Callable[[], bool]) -> None:
    """Poll state the client updates from its own tasks."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110 - the state lives in discord.py's tasks
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Login, gateway
# ---------------------------------------------------------------------------------------------


async def test_client_logs_in_and_sees_the_configured_guild(fake: FakeDiscord, bot: Bot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(GUILD)
    assert guild is not None
    channel = guild.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel) and channel.name == "photos"
    perms = channel.permissions_for(guild.me)
    assert perms.send_messages and perms.attach_files and not perms.manage_messages
    identify = await fake.wait_for_gateway(2)
    assert identify["d"]["intents"] == intents().value
    assert fake.find("GET", "/users/@me") and fake.find("GET", "/oauth2/applications/@me")
    # discord.py insists on a compressed gateway (zlib-stream without the zstandard package)
    [query] = fake.gateway_connections
    assert query["compress"] in ("zlib-stream", "zstd-stream") and query["encoding"] == "json"
    assert len(bot.seen["ready"]) == 1 and fake.connected


async def test_disconnect_resumes_and_replays_missed_events(fake: FakeDiscord, bot: Bot) -> None:
    await fake.disconnect()
    fake.send_message(CHANNEL, USER, "sent while offline")
    await bot.nth("resumed")
    message = await bot.nth("message")
    assert isinstance(message, discord.Message) and message.content == "sent while offline"
    assert fake.resume_count == 1 and fake.identify_count == 1 and len(bot.seen["ready"]) == 1


async def test_invalidated_session_identifies_again(fake: FakeDiscord, bot: Bot) -> None:
    await fake.disconnect(resumable=False)
    await bot.nth("ready", 2)
    assert fake.identify_count == 2 and not bot.seen["resumed"]
    assert bot.get_guild(GUILD) is not None


async def test_op7_reconnect_resumes(fake: FakeDiscord, bot: Bot) -> None:
    fake.request_reconnect()
    await bot.nth("resumed")
    assert fake.resume_count == 1


async def test_patch_points_discord_py_here_and_is_undone() -> None:
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as server:
        patched = (Route.BASE, str(DiscordWebSocket.DEFAULT_GATEWAY))
    assert patched == (server.api_base, server.gateway_url)
    restored = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    assert restored == (base, gateway)
    assert base == "https://discord.com/api/v10"


async def test_disallowed_privileged_intent_is_refused() -> None:
    guild = GuildSpec(GUILD, channels=[CHANNEL])
    async with FakeDiscord(guilds=[guild], allowed_intents=0) as server:
        client = Bot()
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with server.running(client):
                pass


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


async def test_user_message_with_attachment_reaches_on_message(fake: FakeDiscord, bot: Bot) -> None:
    image = png(64, 48)
    sent = fake.send_message(
        CHANNEL,
        USER,
        "make it snow",
        attachments=[Upload("cat.png", image, size=30 * 1024 * 1024)],
    )
    message = await bot.nth("message")
    assert isinstance(message, discord.Message)
    assert message.id == sent.id and message.content == "make it snow"
    assert message.guild is not None and message.guild.id == GUILD
    assert message.author.id == USER and message.author.name == "ann"
    [attachment] = message.attachments
    assert attachment.filename == "cat.png" and attachment.content_type == "image/png"
    assert (attachment.width, attachment.height) == (64, 48)
    assert attachment.size == 30 * 1024 * 1024  # claimed size, for size-limit checks
    assert await attachment.read() == image


async def test_without_message_content_intent_guild_content_is_empty(fake: FakeDiscord) -> None:
    client = Bot(message_content=False)
    async with fake.running(client):
        fake.send_message(CHANNEL, USER, "hidden", attachments=[("a.png", png())])
        hidden = await client.nth("message")
        fake.send_message(CHANNEL, USER, f"<@{fake.bot_id}> visible")
        mention = await client.nth("message", 2)
    assert isinstance(hidden, discord.Message) and isinstance(mention, discord.Message)
    assert hidden.content == "" and hidden.attachments == []
    assert mention.content.endswith("visible") and mention.mentions[0].id == fake.bot_id


async def test_bot_reply_with_file_edit_and_delete(fake: FakeDiscord, bot: Bot) -> None:
    user_message = fake.send_message(CHANNEL, USER, "hi")
    await bot.nth("message")
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    async with channel.typing():
        pass
    original = channel.get_partial_message(user_message.id)
    reply = await original.reply("working", file=discord.File(io.BytesIO(b"one"), "a.png"))
    request = await fake.wait_for("POST", rf"/channels/{CHANNEL}/messages")
    assert request.files == {"a.png": b"one"} and request.json["content"] == "working"
    assert fake.find("POST", rf"/channels/{CHANNEL}/typing")

    edited = await reply.edit(
        content="done", attachments=[discord.File(io.BytesIO(b"two"), "b.png")]
    )
    assert edited.content == "done" and [a.filename for a in edited.attachments] == ["b.png"]
    [shown] = fake.messages(CHANNEL)
    assert shown.content == "done" and shown.reference_message_id == user_message.id
    assert [(a.filename, a.data) for a in shown.attachments] == [("b.png", b"two")]
    assert shown.edit_count == 1

    fetched = await channel.fetch_message(reply.id)
    assert fetched.content == "done"
    await reply.delete()
    assert fake.messages(CHANNEL) == []
    with pytest.raises(discord.NotFound) as missing:
        await channel.fetch_message(reply.id)
    assert missing.value.code == 10008


async def test_dm_round_trip(fake: FakeDiscord, bot: Bot) -> None:
    user = await bot.fetch_user(USER)
    sent = await user.send("hello in private")
    dm = fake.dm_channel(USER)
    assert sent.channel.id == dm and fake.messages(dm)[0].content == "hello in private"
    fake.send_message(dm, USER, "reply", attachments=[("x.png", png())])
    message = await bot.nth("message")
    assert isinstance(message, discord.Message)
    assert message.guild is None and isinstance(message.channel, discord.DMChannel)
    assert message.content == "reply" and len(message.attachments) == 1


# ---------------------------------------------------------------------------------------------
# Errors and fault injection
# ---------------------------------------------------------------------------------------------


async def test_429_is_retried_by_discord_py(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST", rf"/channels/{CHANNEL}/messages", 429, retry_after=0.05)
    message = await channel.send("after a rate limit")
    attempts = fake.find("POST", rf"/channels/{CHANNEL}/messages")
    assert [r.status for r in attempts] == [429, 200]
    assert attempts[0].response == {
        "message": "You are being rate limited.",
        "retry_after": 0.05,
        "global": False,
    }
    assert fake.messages(CHANNEL)[-1].id == message.id


async def test_injected_403_and_404_surface_as_discord_errors(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST", rf"/channels/{CHANNEL}/messages", 403)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("nope")
    assert forbidden.value.code == 50013 and forbidden.value.status == 403
    message = await channel.send("yes")
    fake.fail_next("PATCH", rf"/channels/{CHANNEL}/messages/\d+", 404)
    with pytest.raises(discord.NotFound) as missing:
        await message.edit(content="gone")
    assert missing.value.code == 10008


async def test_real_permission_checks_and_body_validation(fake: FakeDiscord, bot: Bot) -> None:
    fake.set_bot_permissions(
        GUILD, DEFAULT_BOT_PERMISSIONS & ~ATTACH_FILES, channel_id=OTHER_CHANNEL
    )
    channel = bot.get_channel(OTHER_CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    await channel.send("text is fine")
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send(file=discord.File(io.BytesIO(b"x"), "x.png"))
    assert forbidden.value.code == 50013
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.code == 50035 and "content" in str(too_long.value)


# ---------------------------------------------------------------------------------------------
# Slash commands, interactions, views
# ---------------------------------------------------------------------------------------------


def add_edit_command(bot: Bot, seen: dict[str, object]) -> None:
    @bot.tree.command(name="edit", description="Edit a photo")
    @app_commands.describe(image="The photo", prompt="What to change")
    async def edit(
        interaction: discord.Interaction, image: discord.Attachment, prompt: str
    ) -> None:
        seen["image"] = await image.read()
        seen["prompt"] = prompt
        await interaction.response.defer()
        await interaction.edit_original_response(
            content=f"edited: {prompt}",
            attachments=[discord.File(io.BytesIO(b"edited-bytes"), "out.png")],
        )
        followup = await interaction.followup.send("anything else?", wait=True)
        seen["followup"] = followup.id


async def test_slash_command_defer_edit_original_and_followup(fake: FakeDiscord, bot: Bot) -> None:
    seen: dict[str, object] = {}
    add_edit_command(bot, seen)
    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    synced = await bot.tree.sync(guild=discord.Object(GUILD))
    assert [c.name for c in synced] == ["edit"]
    [registered] = fake.commands(GUILD)
    assert [(o["name"], o["type"]) for o in registered["options"]] == [("image", 11), ("prompt", 3)]

    image = png()
    inter = fake.slash(
        "edit", USER, CHANNEL, {"prompt": "snow"}, attachments={"image": ("in.png", image)}
    )
    callback = await fake.wait_for("POST", rf"/interactions/{inter.id}/.+/callback")
    assert callback.json["type"] == 5
    patch = await fake.wait_for("PATCH", r"/webhooks/\d+/.+/messages/@original")
    assert patch.files == {"out.png": b"edited-bytes"}
    follow = await fake.wait_for("POST", rf"/webhooks/{fake.application_id}/{inter.token}")
    assert follow.json["content"] == "anything else?"
    assert seen["image"] == image and seen["prompt"] == "snow"

    original, followup = fake.messages(CHANNEL)
    assert original.id == inter.original_message_id and not original.loading
    assert original.content == "edited: snow"
    assert [(a.filename, a.data) for a in original.attachments] == [("out.png", b"edited-bytes")]
    assert original.interaction is not None and original.interaction["user"]["id"] == str(USER)
    assert followup.id == seen["followup"] and followup.content == "anything else?"
    assert inter.response_type == 5 and inter.followup_ids == [followup.id]


async def test_slash_checks_options_against_the_registered_command(
    fake: FakeDiscord, bot: Bot
) -> None:
    add_edit_command(bot, {})
    await bot.tree.sync()  # global this time
    assert [c["name"] for c in fake.commands()] == ["edit"]
    with pytest.raises(ValueError, match="required options missing"):
        fake.slash("edit", USER, CHANNEL, {"prompt": "x"})
    with pytest.raises(ValueError, match="unknown options"):
        fake.slash("edit", USER, CHANNEL, {"prompt": "x", "image": ("a.png", b""), "zoom": 2})
    with pytest.raises(ValueError, match="no command"):
        fake.slash("nope", USER, CHANNEL)


async def test_ephemeral_reply_then_expired_token(fake: FakeDiscord, bot: Bot) -> None:
    errors: list[Exception] = []
    gate = asyncio.Event()

    @bot.tree.command(name="ping", description="Ping")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)
        await gate.wait()
        try:
            await interaction.edit_original_response(content="late")
        except discord.HTTPException as exc:
            errors.append(exc)

    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    await bot.tree.sync(guild=discord.Object(GUILD))
    inter = fake.slash("ping", USER, CHANNEL)
    await fake.wait_for("POST", rf"/interactions/{inter.id}/.+/callback")
    [shown] = fake.messages(CHANNEL)
    assert shown.content == "pong" and shown.ephemeral
    fake.expire_interaction(inter)
    gate.set()
    await until(lambda: bool(errors))
    assert isinstance(errors[0], discord.HTTPException)
    assert errors[0].status == 401 and errors[0].code == 50027


async def test_late_acknowledgement_is_unknown_interaction(fake: FakeDiscord, bot: Bot) -> None:
    fake.callback_deadline = 0.05
    errors: list[Exception] = []

    @bot.tree.command(name="slow", description="Slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.1)
        try:
            await interaction.response.defer()
        except discord.NotFound as exc:
            errors.append(exc)

    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    await bot.tree.sync(guild=discord.Object(GUILD))
    fake.slash("slow", USER, CHANNEL)
    await until(lambda: bool(errors))
    assert errors[0].code == 10062  # type: ignore[attr-defined]


class AgainView(discord.ui.View):
    def __init__(self, pressed: asyncio.Queue[int]) -> None:
        super().__init__(timeout=None)
        self.pressed = pressed

    @discord.ui.button(label="Again", custom_id="p2c:again", style=discord.ButtonStyle.primary)
    async def again(
        self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]
    ) -> None:
        self.pressed.put_nowait(interaction.user.id)
        await interaction.response.edit_message(content="again!", view=None)


async def test_persistent_view_receives_a_press_on_an_old_message(
    fake: FakeDiscord, bot: Bot
) -> None:
    pressed: asyncio.Queue[int] = asyncio.Queue()
    bot.add_view(AgainView(pressed))  # persistent: no message id, survives restarts
    old = fake.seed_message(
        CHANNEL,
        "result",
        components=[
            {
                "type": 1,
                "components": [{"type": 2, "style": 1, "label": "Again", "custom_id": "p2c:again"}],
            }
        ],
    )
    inter = fake.press("p2c:again", USER, old.id)
    assert await asyncio.wait_for(pressed.get(), TIMEOUT) == USER
    await fake.wait_for("POST", rf"/interactions/{inter.id}/.+/callback")
    shown = fake.message(old.id)
    assert shown.content == "again!" and shown.components == []
    assert inter.response_type == 7
    with pytest.raises(ValueError, match="no component"):
        fake.press("p2c:again", USER, old.id)


async def test_view_sent_by_the_bot_then_pressed_in_a_dm(fake: FakeDiscord, bot: Bot) -> None:
    pressed: asyncio.Queue[int] = asyncio.Queue()
    user = await bot.fetch_user(USER)
    sent = await user.send("pick", view=AgainView(pressed))
    inter = fake.press("p2c:again", USER, sent.id)
    assert await asyncio.wait_for(pressed.get(), TIMEOUT) == USER
    await fake.wait_for("POST", rf"/interactions/{inter.id}/.+/callback")
    assert fake.message(sent.id).content == "again!"


class PromptModal(discord.ui.Modal, title="New prompt"):
    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt"
    )

    def __init__(self, got: asyncio.Queue[str]) -> None:
        super().__init__(custom_id="p2c:prompt")
        self.got = got

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.got.put_nowait(self.prompt.value)
        await interaction.response.send_message(f"ok: {self.prompt.value}")


async def test_modal_round_trip(fake: FakeDiscord, bot: Bot) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()

    @bot.tree.command(name="prompt", description="Ask for a prompt")
    async def prompt(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PromptModal(got))

    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    await bot.tree.sync(guild=discord.Object(GUILD))
    inter = fake.slash("prompt", USER, CHANNEL)
    callback = await fake.wait_for("POST", rf"/interactions/{inter.id}/.+/callback")
    assert callback.json["type"] == 9 and callback.json["data"]["custom_id"] == "p2c:prompt"
    submit = fake.submit_modal("p2c:prompt", USER, CHANNEL, {"prompt": "add a hat"})
    assert await asyncio.wait_for(got.get(), TIMEOUT) == "add a hat"
    await fake.wait_for("POST", rf"/interactions/{submit.id}/.+/callback")
    assert fake.messages(CHANNEL)[-1].content == "ok: add a hat"


async def test_followup_after_thinking_defer_replaces_the_loading_message(
    fake: FakeDiscord, bot: Bot
) -> None:
    @bot.tree.command(name="think", description="Think")
    async def think(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        await interaction.followup.send("thought", ephemeral=True)

    bot.tree.copy_global_to(guild=discord.Object(GUILD))
    await bot.tree.sync(guild=discord.Object(GUILD))
    inter = fake.slash("think", USER, CHANNEL)
    await fake.wait_for("POST", rf"/webhooks/{fake.application_id}/{inter.token}")
    [shown] = fake.messages(CHANNEL)
    assert shown.id == inter.original_message_id and shown.content == "thought"
    assert shown.ephemeral and not shown.loading and inter.followup_ids == []


async def test_bad_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = Bot()
    with pytest.raises(discord.LoginFailure):
        await client.login("wrong-token")
    await client.close()


async def test_history_and_user_messages(fake: FakeDiscord, bot: Bot) -> None:
    first = fake.send_message(CHANNEL, USER, "one")
    second = fake.send_message(CHANNEL, USER, "two", reference_message_id=first.id)
    channel = bot.get_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    history = [m async for m in channel.history(limit=10)]
    assert [m.content for m in history] == ["two", "one"]
    assert history[0].reference is not None and history[0].reference.message_id == first.id
    assert fake.messages(CHANNEL) == []  # only the bot's by default
    assert [m.id for m in fake.messages(CHANNEL, include_users=True)] == [first.id, second.id]
