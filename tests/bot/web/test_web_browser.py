"""The web chat in a real browser: headless Chromium (Debian's package) driven by Playwright.

The production object graph with the tiny diffusers pipeline, the real uvicorn server on an
ephemeral port, and the page's own JavaScript: upload a photo, chain two instructions, undo,
and check the images the page shows. Screenshots (desktop, and a phone in dark mode) are
saved under test-artifacts/ at the repository root.

Without a browser this test skips with the reason, except under CI=true, where a missing
browser fails: `.ci/run` installs it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.service.messages import render
from bot.web.frontend import WebFrontend
from editor.pix2pix import DiffusersEditor
from editor.testing.doubles import NullEditor, PausingPreviewEditor
from tests.bot.service.harness import photo
from tests.bot.web.test_web import web_settings

CHROMIUM = Path(os.environ.get("PIX2CHAT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Python package playwright is not installed (pip install -e .[dev])"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def web_url(tmp_path: Path, tiny_editor: DiffusersEditor) -> AsyncIterator[str]:
    """`pix2chat run` without a token, in-process: the web chat on an ephemeral port."""
    settings = web_settings(tmp_path / "data", default_steps=2, default_resolution=256)
    frontend = WebFrontend(settings, announce=lambda _text: None)
    stop = asyncio.Event()
    async with build(settings, editor=tiny_editor) as components:
        await frontend.preflight()
        task = asyncio.create_task(frontend.run(components, stop))
        try:
            yield frontend.url()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def results(page: Any, count: int) -> list[Any]:
    """Wait until the thread shows `count` finished results; their elements."""
    finished = page.locator(".msg.bot:not(.pending):has(img.result)")
    await finished.nth(count - 1).wait_for(timeout=TIMEOUT_MS)
    return [finished.nth(index) for index in range(await finished.count())]


async def image_bytes(page: Any, src: str) -> bytes:
    """What the page's own session gets for an image URL."""
    values = await page.evaluate(
        "async (src) => Array.from(new Uint8Array(await (await fetch(src)).arrayBuffer()))", src
    )
    return bytes(values)


