"""The web chat in the browser's language: Accept-Language words the page (right to left in
Arabic) and every API answer; `/language` typed in the composer overrides it for good."""

from __future__ import annotations

import re
from pathlib import Path

from bot.service.messages import Key, render
from tests.bot.web.test_web import upload, web_chat

ARABIC = {"Accept-Language": "ar-EG,ar;q=0.9,en;q=0.5"}
SPANISH = {"Accept-Language": "es-419, en;q=0.3"}


def html_tag(page: str) -> str:
    found = re.search(r"<html[^>]*>", page)
    assert found is not None
    return found.group(0)


async def test_the_page_follows_accept_language_and_is_rtl_in_arabic(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser(session=False) as client:
        arabic = (await client.get("/", headers=ARABIC)).text
        assert html_tag(arabic) == '<html lang="ar" dir="rtl">'
        assert f'<button id="send" type="submit">{render(Key.PAGE_SEND, locale="ar")}</button>' in (
            arabic
        )
        assert 'placeholder="قل ما تريد تغييره (بالإنجليزية)"' in arabic
        spanish = (await client.get("/", headers=SPANISH)).text
        assert html_tag(spanish) == '<html lang="es" dir="ltr">'
        assert '<h2 id="settings-title">Ajustes</h2>' in spanish
        english = (await client.get("/", headers={"Accept-Language": "fr, de;q=0.5"})).text
        assert html_tag(english) == '<html lang="en" dir="ltr">'
        for page in (arabic, spanish, english):
            assert "{{" not in page and "}}" not in page


async def test_api_answers_in_the_browsers_language(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        state = (await client.get("/api/state", headers=ARABIC)).json()
        assert state["messages"]["web.welcome"] == render(Key.WEB_WELCOME, locale="ar")
        assert state["messages"]["button.undo"] == "↩ تراجع"
        assert state["locale"]["code"] == "ar"
        assert state["history"]["text"] == render(Key.HISTORY_EMPTY, locale="ar")

        early = await client.post("/api/instruct", json={"text": "add snow"}, headers=SPANISH)
        assert early.status_code == 409
        assert early.json()["text"] == render(Key.ERROR_NO_IMAGE, locale="es")
        received = await upload(client, **SPANISH)
        assert received["text"] == render(Key.PHOTO_RECEIVED, locale="es")
        # the web layer's own refusals too: a cross-site write, an unknown path
        refused = await client.post(
            "/api/undo", json={}, headers={**SPANISH, "Sec-Fetch-Site": "cross-site"}
        )
        assert refused.status_code == 403
        assert refused.json()["text"] == render(Key.WEB_FORBIDDEN, locale="es")
        missing = await client.get("/api/nothing", headers=ARABIC)
        assert missing.json()["text"] == render(Key.WEB_NOT_FOUND, locale="ar")


async def test_language_typed_in_the_composer_overrides_the_browser(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        listing = await client.post("/api/instruct", json={"text": "/language"}, headers=ARABIC)
        assert listing.status_code == 200
        assert listing.json()["text"].startswith("أجيبك باللغة العربية.")
        assert listing.json()["reload"] is False

        unknown = await client.post(
            "/api/instruct", json={"text": "/language klingon"}, headers=ARABIC
        )
        assert unknown.status_code == 400 and unknown.json()["key"] == Key.LANGUAGE_UNKNOWN
        assert "«klingon»" in unknown.json()["text"]
        assert unknown.json()["reload"] is False

        chosen = await client.post("/api/instruct", json={"text": "/language es"}, headers=ARABIC)
        assert chosen.json()["text"] == "A partir de ahora te respondo en español."
        assert chosen.json()["reload"] is True  # the page reloads, worded in Spanish
        page = (await client.get("/", headers=ARABIC)).text
        assert html_tag(page) == '<html lang="es" dir="ltr">'
        state = (await client.get("/api/state", headers=ARABIC)).json()
        assert state["history"]["text"] == render(Key.HISTORY_EMPTY, locale="es")

        # nothing of it was taken for an instruction
        assert (await client.get("/api/history")).json()["key"] == Key.HISTORY_EMPTY

        # another browser with the same Accept-Language is not affected
        async with chat.browser() as other:
            page = (await other.get("/", headers=ARABIC)).text
            assert html_tag(page) == '<html lang="ar" dir="rtl">'
