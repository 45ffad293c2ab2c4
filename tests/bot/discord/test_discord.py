"""The Discord frontend end to end.

A real discord.py client (gateway websocket, REST, app-command tree, persistent dynamic
buttons) connects to the loopback fake of Discord in tests/fakes/discord_api.py, on top of the
production object graph (`bot.app.build`) with the NullEditor. Every assertion is on what the
fake received: message contents, buttons, uploaded images.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import Components, build
from bot.commands.bench_service import product_photo
from bot.config import Settings
from bot.discord import delivery as discord_delivery
from bot.discord.frontend import DiscordFrontend
from editor.testing.doubles import GatedEditor, NullEditor
from tests.bot.service.harness import decompression_bomb, photo
from tests.fakes.discord_api import FakeDiscord, FakeMessage, GuildSpec

GUILD, CHANNEL, QUIET = 111, 222, 333
ANN, BEN = 501, 502
TIMEOUT = 20.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guild = GuildSpec(GUILD, channels={CHANNEL: "edits", QUIET: "general"})
    async with FakeDiscord(guilds=[guild], users={ANN: "ann", BEN: "ben"}) as server:
        yield server


@asynccontextmanager
async def running_bot(
    fake: FakeDiscord, data_dir: Path, editor: Any, **overrides: Any
) -> AsyncIterator[Components]:
    values: dict[str, Any] = {
        "discord_token": fake.token,
        "discord_channel_ids": [CHANNEL],
        "data_dir": data_dir,
        "default_steps": 2,
        "default_resolution": 256,
        "max_wait_ms": 0,
        "rate_burst": 100,
        "rate_per_minute": 600.0,
    }
    values.update(overrides)
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    stop = asyncio.Event()
    async with build(settings, editor=editor) as components:
        frontend = DiscordFrontend(settings, {"guild_ready_timeout": 0.05})
        since = fake.mark()
        task = asyncio.create_task(frontend.run(components, stop))
        try:
            await fake.wait_for("PUT", r"/applications/\d+/commands", since=since, timeout=TIMEOUT)
            await fake.wait_for_gateway(2, timeout=TIMEOUT)  # IDENTIFY
            await asyncio.sleep(0.3)  # READY and GUILD_CREATE processed
            yield components
        finally:
            stop.set()
            await asyncio.wait_for(task, TIMEOUT)


def jpeg(size: tuple[int, int] = (320, 240), shade: int = 0) -> bytes:
    return photo(size, shade=shade, fmt="JPEG")


def upload(data: bytes, name: str = "photo.jpg", kind: str = "image/jpeg") -> tuple[Any, ...]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return (name, data, kind, width, height)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def image_of(message: FakeMessage) -> bytes:
    assert message.attachments, f"no picture in {message.content!r}"
    return message.attachments[0].data


def buttons(message: FakeMessage) -> dict[str, str]:
    return {
        button.get("label", ""): button["custom_id"]
        for row in message.components
        for button in row.get("components", [])
    }


def button(message: FakeMessage, word: str) -> str:
    for label, custom in buttons(message).items():
        if word.lower() in label.lower():
            return custom
    raise AssertionError(f"no {word!r} button in {buttons(message)}")


async def until(predicate: Any, timeout: float = TIMEOUT) -> Any:  # noqa: ASYNC109
    """Poll the fake's state until `predicate()` returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            found = predicate()
            if found:
                return found
            await asyncio.sleep(0.02)


def original(fake: FakeDiscord, interaction: Any) -> FakeMessage | None:
    """The interaction's response message as it looks now."""
    message_id = fake.interaction(interaction.token).original_message_id
    return fake.message(message_id) if message_id else None


async def response_with_image(fake: FakeDiscord, interaction: Any) -> FakeMessage:
    return await until(
        lambda: (m := original(fake, interaction)) is not None and m.attachments and m
    )


async def response_text(fake: FakeDiscord, interaction: Any, contains: str) -> str:
    message = await until(
        lambda: (m := original(fake, interaction)) is not None and contains in m.content and m
    )
    return message.content


# -- slash commands and buttons ----------------------------------------------------------------


