"""Telegram in the user's language, end to end against the fake Bot API: the app's
language_code, /language overriding it (kept across chats), the command menu per language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.service.messages import Key, render
from bot.telegram.frontend import COMMANDS
from editor.testing.doubles import NullEditor
from tests.bot.telegram.test_telegram import (
    ALICE,
    BOB,
    GROUP,
    buttons,
    jpeg,
    next_photo,
    next_text,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI

TOKEN = "123456:TEST-token"
CAROL = 1003


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def say(server: FakeBotAPI, chat_id: int, user_id: int, text: str, **kw: object) -> str:
    since = len(server.calls)
    server.send_text(chat_id, user_id, text, **kw)  # type: ignore[arg-type]
    return await next_text(server, chat_id, since)


async def test_arabic_and_spanish_apps_get_their_language(api: FakeBotAPI, tmp_path: Path) -> None:
    api.set_language(ALICE, "ar")
    api.set_language(BOB, "es-419")
    api.set_language(CAROL, "fr")  # no French catalogue: English
    async with running_bot(api, tmp_path / "data", NullEditor()):
        assert await say(api, ALICE, ALICE, "/help") == render(Key.HELP, locale="ar")
        assert await say(api, BOB, BOB, "/help") == render(Key.HELP, locale="es")
        assert await say(api, CAROL, CAROL, "/help") == render(Key.HELP, locale="en")

        # a photo and an edit: the replies, the result's caption and its buttons in Arabic
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg())
        assert await next_text(api, ALICE, since) == render(Key.PHOTO_RECEIVED, locale="ar")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "make it night")
        result = await next_photo(api, ALICE, since)
        assert (result.caption or "").startswith("«make it night» (البذرة ")
        assert set(buttons(result)) == {
            render(Key.BUTTON_UNDO, locale="ar"),
            render(Key.BUTTON_REGENERATE, locale="ar"),
            render(Key.BUTTON_FULL, locale="ar"),
            render(Key.BUTTON_VARIATIONS, locale="ar"),
            render(Key.BUTTON_STRONGER, locale="ar"),
            render(Key.BUTTON_SUBTLER, locale="ar"),
            render(Key.BUTTON_UPSCALE, locale="ar"),
        }
        assert "🔀 تنويعات" in buttons(result)  # translated, not the English label
        # bad input in Spanish: an instruction before any photo
        assert await say(api, BOB, BOB, "add snow") == render(Key.ERROR_NO_IMAGE, locale="es")


async def test_language_overrides_the_app_in_every_chat(api: FakeBotAPI, tmp_path: Path) -> None:
    api.set_language(ALICE, "ar")
    group = {"chat_type": "supergroup"}
    async with running_bot(api, tmp_path / "data", NullEditor()):
        listing = await say(api, ALICE, ALICE, "/language")
        assert listing.startswith("أجيبك باللغة العربية.")
        assert "es (español)" in listing

        unknown = await say(api, ALICE, ALICE, "/language klingon")
        assert "«klingon»" in unknown and "es (español)" in unknown  # in Arabic, still

        chosen = await say(api, ALICE, ALICE, "/language es")
        assert chosen == "A partir de ahora te respondo en español."
        assert await say(api, ALICE, ALICE, "/help") == render(Key.HELP, locale="es")
        # the same user in a group: Spanish too; another member keeps their app's language
        text = await say(api, GROUP, ALICE, "@pix2chat_bot add snow", **group)
        assert text == render(Key.ERROR_NO_IMAGE, locale="es")
        assert await say(api, GROUP, BOB, "@pix2chat_bot add snow", **group) == render(
            Key.ERROR_NO_IMAGE, locale="en"
        )

        back = await say(api, ALICE, ALICE, "/language auto")
        assert back == "أعود إلى اتباع لغة تطبيقك (الآن اللغة العربية)."
        assert await say(api, ALICE, ALICE, "/help") == render(Key.HELP, locale="ar")

    # the choice is stored: after a restart it still wins over the app
    async with running_bot(api, tmp_path / "data", NullEditor()):
        await say(api, ALICE, ALICE, "/language es")
    async with running_bot(api, tmp_path / "data", NullEditor()):
        assert await say(api, ALICE, ALICE, "/help") == render(Key.HELP, locale="es")


async def test_the_command_menu_is_registered_per_language(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "data", NullEditor()):
        names = [name for name, _ in COMMANDS]
        assert "language" in names
        default = api.commands()
        assert [c["command"] for c in default] == names
        assert default[0]["description"] == "Welcome and examples"
        for locale in ("ar", "es"):
            menu = api.commands(language_code=locale)
            assert [c["command"] for c in menu] == names
            assert [c["description"] for c in menu] == [
                render(key, locale=locale) for _, key in COMMANDS
            ]
        assert api.commands(language_code="es")[2]["description"] == "Volver a la versión anterior"
        assert api.commands(language_code="ar")[2]["description"] == "العودة إلى النسخة السابقة"
