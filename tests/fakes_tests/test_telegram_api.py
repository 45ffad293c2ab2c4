"""The fake Bot API server against the real python-telegram-bot client.

These tests are the fake's contract: whatever the Telegram frontend's tests rely on (polling,
uploads, downloads, error answers) is shown here to work through PTB's own HTTP stack, so a
frontend test failing against the fake points at the frontend, not at the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import io
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import NOT_MODIFIED, FakeBotAPI

TOKEN = "123:TEST"
USER = 42  # in a private chat, the chat id is the user's id


def image_bytes(width: int = 320, height: int = 240, color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d.title(), callback_data=d) for d in data]])


def seconds(period: int | dtm.timedelta) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB's deprecation setting."""
    return period.total_seconds() if isinstance(period, dtm.timedelta) else float(period)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition()`` until true: for state a handler changes without an API call."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url) as client:
        yield client


def build_application(api: FakeBotAPI) -> Application:
    return (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(api.base_url)
        .base_file_url(api.base_file_url)
        .build()
    )


@contextlib.asynccontextmanager
async def polling(application: Application) -> AsyncIterator[Application]:
    """Run an Application in polling mode, as run_polling would but without signal handlers."""
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()


# ---------------------------------------------------------------------------------------------
# Connection and identity
# ---------------------------------------------------------------------------------------------


async def test_get_me_answers_the_bot_user(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.username, me.is_bot) == (123, "pix2chat_bot", True)
    assert api.base_url.endswith("/bot") and api.base_file_url.endswith("/file/bot")
    assert api.calls[0].method == "getMe" and api.calls[0].ok


async def test_another_token_is_unauthorized(api: FakeBotAPI) -> None:
    stranger = Bot("999:OTHER", base_url=api.base_url, base_file_url=api.base_file_url)

    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with stranger:  # initialize() calls getMe; a failure shuts the Bot down again
            pass

    assert api.calls[-1].status == 401
    assert api.calls[-1].response == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }


async def test_unknown_method_answers_404_like_telegram(api: FakeBotAPI, bot: Bot) -> None:
    with pytest.raises(EndPointNotFound, match="getUnicorn"):
        await bot.do_api_request("getUnicorn")

    assert api.calls[-1].response == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found: method not found",
    }


async def test_json_and_query_string_bodies_are_accepted(api: FakeBotAPI) -> None:
    """PTB sends forms; other clients (and curl) send JSON or query strings."""
    api.register_chat(USER)
    async with aiohttp.ClientSession() as session:
        url = f"{api.base_url}{TOKEN}/sendMessage"
        async with session.post(url, json={"chat_id": str(USER), "text": "json"}) as answer:
            assert (await answer.json())["result"]["text"] == "json"
        async with session.get(url, params={"chat_id": USER, "text": "query"}) as answer:
            assert (await answer.json())["result"]["text"] == "query"

    assert [m.text for m in api.sent(USER)] == ["json", "query"]
    assert api.calls[0].params["chat_id"] == USER  # "42" normalized to an int


# ---------------------------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------------------------


async def test_application_receives_text_and_photo_by_polling(api: FakeBotAPI) -> None:
    downloaded: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    async def receive_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        photo = update.effective_message.photo[-1]
        downloaded.set_result(bytes(await (await photo.get_file()).download_as_bytearray()))

    application = build_application(api)
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    application.add_handler(MessageHandler(filters.PHOTO, receive_photo))
    png = image_bytes(640, 480)

    async with polling(application):
        text_update = api.send_text(USER, USER, "hello")
        reply = await api.wait_for("sendMessage")
        photo_update = api.send_photo(USER, USER, png, caption="make it snow")
        received = await asyncio.wait_for(downloaded, 5)

    assert reply.params["text"] == "echo: hello"
    assert "reply_parameters" not in reply.params  # PTB quotes by default in groups only
    assert text_update["message"]["text"] == "hello"
    assert received == png
    sizes = photo_update["message"]["photo"]
    assert (sizes[-1]["width"], sizes[-1]["height"]) == (640, 480)
    assert sizes[0]["width"] < sizes[-1]["width"]  # a thumbnail first, as on Telegram
    assert api.calls_to("deleteWebhook") and api.calls_to("getFile")