async def test_slash_commands_buttons_and_a_restart(fake: FakeDiscord, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running_bot(fake, data_dir, NullEditor()):
        names = {command["name"] for command in fake.commands()}
        assert {"edit", "instruct", "undo", "redo", "regenerate", "history", "settings"} <= names

        started = fake.slash(
            "edit",
            ANN,
            QUIET,
            {"instruction": "make it night"},
            attachments={"image": upload(jpeg())},
        )
        night = await response_with_image(fake, started)
        assert "make it night" in night.content and "seed" in night.content
        assert decode(image_of(night)).size == (320, 240)  # developed onto the photo
        assert set(buttons(night)) >= {"↩ Undo", "🎲 Regenerate", "⬇ Full resolution"}
        assert fake.interaction(started.token).acknowledged

        snow = await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "add snow"})
        )
        assert "add snow" in snow.content
        assert image_of(snow) != image_of(night)

        undone = await response_with_image(fake, fake.slash("undo", ANN, QUIET))
        assert image_of(undone) == image_of(night)
        redone = await response_with_image(fake, fake.slash("redo", ANN, QUIET))
        assert image_of(redone) == image_of(snow)
        again = await response_with_image(fake, fake.slash("regenerate", ANN, QUIET))
        assert "add snow" in again.content and again.content != snow.content

        # Full resolution: the lossless PNG as a follow-up.
        since = fake.mark()
        fake.press(button(night, "full"), ANN, night.id, QUIET)
        followup = await fake.wait_for("POST", r"/webhooks/\d+/[^/]+", since=since)
        png = next(iter(followup.files.values()))
        assert png.startswith(b"\x89PNG") and decode(png).size == (320, 240)

    # After a restart the buttons on old messages still work.
    async with running_bot(fake, data_dir, NullEditor()):
        pressed = fake.press(button(snow, "regenerate"), ANN, snow.id, QUIET)
        regenerated = await response_with_image(fake, pressed)
        assert "add snow" in regenerated.content
        history = fake.slash("history", ANN, QUIET)
        listing = await response_text(fake, history, "make it night")
        assert listing.index("make it night") < listing.index("add snow")


