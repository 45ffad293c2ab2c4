"""Each user's language: /language's choice over the app's, stored per (platform, user) and
kept across chats and restarts; unknown codes get a clear answer; storage trouble never
stops an answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import exc

from bot.service.messages import Key, render, use_locale
from storage.types import Actor
from tests.bot.service.harness import ALICE, ALICE_DM, BOB, Harness, running_service


async def test_the_apps_language_is_used_and_remembered(h: Harness) -> None:
    assert await h.service.locale(ALICE) == "en"  # nothing known yet
    assert await h.service.locale(ALICE, "ar") == "ar"
    assert await h.service.locale(ALICE) == "ar"  # later deliveries, no hint at hand
    assert await h.service.locale(ALICE_DM) == "ar"  # the same user in another chat
    assert await h.service.locale(BOB) == "en"  # a user of their own
    assert await h.service.locale(ALICE, "es-419") == "es"
    assert await h.service.locale(ALICE, "fr") == "es"  # no French: the last known one
    assert await h.service.locale(ALICE, ["de", "ar;oops", "ar"]) == "ar"


async def test_language_overrides_the_app_and_follows_it_again_on_auto(h: Harness) -> None:
    chosen = await h.service.choose_language(ALICE, "es", hint="ar")
    assert (chosen.key, chosen.locale, chosen.is_error) == (Key.LANGUAGE_CHOSEN, "es", False)
    assert chosen.text() == "A partir de ahora te respondo en español."
    assert await h.service.locale(ALICE, "ar") == "es"
    assert await h.service.locale(ALICE_DM, "en") == "es"

    auto = await h.service.choose_language(ALICE, "AUTO", hint="ar")
    assert auto.key == Key.LANGUAGE_AUTO and auto.locale == "ar"
    assert auto.text() == "أعود إلى اتباع لغة تطبيقك (الآن اللغة العربية)."
    assert await h.service.locale(ALICE, "ar") == "ar"


async def test_language_alone_lists_the_choices_in_the_users_language(h: Harness) -> None:
    listed = await h.service.choose_language(ALICE, None, hint="es")
    assert listed.key == Key.LANGUAGE_LIST and listed.locale is None
    with use_locale("es"):
        text = listed.text()
    assert text.startswith("Te respondo en español.")
    for choice in ("en (English)", "es (español)", "ar (العربية)"):
        assert choice in text


async def test_an_unknown_code_gets_a_clear_answer_and_changes_nothing(h: Harness) -> None:
    await h.service.choose_language(ALICE, "ar")
    for code in ("klingon", "xx", "../../etc/passwd", "es es"):
        refused = await h.service.choose_language(ALICE, code)
        assert refused.key == Key.LANGUAGE_UNKNOWN and refused.is_error, code
        assert refused.locale is None
        with use_locale("ar"):
            assert "العربية" in refused.text()
    assert "klingon" in render(Key.LANGUAGE_UNKNOWN, {"code": "klingon", "choices": ""})
    assert await h.service.locale(ALICE, "en") == "ar"


async def test_the_choice_survives_a_restart(sqlite_url: str, tmp_path: Path) -> None:
    async with running_service(sqlite_url, tmp_path / "images") as first:
        await first.service.choose_language(ALICE, "ar")
        await first.service.locale(BOB, "es")
    async with running_service(sqlite_url, tmp_path / "images") as second:
        assert await second.service.locale(ALICE_DM, "en") == "ar"
        assert await second.service.locale(BOB) == "es"  # detected, kept for deliveries
        assert await second.service.locale(Actor("discord", "1", "alice")) == "en"


async def test_storage_trouble_answers_in_the_apps_language(h: Harness) -> None:
    await h.service.choose_language(ALICE, "ar")
    languages = h.service.languages

    class Away:
        def read(self) -> object:
            raise exc.OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

        write = read

    languages.database = Away()  # type: ignore[assignment]
    languages._cache.clear()
    assert await h.service.locale(ALICE, "es") == "es"
    assert await h.service.locale(ALICE) == "en"
    refused = await h.service.choose_language(ALICE, "es")
    assert refused.is_error and refused.key == Key.ERROR_UNAVAILABLE