async def test_command_entities_reach_command_handlers(api: FakeBotAPI) -> None:
    started: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        started.set_result(list(context.args or []))

    application = build_application(api)
    application.add_handler(CommandHandler("start", start))

    async with polling(application):
        update = api.send_text(-100, USER, "/start@pix2chat_bot ref", chat_type="supergroup")
        assert await asyncio.wait_for(started, 5) == ["ref"]

    assert update["message"]["entities"] == [{"offset": 0, "length": 19, "type": "bot_command"}]
    assert update["message"]["chat"]["type"] == "supergroup"


async def test_confirmed_updates_are_not_delivered_again(api: FakeBotAPI, bot: Bot) -> None:
    first = api.send_text(USER, USER, "one")
    second = api.send_text(USER, USER, "two")

    delivered = await bot.get_updates(timeout=0)
    again = await bot.get_updates(timeout=0)  # no offset: nothing is confirmed yet
    after_confirmation = await bot.get_updates(offset=delivered[-1].update_id + 1, timeout=0)

    ids = [first["update_id"], second["update_id"]]
    assert [u.update_id for u in delivered] == ids
    assert [u.update_id for u in again] == ids
    assert after_confirmation == ()
    assert api.pending_updates == []


async def test_limit_and_allowed_updates(api: FakeBotAPI, bot: Bot) -> None:
    api.send_text(USER, USER, "one")
    api.send_text(USER, USER, "two")
    api.send_sticker(USER, USER)

    limited = await bot.get_updates(limit=1, timeout=0)
    callback_queries_only = await bot.get_updates(allowed_updates=["callback_query"], timeout=0)

    assert [u.message.text for u in limited if u.message] == ["one"]
    assert callback_queries_only == ()  # two texts and a sticker pending, none of that kind


async def test_long_poll_returns_as_soon_as_an_update_is_pushed(api: FakeBotAPI, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, api.send_text, USER, USER, "late")
    started = time.monotonic()

    updates = await bot.get_updates(timeout=5)

    assert [u.message.text for u in updates if u.message] == ["late"]
    assert time.monotonic() - started < 2


async def test_long_poll_times_out_empty(api: FakeBotAPI, bot: Bot) -> None:
    started = time.monotonic()

    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 3


async def test_a_second_poller_ends_the_first_with_conflict(api: FakeBotAPI, bot: Bot) -> None:
    """Two bot instances polling at once: Telegram ends the older long poll with 409."""
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)  # let the first poll reach the server
    async with Bot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url) as second:
        await second.get_updates(timeout=0)  # PTB allows one getUpdates per Bot at a time

    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


async def test_redelivered_update_reaches_the_application_twice(api: FakeBotAPI) -> None:
    """Telegram can deliver an update again (e.g. after a crash before confirmation)."""
    seen: list[int] = []

    async def record(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update.update_id)

    application = build_application(api)
    application.add_handler(MessageHandler(filters.TEXT, record))

    async with polling(application):
        update = api.send_text(USER, USER, "hello")
        await until(lambda: not api.pending_updates)  # delivered, handled and confirmed
        api.push_raw(update)
        api.send_text(USER, USER, "marker")
        await until(lambda: len(seen) == 3)

    assert seen == [update["update_id"], update["update_id"], update["update_id"] + 1]
    assert api.pending_updates == []


# ---------------------------------------------------------------------------------------------
# Sending, editing, deleting
# ---------------------------------------------------------------------------------------------


async def test_send_photo_records_markup_and_bytes(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    png = image_bytes(800, 600)

    message = await bot.send_photo(
        USER,
        png,
        caption="<b>Done</b> in 3s",
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard("undo", "again"),
    )

    call = await api.wait_for("sendPhoto")
    assert call.files["photo"] == png
    assert call.params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Undo", "callback_data": "undo"}, {"text": "Again", "callback_data": "again"}]
        ]
    }
    assert (message.photo[-1].width, message.photo[-1].height) == (800, 600)
    assert message.caption == "Done in 3s"
    assert message.caption_entities[0].type == "bold"
    [sent] = api.sent(USER)
    assert sent.photo == png == api.photo_bytes(message)
    assert sent.reply_markup == call.params["reply_markup"]


