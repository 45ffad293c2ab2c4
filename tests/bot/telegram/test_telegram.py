"""The Telegram frontend end to end.

The real python-telegram-bot Application long-polls a fake Bot API server on loopback
(tests/fakes/telegram_api.py, speaking Telegram's JSON and multipart formats), on top of the
production object graph (`bot.app.build`): SQLite, image store, scheduler, and either the tiny
random-weight diffusers pipeline or the NullEditor where the model is not the point. Every
assertion is on what the fake server received: texts, buttons, decoded photos.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from telegram.ext import AIORateLimiter

from bot.app import Components, build
from bot.config import Settings
from bot.service.messages import render
from bot.telegram import delivery as telegram_delivery
from bot.telegram.delivery import fits_as_photo
from bot.telegram.frontend import COMMANDS, TelegramFrontend
from editor.pix2pix import DiffusersEditor
from editor.testing.doubles import GatedEditor, NullEditor
from tests.bot.service.harness import decompression_bomb, photo
from tests.fakes.telegram_api import Call, FakeBotAPI, SentMessage

TOKEN = "123456:TEST-token"
ALICE, BOB = 1001, 1002
GROUP = -100777
TIMEOUT = 30.0


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


def settings_for(api: FakeBotAPI, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_token": TOKEN,
        "telegram_api_url": api.base_url,
        "telegram_file_url": api.base_file_url,
        "telegram_poll_timeout": 1,
        "data_dir": data_dir,
        "default_steps": 2,
        "default_resolution": 256,
        "max_wait_ms": 0,
        "rate_burst": 100,
        "rate_per_minute": 600.0,
        "max_pending_per_user": 5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_bot(
    api: FakeBotAPI, data_dir: Path, editor: Any, **overrides: Any
) -> AsyncIterator[Components]:
    """`pix2chat run` in-process: build the graph, serve Telegram until the block ends."""
    settings = settings_for(api, data_dir, **overrides)
    stop = asyncio.Event()
    # No flood-control waits in tests (Telegram's 20 messages a minute per group would make
    # group tests take minutes); 429 answers are still retried.
    limiter = AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=3)
    async with build(settings, editor=editor) as components:
        since = len(api.calls)
        task = asyncio.create_task(TelegramFrontend(settings, limiter).run(components, stop))
        try:
            ready = "setWebhook" if settings.telegram_webhook_url else "getUpdates"
            await api.wait_for(ready, timeout=TIMEOUT, since=since)
            yield components
        finally:
            stop.set()
            await asyncio.wait_for(task, TIMEOUT)


def jpeg(size: tuple[int, int] = (320, 240), shade: int = 0) -> bytes:
    return photo(size, shade=shade, fmt="JPEG")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def buttons(message: SentMessage | Call) -> dict[str, str]:
    """{button text: callback data} of a sent message's inline keyboard."""
    markup = (
        message.reply_markup
        if isinstance(message, SentMessage)
        else message.params.get("reply_markup")
    )
    if not markup:
        return {}
    return {
        button["text"]: button["callback_data"]
        for row in markup["inline_keyboard"]
        for button in row
    }


def button_data(message: SentMessage, word: str) -> str:
    for text, data in buttons(message).items():
        if word.lower() in text.lower():
            return data
    raise AssertionError(f"no {word!r} button in {buttons(message)}")


async def next_photo(api: FakeBotAPI, chat_id: int, since: int) -> SentMessage:
    """The next photo the bot sends to `chat_id`, as the chat shows it."""
    while True:  # skip flood-control refusals: the bot retries those
        call = await api.wait_for(
            "sendPhoto", lambda p: int(p["chat_id"]) == chat_id, timeout=TIMEOUT, since=since
        )
        if call.status != 429:
            break
        since = api.calls.index(call) + 1
    assert call.ok, call.response
    message_id = call.result["message_id"]
    return next(m for m in api.sent(chat_id, include_deleted=True) if m.message_id == message_id)


async def next_text(api: FakeBotAPI, chat_id: int, since: int, contains: str = "") -> str:
    call = await api.wait_for(
        "sendMessage",
        lambda p: int(p["chat_id"]) == chat_id and contains in str(p.get("text", "")),
        timeout=TIMEOUT,
        since=since,
    )
    return str(call.params["text"])


async def result_of(
    api: FakeBotAPI, chat_id: int, user_id: int, text: str, **kw: Any
) -> SentMessage:
    """Send an instruction and wait for the result photo."""
    since = len(api.calls)
    api.send_text(chat_id, user_id, text, **kw)
    return await next_photo(api, chat_id, since)