async def test_two_users_in_one_channel_and_someone_elses_button(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        ann = await response_with_image(
            fake,
            fake.slash(
                "edit",
                ANN,
                CHANNEL,
                {"instruction": "make it night"},
                attachments={"image": upload(jpeg(shade=10))},
            ),
        )
        ben = await response_with_image(
            fake,
            fake.slash(
                "edit",
                BEN,
                CHANNEL,
                {"instruction": "add snow"},
                attachments={"image": upload(jpeg(shade=200))},
            ),
        )
        # Ben's undo goes back to Ben's photo, not Ann's.
        ben_back = await response_with_image(fake, fake.slash("undo", BEN, CHANNEL))
        assert decode(image_of(ben_back)).getpixel((5, 5)) != decode(image_of(ann)).getpixel((5, 5))
        # Ben pressing Ann's Undo gets an ephemeral notice and nothing changes.
        pressed = fake.press(button(ann, "undo"), BEN, ann.id, CHANNEL)
        await until(lambda: fake.interaction(pressed.token).acknowledged)
        notice = fake.interaction(pressed.token).response_data or {}
        assert "Only the person" in notice.get("content", "")
        assert notice.get("flags", 0) & 64  # ephemeral
        listing = await response_text(fake, fake.slash("history", ANN, CHANNEL), "make it night")
        assert "add snow" not in listing
        assert "(seed" in listing and "← now" in listing.splitlines()[-1]
        assert ben.content != ann.content


# -- the message flow ----------------------------------------------------------------------------


async def test_message_flow_photos_instructions_and_reply_to_branch(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        since = fake.mark()
        fake.send_message(CHANNEL, ANN, "", attachments=[upload(jpeg())])
        await fake.wait_for("POST", rf"/channels/{CHANNEL}/messages", since=since)
        await until(lambda: any("Got your photo" in m.content for m in fake.messages(CHANNEL)))

        fake.send_message(CHANNEL, ANN, "make it night")
        night = await until(
            lambda: [
                m for m in fake.messages(CHANNEL) if "make it night" in m.content and m.attachments
            ]
        )
        fake.send_message(CHANNEL, ANN, "add snow")
        await until(
            lambda: [m for m in fake.messages(CHANNEL) if "add snow" in m.content and m.attachments]
        )
        # A reply to the older result branches from it.
        fake.send_message(CHANNEL, ANN, "add a moon", reference_message_id=night[0].id)
        await until(
            lambda: [
                m for m in fake.messages(CHANNEL) if "add a moon" in m.content and m.attachments
            ]
        )
        listing = await response_text(fake, fake.slash("history", ANN, CHANNEL), "add a moon")
        assert "add snow" not in listing  # the path root -> night -> moon

        # Plain chatter in a channel the bot does not own is ignored; a mention is not.
        before = len(fake.messages(QUIET))
        fake.send_message(QUIET, BEN, "nice weather")
        await asyncio.sleep(0.3)
        assert len(fake.messages(QUIET)) == before
        fake.send_message(QUIET, BEN, f"<@{fake.bot_id}> make it night")
        text = await until(lambda: [m for m in fake.messages(QUIET) if "photo first" in m.content])
        assert text


async def test_bad_attachments_get_clear_replies(fake: FakeDiscord, tmp_path: Path) -> None:
    cases = [
        ("isn't a photo", upload_raw(b"hello", "notes.txt", "text/plain")),
        ("couldn't read", upload_raw(jpeg()[:300], "broken.jpg", "image/jpeg")),
        ("too large", upload_raw(decompression_bomb(), "bomb.png", "image/png")),
    ]
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        for expected, attachment in cases:
            interaction = fake.slash("edit", ANN, QUIET, attachments={"image": attachment})
            text = await response_text(fake, interaction, expected)
            assert "Traceback" not in text
        # Declared too big: refused before downloading.
        since = fake.mark()
        huge = ("huge.jpg", b"x" * 100, "image/jpeg", 100, 100, 30 * 2**20)
        interaction = fake.slash("edit", ANN, QUIET, attachments={"image": huge})
        assert "too large" in await response_text(fake, interaction, "too large")
        assert not fake.find("GET", r"/attachments/.*", since=since)
        # Declared dimensions far beyond any photo: refused before downloading too.
        since = fake.mark()
        wide = ("wide.jpg", jpeg(), "image/jpeg", 30_000, 200)
        interaction = fake.slash("edit", ANN, QUIET, attachments={"image": wide})
        assert "too large" in await response_text(fake, interaction, "too large")
        assert not fake.find("GET", r"/attachments/.*", since=since)
        # Several images in one message: the first is used, and the user is told.
        since = fake.mark()
        fake.send_message(
            CHANNEL, BEN, "", attachments=[upload(jpeg(shade=1)), upload(jpeg(shade=2))]
        )
        await until(lambda: [m for m in fake.messages(CHANNEL) if "first photo" in m.content])
        await until(lambda: [m for m in fake.messages(CHANNEL) if "Got your photo" in m.content])
        assert len(fake.find("GET", r"/attachments/.*", since=since)) == 1


def noisy_photo() -> bytes:
    """A photo with sensor noise: its lossless PNG is much bigger than its JPEG."""
    buffer = io.BytesIO()
    product_photo(320).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def upload_raw(data: bytes, name: str, kind: str) -> tuple[Any, ...]:
    return (name, data, kind)


# -- robustness ----------------------------------------------------------------------------------


async def test_late_results_and_missing_permissions_lose_nothing(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    editor = GatedEditor()
    async with running_bot(fake, tmp_path / "data", editor):
        started = fake.slash("edit", ANN, QUIET, attachments={"image": upload(jpeg())})
        await response_text(fake, started, "Got your photo")

        # The interaction window closes while the edit runs: the result is posted in the channel.
        editor.gate.clear()
        late = fake.slash("instruct", ANN, QUIET, {"text": "add snow"})
        await response_text(fake, late, "add snow")
        fake.expire_interaction(late)
        editor.gate.set()
        posted = await until(
            lambda: [
                m
                for m in fake.messages(QUIET)
                if "add snow" in m.content and m.attachments and m.interaction is None
            ]
        )
        assert f"<@{ANN}>" in posted[0].content

        # No permission to post in a channel: the bot logs it and keeps serving others.
        fake.fail_next("POST", rf"/channels/{CHANNEL}/messages", status=403, times=5)
        fake.send_message(CHANNEL, BEN, "", attachments=[upload(jpeg())])
        await fake.wait_for("POST", rf"/channels/{CHANNEL}/messages")
        after = await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "add a moon"})
        )
        assert "add a moon" in after.content