async def test_sent_photo_can_be_resent_by_file_id(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    png = image_bytes()
    first = await bot.send_photo(USER, png)

    second = await bot.send_photo(USER, first.photo[-1].file_id)

    assert second.photo[-1].file_id == first.photo[-1].file_id
    assert api.photo_bytes(second) == png
    assert second.message_id == first.message_id + 1


async def test_send_photo_refuses_what_telegram_refuses(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)

    with pytest.raises(BadRequest, match=r"(?i)IMAGE_PROCESS_FAILED"):
        await bot.send_photo(USER, b"not an image")
    with pytest.raises(BadRequest, match=r"(?i)PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(USER, image_bytes(2100, 100))
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_photo(777, image_bytes())
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "x", reply_markup=keyboard("x" * 65))


async def test_send_document_and_media_group(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    png = image_bytes()

    document = await bot.send_document(USER, png, filename="edit.png", caption="original")
    album = await bot.send_media_group(
        USER, [InputMediaPhoto(image_bytes(color="red")), InputMediaPhoto(png, caption="b")]
    )

    assert document.document is not None
    assert (document.document.file_name, document.document.mime_type) == ("edit.png", "image/png")
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    group_call = api.calls_to("sendMediaGroup")[0]
    assert len(group_call.files) == 2  # uploaded as attach://<name> parts
    assert all(item["media"].startswith("attach://") for item in group_call.params["media"])
    sent = api.sent(USER)
    assert sent[0].document == png and sent[0].file_name == "edit.png"
    assert sent[2].photo == png and sent[2].caption == "b"


async def test_edit_message_text_and_not_modified(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    status = await bot.send_message(USER, "Queued…", reply_markup=keyboard("cancel"))

    edited = await bot.edit_message_text("Working…", chat_id=USER, message_id=status.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified") as not_modified:
        await bot.edit_message_text("Working…", chat_id=USER, message_id=status.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)

    # PTB drops "Bad Request: " and capitalize()s the rest: compare descriptions case-blind
    assert not_modified.value.message.lower() == NOT_MODIFIED.removeprefix("Bad Request: ")
    assert api.calls_to("editMessageText")[1].response["description"] == NOT_MODIFIED
    assert isinstance(edited, Message) and edited.text == "Working…"
    [sent] = api.sent(USER)
    assert (sent.text, sent.edit_count) == ("Working…", 1)
    assert sent.reply_markup is None  # an edit without reply_markup drops the keyboard
    assert "edit_date" in sent.raw


async def test_edit_caption_media_markup_and_delete(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    before, after = image_bytes(color="red"), image_bytes(color="blue")
    message = await bot.send_photo(USER, before, caption="v1", reply_markup=keyboard("undo"))

    await bot.edit_message_caption(
        chat_id=USER, message_id=message.message_id, caption="v2", reply_markup=keyboard("undo")
    )
    await bot.edit_message_media(
        InputMediaPhoto(after, caption="v3"), chat_id=USER, message_id=message.message_id
    )
    await bot.edit_message_reply_markup(
        chat_id=USER, message_id=message.message_id, reply_markup=keyboard("redo")
    )
    [edited] = api.sent(USER)
    await bot.delete_message(USER, message.message_id)

    assert (edited.photo, edited.caption, edited.edit_count) == (after, "v3", 3)
    assert edited.reply_markup == keyboard("redo").to_dict()
    assert api.sent(USER) == []
    assert api.sent(USER, include_deleted=True)[0].deleted
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(USER, message.message_id)


async def test_parse_errors_surface_as_bad_request(api: FakeBotAPI, bot: Bot) -> None:
    """An unescaped user prompt in an HTML or MarkdownV2 message fails as on Telegram."""
    api.register_chat(USER)

    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: Unsupported start tag"):
        await bot.send_message(USER, "prompt: a < b", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(USER, "Done.", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "x" * 4097)


async def test_chat_action_and_commands(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)

    await bot.send_chat_action(USER, ChatAction.UPLOAD_PHOTO)
    await bot.set_my_commands([BotCommand("undo", "Undo the last edit")])

    assert api.calls_to("sendChatAction")[0].params == {"chat_id": USER, "action": "upload_photo"}
    assert [c.command for c in await bot.get_my_commands()] == ["undo"]
    assert api.commands() == [{"command": "undo", "description": "Undo the last edit"}]


# ---------------------------------------------------------------------------------------------
# Faults and limits
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_injected_429_surfaces_as_retry_after(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    api.fail_next("sendMessage", retry_after=3)

    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(USER, "too fast")
    message = await bot.send_message(USER, "later")

    assert seconds(raised.value.retry_after) == 3  # PTB 22 warns about the int form
    assert api.calls_to("sendMessage")[0].response["parameters"] == {"retry_after": 3}
    assert message.text == "later"


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limiter_retries_after_the_announced_delay(api: FakeBotAPI) -> None:
    """PTB's AIORateLimiter reads parameters.retry_after from the 429 and tries again."""
    api.register_chat(USER)
    api.fail_next("sendMessage", retry_after=1)
    limited = ExtBot(
        TOKEN,
        base_url=api.base_url,
        base_file_url=api.base_file_url,
        rate_limiter=AIORateLimiter(max_retries=1),
    )
    started = time.monotonic()

    async with limited:
        message = await limited.send_message(USER, "eventually")

    assert message.text == "eventually"
    assert [c.status for c in api.calls_to("sendMessage")] == [429, 200]
    assert time.monotonic() - started >= 1


async def test_blocked_chat_surfaces_as_forbidden(api: FakeBotAPI, bot: Bot) -> None:
    api.register_chat(USER)
    api.block_chat(USER)

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER, "hello?")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(USER, ChatAction.TYPING)


async def test_big_document_cannot_be_downloaded(api: FakeBotAPI, bot: Bot) -> None:
    small = api.send_document(USER, USER, b"%PDF-1", file_name="a.pdf", mime_type="application/pdf")
    big = api.send_document(
        USER,
        USER,
        b"\x89PNG",  # a few bytes that claim to be 25 MB
        file_name="huge.png",
        mime_type="image/png",
        file_size=25 * 1024 * 1024,
    )

    small_file = await bot.get_file(small["message"]["document"]["file_id"])
    with pytest.raises(BadRequest, match=r"(?i)file is too big"):
        await bot.get_file(big["message"]["document"]["file_id"])

    assert await small_file.download_as_bytearray() == b"%PDF-1"
    assert big["message"]["document"]["file_size"] == 25 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Callback queries and other update kinds
# ---------------------------------------------------------------------------------------------


async def test_button_press_reaches_callback_query_handler(api: FakeBotAPI, bot: Bot) -> None:
    pressed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("Undone")
        pressed.set_result(update.callback_query.data or "")

    api.register_chat(USER)
    message = await bot.send_photo(USER, image_bytes(), reply_markup=keyboard("undo"))
    application = build_application(api)
    application.add_handler(CallbackQueryHandler(on_press))

    async with polling(application):
        update = api.press_button(USER, USER, message.message_id, "undo")
        assert await asyncio.wait_for(pressed, 5) == "undo"
        answer = await api.wait_for("answerCallbackQuery")

    assert answer.params["callback_query_id"] == update["callback_query"]["id"]
    assert answer.params["text"] == "Undone"
    assert update["callback_query"]["message"]["message_id"] == message.message_id
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(update["callback_query"]["id"])


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_sticker_animation_and_video_updates_parse(api: FakeBotAPI, bot: Bot) -> None:
    api.send_sticker(USER, USER, emoji="🐱")
    api.send_animation(USER, USER, caption="gif")
    api.send_video(USER, USER)

    sticker, animation, video = (u.message for u in await bot.get_updates(timeout=0))

    assert sticker is not None and sticker.sticker is not None
    assert sticker.sticker.emoji == "🐱"
    assert animation is not None and animation.animation and animation.document
    assert video is not None and video.video is not None and video.video.duration == 3


async def test_wait_for_times_out_with_the_calls_seen(api: FakeBotAPI, bot: Bot) -> None:
    with pytest.raises(TimeoutError, match=r"0 of 1 sendMessage.*getMe\(200\)"):
        await api.wait_for("sendMessage", timeout=0.1)


async def test_a_users_app_language_comes_with_their_updates(api: FakeBotAPI) -> None:
    assert api.send_text(5, 5, "hi")["message"]["from"]["language_code"] == "en"
    api.set_language(5, "ar")
    assert api.send_text(5, 5, "hi")["message"]["from"]["language_code"] == "ar"
    api.set_language(5, None)
    assert "language_code" not in api.send_text(5, 5, "hi")["message"]["from"]