# -- the main flow, with the real (tiny) diffusers pipeline -------------------------------------


@pytest.mark.slow
async def test_photo_instructions_undo_redo_regenerate_buttons_and_restart(
    api: FakeBotAPI, tmp_path: Path, tiny_editor: DiffusersEditor
) -> None:
    data_dir = tmp_path / "data"
    original = jpeg((320, 240))
    async with running_bot(api, data_dir, tiny_editor):
        assert [c["command"] for c in api.commands()] == [name for name, _ in COMMANDS]

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/start")
        welcome = await next_text(api, ALICE, since)
        assert "make it night" in welcome and "/undo" in welcome

        since = len(api.calls)
        api.send_photo(ALICE, ALICE, original)
        assert "Got your photo" in await next_text(api, ALICE, since)

        since = len(api.calls)
        night = await result_of(api, ALICE, ALICE, "make it night")
        status = await api.wait_for("sendMessage", lambda p: "On it" in p["text"], since=since)
        assert "make it night" in (night.caption or "") and "seed" in (night.caption or "")
        assert set(buttons(night)) == {
            "↩ Undo",
            "🎲 Regenerate",
            "⬇ Full resolution",
            "🔀 Variations",
            "➕ Stronger",
            "➖ Subtler",
            "🔍 Upscale",
        }
        night_image = decode(api.photo_bytes(night))
        assert night_image.size == (320, 240)  # the model works at 256; developed onto the photo
        # The status message is replaced by the result.
        await api.wait_for(
            "deleteMessage", lambda p: p["message_id"] == status.result["message_id"]
        )

        snow = await result_of(api, ALICE, ALICE, "add snow")
        assert "add snow" in (snow.caption or "")
        assert api.photo_bytes(snow) != api.photo_bytes(night)

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/undo")
        undone = await next_photo(api, ALICE, since)
        assert api.photo_bytes(undone) == api.photo_bytes(night)  # the earlier pixels

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/redo")
        redone = await next_photo(api, ALICE, since)
        assert api.photo_bytes(redone) == api.photo_bytes(snow)

        again = await result_of(api, ALICE, ALICE, "/regenerate")
        assert "add snow" in (again.caption or "")
        assert again.caption != snow.caption  # another seed
        assert api.photo_bytes(again) != api.photo_bytes(snow)

        # Full resolution: the lossless PNG as a document.
        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "full"))
        document = await api.wait_for("sendDocument", since=since)
        png = document.files[next(iter(document.files))]
        assert png.startswith(b"\x89PNG")
        assert decode(png).size == (320, 240)
        await api.wait_for("answerCallbackQuery", since=since)

        # Undo on an older message acts on that version: back to the photo before "night".
        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "undo"))
        before_night = await next_photo(api, ALICE, since)
        assert decode(api.photo_bytes(before_night)).size == (320, 240)

        # Replying to an older result branches from it.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add a moon", reply_to_message_id=snow.message_id)
        branch = await next_photo(api, ALICE, since)
        assert "add a moon" in (branch.caption or "")

    # A restart: history and buttons still work.
    async with running_bot(api, data_dir, tiny_editor):
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/history")
        listing = await next_text(api, ALICE, since, contains="make it night")
        assert (
            listing.index("make it night") < listing.index("add snow") < listing.index("add a moon")
        )
        album = await api.wait_for("sendMediaGroup", since=since)
        assert album.ok
        since = len(api.calls)
        api.press_button(ALICE, ALICE, snow.message_id, button_data(snow, "regenerate"))
        regenerated = await next_photo(api, ALICE, since)
        assert "add snow" in (regenerated.caption or "")


# -- groups -------------------------------------------------------------------------------------