async def test_progress_forget_rate_limits_and_reconnects(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    editor = NullEditor(step_delay_s=0.25)
    async with running_bot(fake, tmp_path / "data", editor, default_steps=10):
        await response_text(
            fake,
            fake.slash("edit", ANN, QUIET, attachments={"image": upload(jpeg())}),
            "Got your photo",
        )
        # Progress: the response is edited while the edit runs, at most every 1.5 s.
        since = fake.mark()
        running = fake.slash("instruct", ANN, QUIET, {"text": "make it night"})
        await response_with_image(fake, running)
        edits = [
            r.json.get("content", "")
            for r in fake.find("PATCH", r"/webhooks/\d+/[^/]+/messages/@original", since)
            if isinstance(r.json, dict)
        ]
        progress = [text for text in edits if "Editing…" in text]
        assert progress, edits
        assert len(progress) <= 2.5 / 1.5 + 1

        # A 429 on the result is retried by discord.py; a gateway reconnect loses nothing.
        fake.fail_next(
            "PATCH", r"/webhooks/\d+/[^/]+/messages/@original", status=429, retry_after=0.3
        )
        snow = await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "add snow"})
        )
        assert "add snow" in snow.content
        await fake.disconnect()
        await until(lambda: fake.connected)
        moon = await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "add a moon"})
        )
        assert "add a moon" in moon.content

        # /forget asks first (ephemerally); "Yes" deletes everything.
        asked = fake.slash("forget", ANN, QUIET)
        question = await until(lambda: original(fake, asked))
        assert question.ephemeral and "Are you sure" in question.content
        fake.press(button(question, "yes"), ANN, question.id, QUIET)
        await until(lambda: "deleted" in (original(fake, asked) or question).content)
        gone = await response_text(fake, fake.slash("undo", ANN, QUIET), "photo first")
        assert "Send me a photo first" in gone


async def test_settings_status_and_cancel(fake: FakeDiscord, tmp_path: Path) -> None:
    editor = GatedEditor()
    async with running_bot(fake, tmp_path / "data", editor):
        await response_text(
            fake,
            fake.slash("edit", ANN, QUIET, attachments={"image": upload(jpeg())}),
            "Got your photo",
        )
        shown = await response_text(
            fake, fake.slash("settings", ANN, QUIET, {"steps": 30, "resolution": 384}), "Settings"
        )
        assert "steps 30" in shown and "resolution 384" in shown
        await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "make it night"})
        )
        request = editor.calls[-1][0]
        assert (request.params.num_inference_steps, max(request.image.size)) == (30, 384)
        reset = await response_text(
            fake, fake.slash("settings", ANN, QUIET, {"defaults": True}), "Settings"
        )
        assert "steps 2" in reset

        editor.gate.clear()
        running = fake.slash("instruct", ANN, QUIET, {"text": "add snow"})
        await response_text(fake, running, "add snow")
        queued = fake.slash("instruct", ANN, QUIET, {"text": "add a moon"})
        await response_text(fake, queued, "add a moon")
        assert "in progress" in await response_text(
            fake, fake.slash("status", ANN, QUIET), "progress"
        )
        assert "Cancelled 1" in await response_text(
            fake, fake.slash("cancel", ANN, QUIET), "Cancelled"
        )
        editor.gate.set()
        assert "add snow" in (await response_with_image(fake, running)).content


async def test_direct_messages_and_instant_guild_sync(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor(), discord_guild_ids=[GUILD]):
        assert {c["name"] for c in fake.commands(GUILD)} >= {"edit", "instruct", "undo"}
        dm = fake.dm_channel(BEN)
        fake.send_message(dm, BEN, "add snow", attachments=[upload(jpeg())])
        snowy = await until(lambda: [m for m in fake.messages(dm) if m.attachments])
        assert "add snow" in snowy[0].content
        assert set(buttons(snowy[0])) >= {"↩ Undo", "🎲 Regenerate"}
        fake.send_message(dm, BEN, "/not a command, just text: make it night")
        await until(
            lambda: [m for m in fake.messages(dm) if "make it night" in m.content and m.attachments]
        )


async def test_full_resolution_over_the_upload_limit_sends_the_chat_copy(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()) as components:
        night = await response_with_image(
            fake,
            fake.slash(
                "edit",
                ANN,
                QUIET,
                {"instruction": "make it night"},
                attachments={"image": upload(noisy_photo())},
            ),
        )
        version = int(button(night, "full").split(":")[2])
        actor = discord_delivery.actor_for(QUIET, ANN)
        png = await components.service.image(actor, version, full=True)
        chat_copy = image_of(night)
        assert len(chat_copy) < len(png)
        # A channel whose upload limit lies between the chat copy and the lossless file.
        limit = (len(chat_copy) + len(png)) // 2
        monkeypatch.setattr(discord_delivery, "interaction_limit", lambda _interaction: limit)
        since = fake.mark()
        fake.press(button(night, "full"), ANN, night.id, QUIET)
        followup = await fake.wait_for("POST", r"/webhooks/\d+/[^/]+", since=since)
        name, data = next(iter(followup.files.items()))
        assert name.endswith(".jpg") and data.startswith(b"\xff\xd8")
        assert "upload limit" in followup.json["content"]