async def test_upload_two_instructions_undo_in_chromium(
    chromium: Any, web_url: str, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    original = tmp_path / "sneaker.jpg"
    original.write_bytes(photo((320, 240), shade=90))
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto(web_url)
    await page.get_by_text("Hi! I edit photos by instruction.").wait_for()

    # A file that is not a photo: an inline error with the catalogue's words.
    await page.set_input_files(
        "#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"hello"}]
    )
    await page.click("#send")
    alert = page.locator(".msg.error[role=alert]").last
    await alert.wait_for()
    assert await alert.inner_text() == render("error.image_format")

    # The photo, then two instructions typed and sent with the keyboard.
    await page.set_input_files("#file", str(original))
    await page.click("#send")
    await page.get_by_text("Got your photo.").wait_for()
    await page.fill("#text", "make it night")
    await page.press("#text", "Enter")
    [night] = await results(page, 1)
    await page.fill("#text", "add snow")
    await page.press("#text", "Enter")
    _, snow = await results(page, 2)
    night_caption = await night.inner_text()
    assert "make it night" in night_caption and "seed" in night_caption
    assert "add snow" in await snow.inner_text()
    night_src = await night.locator("img").get_attribute("src")
    snow_src = await snow.locator("img").get_attribute("src")
    assert night_src is not None and snow_src is not None
    assert night_src != snow_src
    assert await image_bytes(page, night_src) != await image_bytes(page, snow_src)
    await page.locator("#strip button").nth(2).wait_for()  # photo -> night -> snow

    # Undo on the latest result: the page shows the night image again.
    await snow.locator("button[data-action=undo]").click()
    await page.get_by_text(render("undo.done")).wait_for()
    undone = page.locator(".msg.bot", has_text=render("undo.done")).last
    undone_src = await undone.locator("img").get_attribute("src")
    assert undone_src == night_src
    # The result comes back at the photo's own size (320x240), not the working resolution.
    assert await undone.locator("img").evaluate("img => img.complete && img.naturalWidth") == 320
    await page.locator("#strip button").nth(2).wait_for(state="detached")
    current = page.locator("#strip button[aria-current=true]")
    assert await current.get_attribute("data-version") == night_src.split("/")[3]
    download = undone.locator("a[data-action=full]")
    assert await download.get_attribute("href") == night_src.replace("/image", "/full")

    # Full resolution is a download of the lossless PNG.
    async with page.expect_download() as download_info:
        await download.click()
    downloaded = await download_info.value
    assert downloaded.suggested_filename == f"pix2chat-{night_src.split('/')[3]}.png"
    assert (await image_bytes(page, night_src.replace("/image", "/full"))).startswith(b"\x89PNG")

    # Clicking a result that is no longer on the path ("snow", undone) branches from it.
    await snow.locator("img").click()
    await page.locator("#branch").wait_for()
    await page.fill("#text", "add a moon")
    await page.press("#text", "Enter")
    await results(page, 4)
    assert await page.locator("#branch").is_hidden()
    await page.locator(".msg.me", has_text=render("web.branched")).wait_for()
    await page.locator("#strip button").nth(3).wait_for()
    strip = [await b.get_attribute("title") for b in await page.locator("#strip button").all()]
    assert len(strip) == 4, strip
    expected = ("make it night", "add snow", "add a moon")
    for title, instruction in zip(strip[1:], expected, strict=True):
        assert instruction in (title or ""), strip

    # The settings panel: change steps, then back to the defaults.
    await page.click("#settings-button")
    await page.fill("input[name=steps]", "3")
    await page.press("input[name=steps]", "Tab")
    await page.get_by_text("Updated: steps is now 3.").wait_for()
    await page.click("#settings-reset")
    await page.get_by_text(render("settings.reset")).wait_for()
    assert await page.input_value("input[name=steps]") == "2"
    await page.keyboard.press("Escape")
    assert await page.locator("#settings").is_hidden()

    await page.screenshot(path=str(ARTIFACTS / "web-chat-desktop.png"), full_page=True)

    # The same browser on a phone-width screen in dark mode: history restored from the server.
    state = await context.storage_state()
    phone = await chromium.new_context(
        storage_state=state,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    small = await phone.new_page()
    small.set_default_timeout(TIMEOUT_MS)
    small.on("pageerror", lambda error: errors.append(str(error)))
    await small.goto(web_url)
    restored = await results(small, 3)
    assert len(restored) == 3  # the path root -> head: photo -> night -> snow -> moon
    assert await restored[0].locator("img").get_attribute("src") == night_src
    assert await restored[1].locator("img").get_attribute("src") == snow_src
    assert await restored[0].locator(".caption").inner_text() == night_caption.split("\n")[0]
    overflow = await small.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
    background = await small.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)"  # the dark theme
    await small.screenshot(path=str(ARTIFACTS / "web-chat-phone-dark.png"))
    await small.click("#settings-button")
    await small.locator("#settings").wait_for()
    assert await small.evaluate("document.getElementById('settings').offsetWidth") == 390
    await small.screenshot(path=str(ARTIFACTS / "web-chat-phone-settings.png"))
    await phone.close()

    # Another browser (no cookie of its own yet) starts empty: nothing of this one shows.
    stranger = await chromium.new_context()
    other = await stranger.new_page()
    await other.goto(web_url)
    await other.get_by_text("Hi! I edit photos by instruction.").wait_for()
    assert await other.locator(".msg img, #strip img").count() == 0
    status = await other.evaluate("async (src) => (await fetch(src)).status", night_src)
    assert status == 404
    await stranger.close()
    await context.close()
    assert errors == []


@pytest.fixture
async def protected_url(tmp_path: Path) -> AsyncIterator[str]:
    """The web chat in password mode (the null editor: no edits happen here)."""
    settings = web_settings(tmp_path / "data", web_password="open sesame")
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


async def test_password_login_in_chromium(chromium: Any, protected_url: str) -> None:
    context = await chromium.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(protected_url)
    await page.get_by_text(render("web.login_needed")).wait_for()
    assert await page.locator("#composer").is_hidden()
    await page.fill("#password", "guess")
    await page.press("#password", "Enter")
    await page.get_by_text(render("web.wrong_password")).wait_for()
    await page.fill("#password", "open sesame")
    await page.press("#password", "Enter")
    await page.get_by_text("Hi! I edit photos by instruction.").wait_for()
    assert await page.locator("#login").is_hidden()
    assert await page.locator("#composer").is_visible()
    cookies = await context.cookies()
    [session] = [c for c in cookies if c["name"] == "pix2chat_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await context.close()


async def test_a_running_edit_shows_its_live_preview_in_chromium(
    chromium: Any, tmp_path: Path
) -> None:
    """The pending bubble shows the latest preview above its progress bar, then the result."""
    settings = web_settings(tmp_path / "data", default_steps=4, default_resolution=256)
    frontend = WebFrontend(settings, announce=lambda _text: None)
    stop = asyncio.Event()
    editor = PausingPreviewEditor(pause_at=2)
    original = tmp_path / "sneaker.jpg"
    original.write_bytes(photo((320, 240), shade=90))
    async with build(settings, editor=editor) as components:
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
            await page.fill("#text", "make it night")
            await page.press("#text", "Enter")

            preview = page.locator(".msg.pending img.preview")
            await preview.wait_for()
            await page.wait_for_function(
                "() => { const img = document.querySelector('.msg.pending img.preview');"
                " return img && img.complete && img.naturalWidth > 0"
                " && img.src.endsWith('step=2'); }"
            )
            above_bar = await preview.evaluate(
                "img => img.nextElementSibling && img.nextElementSibling.tagName"
            )
            assert above_bar == "PROGRESS"
            assert await preview.evaluate("img => img.naturalWidth") == 256
            editor.resume.set()
            [done] = await results(page, 1)
            assert await done.locator("img.result").count() == 1
            assert await page.locator("img.preview").count() == 0
            await context.close()
            assert errors == []
        finally:
            editor.resume.set()
            stop.set()
            await asyncio.wait_for(task, 30)
