"""The web chat in Arabic in a real browser (headless Chromium): the page is laid out right
to left, and `/language es` typed in the composer turns it into Spanish, left to right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.service.messages import Key, render
from bot.web.frontend import WebFrontend
from editor.testing.doubles import NullEditor
from tests.bot.web.test_web import web_settings
from tests.bot.web.test_web_browser import ARTIFACTS, TIMEOUT_MS, chromium  # noqa: F401

pytestmark = [pytest.mark.browser]


@pytest.fixture
async def web_url(tmp_path: Path) -> AsyncIterator[str]:
    """The web chat on an ephemeral port (the model is not the point here)."""
    settings = web_settings(tmp_path / "data")
    frontend = WebFrontend(settings, announce=lambda _text: None)
    stop = asyncio.Event()
    async with build(settings, editor=NullEditor()) as components:
        await frontend.preflight()
        task = asyncio.create_task(frontend.run(components, stop))
        try:
            yield frontend.url()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def box(page: Any, selector: str) -> dict[str, float]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, selector
    return dict(found)


async def bot_message_side(page: Any) -> str:
    """Which side of the conversation column the bot's (welcome) message leans to."""
    message, thread = await box(page, ".msg.bot"), await box(page, "#thread")
    middle = message["x"] + message["width"] / 2
    return "right" if middle > thread["x"] + thread["width"] / 2 else "left"


async def test_arabic_renders_right_to_left_and_language_switches_it(
    chromium: Any,  # noqa: F811
    web_url: str,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = await chromium.new_context(locale="ar-EG", viewport={"width": 1000, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto(web_url)
    await page.get_by_text(render(Key.WEB_WELCOME, locale="ar")).wait_for()
    assert await page.evaluate("document.documentElement.lang") == "ar"
    assert await page.evaluate("document.documentElement.dir") == "rtl"
    assert await page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    assert await page.inner_text("#send") == render(Key.PAGE_SEND, locale="ar")
    # laid out right to left: the send button sits left of the text box, the bot's messages
    # (at the start of the line) on the right
    send, text = await box(page, "#send"), await box(page, "#text")
    assert send["x"] + send["width"] <= text["x"] + 1
    assert await bot_message_side(page) == "right"
    # the settings panel opens on the left (the end of a right-to-left line)
    await page.click("#settings-button")
    await page.locator("#settings").wait_for()
    assert (await box(page, "#settings"))["x"] == 0
    await page.screenshot(path=str(ARTIFACTS / "web-chat-arabic.png"))
    await page.keyboard.press("Escape")

    # /language es: the page reloads in Spanish, left to right
    await page.fill("#text", "/language es")
    await page.press("#text", "Enter")
    await page.locator("html[lang=es]").wait_for(state="attached")
    await page.get_by_text(render(Key.WEB_WELCOME, locale="es")).wait_for()
    assert await page.evaluate("document.documentElement.dir") == "ltr"
    send, text = await box(page, "#send"), await box(page, "#text")
    assert send["x"] >= text["x"] + text["width"] - 1
    assert await bot_message_side(page) == "left"
    assert not errors, errors
    await context.close()