async def test_group_members_have_their_own_histories_and_buttons(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    group = {"chat_type": "supergroup"}
    async with running_bot(api, tmp_path / "data", NullEditor()):
        since = len(api.calls)
        api.send_photo(GROUP, ALICE, jpeg(shade=10), caption="make it night", **group)
        alice_night = await next_photo(api, GROUP, since)
        since = len(api.calls)
        api.send_photo(GROUP, BOB, jpeg(shade=200), caption="add snow", **group)
        bob_snow = await next_photo(api, GROUP, since)

        # Plain chatter in a group is not for the bot.
        since = len(api.calls)
        api.send_text(GROUP, ALICE, "nice weather today", **group)
        # A mention is.
        mentioned = await result_of(api, GROUP, ALICE, "@pix2chat_bot add a hat", **group)
        assert not api.calls_to("sendMessage", lambda p: "nice weather" in str(p), since=since)
        assert "add a hat" in (mentioned.caption or "")

        # Bob's undo moves Bob's head only.
        since = len(api.calls)
        api.send_text(GROUP, BOB, "/undo@pix2chat_bot", **group)
        bob_back = await next_photo(api, GROUP, since)
        assert decode(api.photo_bytes(bob_back)).getpixel((0, 0)) != decode(
            api.photo_bytes(alice_night)
        ).getpixel((0, 0))

        # Bob pressing Alice's Undo gets a notice and changes nothing.
        since = len(api.calls)
        api.press_button(
            GROUP, BOB, alice_night.message_id, button_data(alice_night, "undo"), **group
        )
        notice = await api.wait_for("answerCallbackQuery", since=since)
        assert "Only the person" in notice.params.get("text", "")
        await asyncio.sleep(0.3)
        assert not api.calls_to("sendPhoto", since=since)

        # Alice's chain is intact: her history has both of her edits.
        since = len(api.calls)
        api.send_text(GROUP, ALICE, "/history", **group)
        listing = await next_text(api, GROUP, since, contains="make it night")
        assert "add a hat" in listing and "add snow" not in listing

        # A reply to the bot's result photo is an instruction that branches from it.
        since = len(api.calls)
        api.send_text(GROUP, BOB, "make it sunny", reply_to_message_id=bob_snow.message_id, **group)
        sunny = await next_photo(api, GROUP, since)
        assert "make it sunny" in (sunny.caption or "")


# -- progress and robustness --------------------------------------------------------------------


async def test_status_message_shows_progress_at_a_polite_cadence(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    editor = GatedEditor(step_delay_s=0.25)
    async with running_bot(api, tmp_path / "data", editor, default_steps=12):
        api.send_photo(ALICE, ALICE, jpeg())
        await api.wait_for("sendMessage", lambda p: "Got your photo" in p["text"])
        since = len(api.calls)
        started = asyncio.get_running_loop().time()
        result = await result_of(api, ALICE, ALICE, "make it night")
        elapsed = asyncio.get_running_loop().time() - started
        edits = api.calls_to("editMessageText", since=since)
        assert edits, "no progress shown"
        assert all("Editing…" in call.params["text"] for call in edits)
        assert len(edits) <= elapsed / 1.0 + 1  # at most about once a second in a private chat
        assert result.caption and "make it night" in result.caption
        assert api.calls_to("sendChatAction", lambda p: p["action"] == "upload_photo", since=since)


async def test_bad_input_gets_clear_replies_and_the_chat_stays_usable(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path / "data", NullEditor(), rate_burst=3, rate_per_minute=1.0):
        cases: list[tuple[str, Any]] = [
            ("Send me a photo first", lambda: api.send_text(ALICE, ALICE, "make it night")),
            (
                "isn't a photo",
                lambda: api.send_document(
                    ALICE, ALICE, b"hello", file_name="a.txt", mime_type="text/plain"
                ),
            ),
            (
                "couldn't read",
                lambda: api.send_document(
                    ALICE, ALICE, jpeg()[:300], file_name="b.jpg", mime_type="image/jpeg"
                ),
            ),
            (
                "too large",
                lambda: api.send_document(
                    ALICE, ALICE, decompression_bomb(), file_name="bomb.png", mime_type="image/png"
                ),
            ),
            (
                "too large",
                lambda: api.send_document(
                    ALICE,
                    ALICE,
                    b"x" * 100,
                    file_name="huge.jpg",
                    mime_type="image/jpeg",
                    file_size=25 * 2**20,
                ),
            ),
            ("only edit photos", lambda: api.send_sticker(ALICE, ALICE)),
            ("only edit photos", lambda: api.send_video(ALICE, ALICE)),
            ("only edit photos", lambda: api.send_animation(ALICE, ALICE)),
        ]
        for expected, act in cases:
            since = len(api.calls)
            act()
            text = await next_text(api, ALICE, since)
            assert expected in text, (expected, text)
            assert "Traceback" not in text and "Error" not in text
        assert not api.calls_to("getFile", lambda p: "huge" in str(p))

        # A good image sent as a file (full resolution) works, in any accepted format.
        for fmt, mime in (("PNG", "image/png"), ("WEBP", "image/webp")):
            since = len(api.calls)
            api.send_document(
                ALICE, ALICE, photo((900, 600), fmt=fmt), file_name=f"p.{fmt}", mime_type=mime
            )
            assert "Got your photo" in await next_text(api, ALICE, since)

        # An album: the first photo is used, and the user is told.
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg(shade=1), media_group_id="album-1")
        api.send_photo(ALICE, ALICE, jpeg(shade=2), media_group_id="album-1")
        assert "first photo" in await next_text(api, ALICE, since, contains="album")
        await next_text(api, ALICE, since, contains="Got your photo")
        await asyncio.sleep(0.5)
        assert len(api.calls_to("getFile", since=since)) == 1

        # Rate limit: burst of 3, then a clear "wait" reply; the chat still works afterwards.
        for instruction in ("one", "two", "three"):
            await result_of(api, ALICE, ALICE, instruction)
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "four")
        assert "going fast" in await next_text(api, ALICE, since, contains="wait")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/history")
        assert "three" in await next_text(api, ALICE, since, contains="three")


