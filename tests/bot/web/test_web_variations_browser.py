"""Variations in a real browser: the result's Variations button, the 2x2 grid of candidates
and a "Use 3" click (headless Chromium, the page's own JavaScript, the NullEditor)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.web.frontend import WebFrontend
from editor.testing.doubles import NullEditor
from tests.bot.service.harness import photo
from tests.bot.web.test_web import web_settings
from tests.bot.web.test_web_browser import ARTIFACTS, TIMEOUT_MS, chromium, results

__all__ = ["chromium"]  # the fixture, shared with the other browser tests

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_variations_grid_and_a_pick_in_chromium(chromium: Any, tmp_path: Path) -> None:
    settings = web_settings(tmp_path / "data", scorer_model="")
    frontend = WebFrontend(settings, announce=lambda _text: None)
    stop = asyncio.Event()
    original = tmp_path / "sneaker.jpg"
    original.write_bytes(photo((320, 240), shade=90))
    async with build(settings, editor=NullEditor()) as components:
        await frontend.preflight()
        task = asyncio.create_task(frontend.run(components, stop))
        try:
            context = await chromium.new_context(viewport={"width": 900, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(frontend.url())
            await page.set_input_files("#file", str(original))
            await page.fill("#text", "make it night")
            await page.click("#send")
            [night] = await results(page, 1)

            await night.locator('[data-action="variations"]').click()
            grid = page.locator(".msg .grid")
            await grid.wait_for()
            cells = grid.locator("figure.candidate")
            assert await cells.count() == 4
            await page.wait_for_function(
                "() => [...document.querySelectorAll('.grid img')]"
                ".every(img => img.complete && img.naturalWidth > 0)"
            )
            boxes = [await cells.nth(i).bounding_box() for i in range(4)]
            assert all(box is not None for box in boxes)
            (a, b, c, d) = [(round(box["x"]), round(box["y"])) for box in boxes if box]
            assert a[1] == b[1] and c[1] == d[1] and a[1] < c[1]  # two rows
            assert a[0] == c[0] and a[0] < b[0]  # two columns
            # The strip is the path root -> head: the other candidates are not steps of it.
            await page.wait_for_function(
                "() => document.querySelectorAll('#strip img').length === 2"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "web-variations.png"))

            third = await cells.nth(2).locator("img").get_attribute("src")
            await cells.nth(2).get_by_role("button", name="Use 3").click()
            await page.get_by_text("Using candidate 3").wait_for()
            picked = page.locator(".msg.bot:has-text('Using candidate 3') img.result")
            assert await picked.get_attribute("src") == third
            await context.close()
            assert errors == []
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
