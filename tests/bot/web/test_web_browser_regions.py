"""The region controls in a real browser (headless Chromium, Playwright): typing /keep, the
Only button next to the input, the Regions button, and the mask previews the page shows.
Skips without a browser like the other browser tests (fails under CI=true)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.web.frontend import WebFrontend
from editor.testing.doubles import BoxSegmenter, NullEditor
from tests.bot.service.harness import photo
from tests.bot.web.test_web import web_settings
from tests.bot.web.test_web_browser import TIMEOUT_MS, chromium  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_keep_and_only_from_the_composer_in_chromium(
    chromium: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = web_settings(tmp_path / "data")
    frontend = WebFrontend(settings, announce=lambda _text: None)
    stop = asyncio.Event()
    segmenter = BoxSegmenter({"the logo": (0.3, 0.3, 0.6, 0.6), "the background": (0, 0, 1, 0.5)})
    original = tmp_path / "sneaker.jpg"
    original.write_bytes(photo((320, 240), shade=90))
    async with build(settings, editor=NullEditor(), segmenter=segmenter) as components:
        await frontend.preflight()
        task = asyncio.create_task(frontend.run(components, stop))
        try:
            context = await chromium.new_context()
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(frontend.url())
            await page.get_by_text("Hi! I edit photos by instruction.").wait_for()
            await page.set_input_files("#file", str(original))
            await page.click("#send")
            await page.get_by_text("Got your photo.").wait_for()

            await page.fill("#text", "/keep the logo")
            await page.press("#text", "Enter")
            previews = page.locator("img.result.region")
            await previews.first.wait_for()
            await page.wait_for_function(
                "() => [...document.querySelectorAll('img.region')]"
                ".every(img => img.complete && img.naturalWidth === 320)"
            )
            assert await page.input_value("#text") == ""

            await page.fill("#text", "the background")
            await page.click("#region-only")
            await previews.nth(1).wait_for()
            await page.get_by_text("keeping wins").first.wait_for()

            await page.fill("#text", "the unicorn")
            await page.click("#region-keep")
            await page.get_by_text("I couldn't find “the unicorn” in this photo").wait_for()
            assert await page.input_value("#text") == "the unicorn"  # kept, to fix a typo

            await page.click("#region-show")
            await page.get_by_text("kept as it is: “the logo”").wait_for()
            await page.click("#region-keep-off")
            await page.get_by_text("I no longer keep “the logo”").wait_for()
            await context.close()
            assert errors == []
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