@pytest.mark.slow
async def test_full_resolution_of_a_2400x1600_document_upload_is_a_2400x1600_png(
    api: FakeBotAPI, tmp_path: Path, tiny_editor: DiffusersEditor
) -> None:
    async with running_bot(api, tmp_path / "data", tiny_editor):
        since = len(api.calls)
        api.send_document(
            ALICE, ALICE, photo((2400, 1600), fmt="PNG"), file_name="p.png", mime_type="image/png"
        )
        assert "Got your photo" in await next_text(api, ALICE, since)

        night = await result_of(api, ALICE, ALICE, "make it night")
        shown = decode(api.photo_bytes(night))
        assert shown.format == "JPEG" and shown.size == (2400, 1600)  # under the photo limits

        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "full"))
        document = await api.wait_for("sendDocument", since=since)
        png = decode(document.files[next(iter(document.files))])
        assert (png.format, png.size) == ("PNG", (2400, 1600))
        assert "2400x1600" in str(document.params.get("caption"))


async def test_full_resolution_over_the_bot_apis_upload_limit_sends_the_chat_copy(
    api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_delivery, "MAX_DOCUMENT_BYTES", 1000)
    async with running_bot(api, tmp_path / "data", NullEditor()):
        api.send_photo(ALICE, ALICE, jpeg((320, 240)))
        night = await result_of(api, ALICE, ALICE, "make it night")

        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "full"))
        copy = await next_photo(api, ALICE, since)
        assert copy.caption == render("full.too_big")
        assert decode(api.photo_bytes(copy)).format == "JPEG"
        assert not api.calls_to("sendDocument", since=since)


async def test_the_same_update_delivered_twice_starts_one_edit(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    editor = NullEditor()
    async with running_bot(api, tmp_path / "data", editor):
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg())
        await next_text(api, ALICE, since, contains="Got your photo")
        update = api.send_text(ALICE, ALICE, "make it night")
        await next_photo(api, ALICE, since)
        api.push_raw(update)  # Telegram re-sends it after a crash
        await next_text(api, ALICE, len(api.calls) - 1, contains="already")
        await asyncio.sleep(0.3)
        assert sum(len(batch) for batch in editor.calls) == 1


async def test_flood_control_blocked_users_and_a_restart_lose_nothing(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    editor = GatedEditor()
    async with running_bot(api, data_dir, editor):
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg())
        api.send_photo(BOB, BOB, jpeg(shade=99))
        await next_text(api, BOB, since, contains="Got your photo")

        # 429 on the result: retried after retry_after, the photo still arrives.
        api.fail_next("sendPhoto", 429, retry_after=1)
        night = await result_of(api, ALICE, ALICE, "make it night")
        assert "make it night" in (night.caption or "")

        # Bob blocks the bot: his result cannot be sent, the bot keeps serving Alice.
        api.block_chat(BOB)
        since = len(api.calls)
        api.send_text(BOB, BOB, "add snow")
        blocked = await api.wait_for("sendPhoto", lambda p: int(p["chat_id"]) == BOB, since=since)
        assert blocked.status == 403
        snow = await result_of(api, ALICE, ALICE, "add snow")
        assert "add snow" in (snow.caption or "")

        # An edit still running when the bot stops (the model finishes it during shutdown,
        # after the frontend has gone)...
        editor.gate.clear()
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add a moon")
        await api.wait_for("sendMessage", lambda p: "On it" in p["text"], since=since)
        asyncio.get_running_loop().call_later(1.5, editor.gate.set)

    def moon_photos(params: dict[str, Any]) -> bool:
        return "add a moon" in str(params.get("caption", ""))

    # ...is delivered exactly once, after the restart at the latest.
    async with running_bot(api, data_dir, editor):
        await api.wait_for("sendPhoto", moon_photos)
        api.unblock_chat(BOB)
        since = len(api.calls)
        api.send_text(BOB, BOB, "/history")
        assert "add snow" in await next_text(api, BOB, since, contains="add snow")
    assert len(api.calls_to("sendPhoto", moon_photos)) == 1


async def test_settings_status_cancel_and_forget(api: FakeBotAPI, tmp_path: Path) -> None:
    editor = GatedEditor()
    async with running_bot(api, tmp_path / "data", editor) as components:
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg())
        await next_text(api, ALICE, since, contains="Got your photo")

        # /settings shows the values with buttons; a tap changes one and ticks it.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/settings")
        await next_text(api, ALICE, since, contains="Settings")
        panel = api.sent(ALICE)[-1]
        api.press_button(ALICE, ALICE, panel.message_id, button_data(panel, "30 steps"))
        edited = await api.wait_for("editMessageText", since=since)
        assert "steps 30" in edited.params["text"]
        assert "✓ 30 steps" in buttons(edited)
        # Typed form, with a bad value first.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/settings steps 500")
        assert "1 to 100" in await next_text(api, ALICE, since, contains="steps")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/settings resolution 384")
        assert "resolution 384" in await next_text(api, ALICE, since, contains="384")
        await result_of(api, ALICE, ALICE, "make it night")
        request = editor.calls[-1][0]
        assert request.params.num_inference_steps == 30
        assert max(request.image.size) == 384

        # /status and /cancel while an edit waits behind a running one.
        editor.gate.clear()
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add snow")
        api.send_text(ALICE, ALICE, "add a moon")
        await api.wait_for("sendMessage", lambda p: "add a moon" in p["text"], since=since)
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/status")
        assert "in progress" in await next_text(api, ALICE, since, contains="progress")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/cancel")
        assert "Cancelled 1" in await next_text(api, ALICE, since, contains="Cancelled")
        editor.gate.set()
        snow = await next_photo(api, ALICE, since)
        assert "add snow" in (snow.caption or "")
        await asyncio.sleep(0.3)
        assert not api.calls_to("sendPhoto", lambda p: "moon" in str(p.get("caption")))

        # /forget asks first; "No" keeps everything, "Yes" deletes it.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/forget")
        await next_text(api, ALICE, since, contains="Are you sure")
        question = api.sent(ALICE)[-1]
        api.press_button(ALICE, ALICE, question.message_id, button_data(question, "No"))
        kept = await api.wait_for("editMessageText", since=since)
        assert "Nothing was deleted" in kept.params["text"]
        since = len(api.calls)
        api.press_button(ALICE, ALICE, question.message_id, button_data(question, "Yes"))
        gone = await api.wait_for("editMessageText", since=since)
        assert "deleted" in gone.params["text"]
        assert not list((components.settings.data_dir / "images").glob("??/*.png"))
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/undo")
        assert "Send me a photo first" in await next_text(api, ALICE, since)


def test_results_over_telegrams_photo_limits_go_as_documents() -> None:
    def encoded(size: tuple[int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, (90, 120, 150)).save(buffer, "JPEG")
        return buffer.getvalue()

    assert fits_as_photo(encoded((768, 512)))
    assert not fits_as_photo(encoded((4200, 200)))  # ratio over 20
    assert not fits_as_photo(encoded((6000, 4100)))  # width + height over 10,000
    assert not fits_as_photo(b"\xff\xd8" + bytes(11 * 2**20))  # over 10 MB


async def test_webhook_mode_accepts_only_updates_carrying_the_secret(
    api: FakeBotAPI, tmp_path: Path, unused_tcp_port: int
) -> None:
    hook = f"http://127.0.0.1:{unused_tcp_port}/telegram-hook"
    async with running_bot(
        api,
        tmp_path / "data",
        NullEditor(),
        telegram_webhook_url=hook,
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=unused_tcp_port,
    ):
        registration = api.calls_to("setWebhook")[-1]
        registered = registration.params
        assert registered["url"] == hook
        secret = registered["secret_token"]
        assert len(secret) >= 32
        async with aiohttp.ClientSession() as http:
            await _until_listening(http, hook)
            forged = api.send_text(ALICE, ALICE, "/help")
            async with http.post(
                hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}
            ) as response:
                assert response.status == 403
            since = len(api.calls)
            real = api.send_text(ALICE, ALICE, "make it night")
            async with http.post(
                hook, json=real, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
            ) as response:
                assert response.status == 200
            assert "Send me a photo first" in await next_text(api, ALICE, since)
        assert not api.calls_to("sendMessage", lambda p: p.get("text") == render("help"))
        assert not api.calls_to("getUpdates", since=api.calls.index(registration))


async def _until_listening(http: aiohttp.ClientSession, url: str) -> None:
    """PTB registers the webhook and starts its HTTP server concurrently: wait for the server."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                async with http.get(url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
