"""The web chat over HTTP: every endpoint against the production object graph.

Requests go through httpx into the real Starlette app (in-process ASGI, or real uvicorn on an
ephemeral port for the event stream), on top of `bot.app.build`: SQLite, image store,
scheduler and the NullEditor/GatedEditor, since the model is not the point here (the browser
test runs the tiny diffusers pipeline). Assertions are on status codes, JSON bodies, cookies
and decoded pixels.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.app import Components, FrontendError, build
from bot.config import Settings
from bot.frontends import configured
from bot.service.messages import render
from bot.web.app import WebContext, create_app
from bot.web.delivery import WebDelivery
from bot.web.frontend import WebFrontend
from bot.web.sessions import COOKIE, PLATFORM, Sessions, is_loopback
from editor.testing.doubles import GatedEditor, NullEditor, PausingPreviewEditor
from tests.bot.service.harness import Recorder, decompression_bomb, photo

BASE_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 15.0


def web_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "default_steps": 3,
        "default_resolution": 256,
        "max_wait_ms": 0,
        "rate_burst": 100,
        "rate_per_minute": 600.0,
        "max_pending_per_user": 5,
        "web_port": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Chat:
    """The app under test plus what the test needs to look behind it."""

    components: Components
    delivery: WebDelivery
    recorder: Recorder
    app: Any

    @asynccontextmanager
    async def browser(self, *, session: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        """One browser: its own cookie jar, same-origin headers as a real page sends."""
        transport = httpx.ASGITransport(app=self.app)
        headers = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=headers
        ) as client:
            if session:
                response = await client.post("/api/session")
                assert response.status_code == 200, response.text
            yield client


@asynccontextmanager
async def web_chat(
    tmp_path: Path, editor: Any = None, password: str | None = None, **overrides: Any
) -> AsyncIterator[Chat]:
    settings = web_settings(tmp_path / "data", **overrides)
    async with build(settings, editor=editor or NullEditor()) as components:
        delivery = WebDelivery(components.service)
        recorder = Recorder(timeout_s=TIMEOUT_S)
        components.service.subscribe(PLATFORM, delivery.on_event)
        components.service.subscribe(PLATFORM, recorder)
        app = create_app(
            WebContext(
                service=components.service,
                delivery=delivery,
                sessions=Sessions(password),
                max_upload_bytes=settings.max_upload_bytes,
            )
        )
        try:
            yield Chat(components, delivery, recorder, app)
        finally:
            await delivery.close()


async def upload(client: httpx.AsyncClient, data: bytes | None = None, **headers: str) -> Any:
    response = await client.post("/api/photo", content=data or photo(), headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def instruct(client: httpx.AsyncClient, text: str, **body: Any) -> Any:
    response = await client.post("/api/instruct", json={"text": text, **body})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["key"] in ("edit.queued", "edit.queued_next"), reply
    return reply


async def edited(chat: Chat, client: httpx.AsyncClient, text: str, **body: Any) -> int:
    """Send an instruction and wait for its result; the new version id."""
    version_id = int((await instruct(client, text, **body))["version_id"])
    result = await chat.recorder.result(version_id)
    assert result.key == "edit.done", result
    return version_id


async def pixels(client: httpx.AsyncClient, version_id: int, kind: str = "image") -> Image.Image:
    response = await client.get(f"/api/versions/{version_id}/{kind}")
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# -- the page and sessions ---------------------------------------------------------------------


async def test_page_static_files_and_a_private_session_cookie(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser(session=False) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/static/app.js"' in page.text
        assert "set-cookie" not in page.headers  # the page asks for a session itself
        for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
            static = await client.get(f"/static/{name}")
            assert static.status_code == 200 and kind in static.headers["content-type"]

        first = await client.post("/api/session")
        cookie = first.headers["set-cookie"]
        assert first.status_code == 200 and first.json()["login"] is False
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        secret = client.cookies[COOKIE]
        again = await client.post("/api/session")
        assert again.status_code == 200 and "set-cookie" not in again.headers
        assert client.cookies[COOKIE] == secret

        await upload(client)
        # The database names the browser by a hash: the secret itself is nowhere in it.
        database = (tmp_path / "data" / "pix2chat.db").read_bytes()
        assert secret.encode() not in database


async def test_every_api_call_without_a_valid_cookie_is_refused(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser(session=False) as client:
        for method, path in (
            ("GET", "/api/state"),
            ("POST", "/api/photo"),
            ("POST", "/api/instruct"),
            ("POST", "/api/undo"),
            ("GET", "/api/history"),
            ("GET", "/api/settings"),
            ("GET", "/api/versions/1/image"),
            ("GET", "/api/events"),
        ):
            response = await client.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["text"] == render("web.no_session")
        client.cookies.set(COOKIE, "not-a-session")
        assert (await client.get("/api/history")).status_code == 401


async def test_unknown_paths_and_other_host_names_are_refused(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        missing = await client.get("/api/nothing-here")
        assert missing.status_code == 404 and missing.json()["key"] == "web.not_found"
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 gets nothing.
        rebound = await client.get("/api/history", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 400 and rebound.json()["key"] == "web.bad_host"
        assert (await client.get("/", headers={"Host": "localhost:8000"})).status_code == 200


async def test_cross_site_writes_are_refused(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        await upload(client)
        cross_site = await client.post(
            "/api/instruct", json={"text": "add snow"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        other_origin = await client.post(
            "/api/instruct",
            json={"text": "add snow"},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
        )
        for response in (cross_site, other_origin):
            assert response.status_code == 403
            assert response.json()["text"] == render("web.forbidden")
        history = (await client.get("/api/history")).json()
        assert [e["instruction"] for e in history["history"]] == [None]  # nothing was queued


async def test_password_mode_needs_a_login_and_keeps_the_history(tmp_path: Path) -> None:
    async with (
        web_chat(tmp_path, password="correct horse") as chat,
        chat.browser(session=False) as client,
    ):
        refused = await client.post("/api/session")
        assert refused.status_code == 401 and refused.json()["login"] is True
        assert "set-cookie" not in refused.headers
        # A self-made cookie is not a session in password mode.
        client.cookies.set(COOKIE, "A" * 43)
        assert (await client.get("/api/state")).status_code == 401

        wrong = await client.post("/api/login", json={"password": "wrong"})
        assert wrong.status_code == 401 and wrong.json()["text"] == render("web.wrong_password")
        right = await client.post("/api/login", json={"password": "correct horse"})
        assert right.status_code == 200, right.text
        assert (await client.post("/api/session")).json()["login"] is False
        root = await upload(client)

        # Logging in again (e.g. after the password changed) keeps the same conversation.
        again = await client.post("/api/login", json={"password": "correct horse"})
        assert again.status_code == 200
        history = (await client.get("/api/history")).json()
        assert [e["version_id"] for e in history["history"]] == [root["version_id"]]


# -- uploads -----------------------------------------------------------------------------------


async def test_upload_then_state_shows_the_photo(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        empty = (await client.get("/api/state")).json()
        assert empty["history"]["key"] == "history.empty"
        assert empty["limits"]["max_upload_bytes"] == 20 * 1024 * 1024
        assert "20 MB" in empty["limits"]["too_large"]
        assert empty["choices"]["resolutions"] == [256, 384, 512, 640, 768]

        reply = await upload(client, photo((320, 240)))
        assert reply["key"] == "photo.received"
        state = (await client.get("/api/state")).json()
        [entry] = state["history"]["history"]
        assert entry["version_id"] == reply["version_id"] and entry["is_head"]
        assert entry["instruction"] is None and entry["status"] == "done"
        image = await pixels(client, reply["version_id"], "full")
        assert image.size == (320, 240) and image.format == "PNG"
        thumbnail = await pixels(client, reply["version_id"], "thumbnail")
        assert thumbnail.format == "JPEG" and max(thumbnail.size) == 160


async def test_a_caption_is_the_first_instruction(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        reply = await upload(client, photo(), **{"X-Caption": "make%20it%20n%C3%BCght"})
        assert reply["key"] in ("edit.queued", "edit.queued_next")
        assert reply["args"]["instruction"] == "make it nüght"
        done = await chat.recorder.result(reply["version_id"])
        assert done.key == "edit.done"


@pytest.mark.parametrize(
    ("data", "status", "key"),
    [
        (b"this is not an image at all", 415, "error.image_format"),
        (photo(fmt="JPEG")[:300], 422, "error.image_unreadable"),
        (decompression_bomb(), 413, "error.image_too_large"),
        (b"", 422, "error.image_unreadable"),
    ],
    ids=["not-an-image", "broken-jpeg", "decompression-bomb", "empty"],
)
async def test_bad_uploads_get_a_friendly_refusal(
    tmp_path: Path, data: bytes, status: int, key: str
) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        response = await client.post("/api/photo", content=data)
        assert (response.status_code, response.json()["key"]) == (status, key), response.text
        assert response.json()["is_error"] is True
        assert response.json()["text"] == render(key, response.json()["args"])
        assert "Traceback" not in response.text
        history = (await client.get("/api/history")).json()
        assert history["key"] == "history.empty"


async def test_too_big_upload_is_refused_before_the_body_is_read(tmp_path: Path) -> None:
    limit = 64 * 1024
    async with web_chat(tmp_path, max_upload_bytes=limit) as chat, chat.browser() as client:
        declared = await client.post(
            "/api/photo", content=b"x" * (limit + 1), headers={"Content-Length": str(limit + 1)}
        )
        assert declared.status_code == 413
        assert declared.json()["key"] == "error.image_too_large"
        assert "MB" in declared.json()["text"]

        sent: list[int] = []

        async def endless() -> AsyncIterator[bytes]:
            """A chunked upload with no Content-Length that never ends on its own."""
            for _ in range(10_000):
                sent.append(1)
                yield b"\0" * 16 * 1024

        streamed = await client.post("/api/photo", content=endless())
        assert streamed.status_code == 413
        assert streamed.json()["key"] == "error.image_too_large"
        assert len(sent) <= limit // (16 * 1024) + 2  # stopped reading right past the limit


async def test_bad_json_bodies_get_400(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        for body in (b"{not json", b"[1, 2]", b'"text"'):
            response = await client.post(
                "/api/instruct", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400 and response.json()["key"] == "web.bad_request"
        await upload(client)
        bad_id = await client.post("/api/instruct", json={"text": "x", "base_version_id": "abc"})
        assert bad_id.status_code == 400


# -- instructions and refusals -----------------------------------------------------------------


async def test_instruction_before_a_photo_and_empty_instruction(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        early = await client.post("/api/instruct", json={"text": "make it night"})
        assert early.status_code == 409 and early.json()["key"] == "error.no_image"
        assert early.json()["text"] == render("error.no_image")
        await upload(client)
        empty = await client.post("/api/instruct", json={"text": "   "})
        assert empty.status_code == 400 and empty.json()["key"] == "error.empty_instruction"
        long = await client.post("/api/instruct", json={"text": "word " * 100})
        assert long.status_code == 400 and long.json()["key"] == "error.instruction_too_long"


async def test_rate_limited(tmp_path: Path) -> None:
    async with (
        web_chat(tmp_path, rate_burst=1, rate_per_minute=1.0) as chat,
        chat.browser() as client,
    ):
        await upload(client)
        await instruct(client, "make it night")
        limited = await client.post("/api/instruct", json={"text": "add snow"})
        assert limited.status_code == 429
        assert limited.json()["key"] == "error.rate_limited"
        assert "Please wait" in limited.json()["text"] and "second" in limited.json()["text"]


async def test_queue_full(tmp_path: Path) -> None:
    editor = GatedEditor(closed=True)
    async with (
        web_chat(tmp_path, editor, queue_cap=1) as chat,
        chat.browser() as alice,
        chat.browser() as bob,
    ):
        await upload(alice)
        await upload(bob)
        first = await instruct(alice, "make it night")
        full = await bob.post("/api/instruct", json={"text": "add snow"})
        assert full.status_code == 503 and full.json()["key"] == "error.queue_full"
        assert full.json()["text"] == render("error.queue_full")
        editor.gate.set()
        assert (await chat.recorder.result(first["version_id"])).key == "edit.done"


async def test_duplicate_request_ids_queue_one_edit(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        await upload(client)
        first = await instruct(client, "make it night", request_id="retry-123456")
        again = await client.post(
            "/api/instruct", json={"text": "make it night", "request_id": "retry-123456"}
        )
        assert again.status_code == 200 and again.json()["key"] == "edit.duplicate"
        assert again.json()["version_id"] == first["version_id"]


# -- navigation --------------------------------------------------------------------------------


async def test_undo_redo_regenerate_download_and_branch(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        root = (await upload(client, photo((320, 240))))["version_id"]
        night = await edited(chat, client, "make it night")
        snow = await edited(chat, client, "add snow")
        night_pixels = (await pixels(client, night, "full")).tobytes()
        snow_pixels = (await pixels(client, snow, "full")).tobytes()
        assert night_pixels != snow_pixels

        undo = await client.post("/api/undo", json={})
        assert undo.status_code == 200
        assert (undo.json()["key"], undo.json()["version_id"]) == ("undo.done", night)
        assert undo.json()["image"] == f"/api/versions/{night}/image"
        assert "redo" in undo.json()["actions"]
        history = (await client.get("/api/history")).json()["history"]
        assert [e["version_id"] for e in history] == [root, night]
        assert history[-1]["is_head"]

        redo = await client.post("/api/redo")
        assert (redo.json()["key"], redo.json()["version_id"]) == ("redo.done", snow)
        nothing = await client.post("/api/redo")
        assert nothing.status_code == 409 and nothing.json()["key"] == "error.nothing_to_redo"

        # Regenerate: same instruction on the same parent, a new seed, new pixels.
        again = (await client.post("/api/regenerate", json={"version_id": snow})).json()
        assert again["key"] in ("edit.queued", "edit.queued_next")
        done = await chat.recorder.result(again["version_id"])
        assert done.key == "edit.done" and done.args["instruction"] == "add snow"
        assert done.args["seed"] != (await chat.recorder.result(snow)).args["seed"]

        # Full resolution: the lossless PNG as a download.
        full = await client.get(f"/api/versions/{night}/full")
        assert full.headers["content-type"] == "image/png"
        assert f'filename="pix2chat-{night}.png"' in full.headers["content-disposition"]
        preview = await client.get(f"/api/versions/{night}/image")
        assert preview.headers["content-type"] == "image/jpeg"
        assert "private" in preview.headers["cache-control"]

        # Branch from the earlier "night" result: the new edit's parent is night.
        branch = await edited(chat, client, "add a moon", base_version_id=night)
        history = (await client.get("/api/history")).json()["history"]
        assert [e["version_id"] for e in history] == [root, night, branch]
        assert [e["instruction"] for e in history] == [None, "make it night", "add a moon"]
        assert all(e["seed"] is not None for e in history[1:])
        assert history[2]["caption"] == render(
            "edit.done", {"instruction": "add a moon", "seed": history[2]["seed"]}
        )
        assert history[0]["caption"] is None  # the photo itself

        # Undo from an older result's button; undo at the photo says there is nothing.
        from_night = await client.post("/api/undo", json={"version_id": night})
        assert from_night.json()["version_id"] == root
        root_undo = await client.post("/api/undo")
        assert root_undo.status_code == 409
        assert root_undo.json()["key"] == "error.nothing_to_undo"

        reset = await client.post("/api/reset")
        assert reset.json()["key"] == "reset.done"
        assert (await pixels(client, reset.json()["version_id"], "full")).size == (320, 240)


async def test_cancel_a_queued_edit_and_status(tmp_path: Path) -> None:
    editor = GatedEditor(closed=True)
    async with web_chat(tmp_path, editor) as chat, chat.browser() as client:
        await upload(client)
        running = await instruct(client, "make it night")
        queued = await instruct(client, "add snow")
        status = (await client.get("/api/status")).json()
        assert status["key"] in ("status.running", "status.pending")
        cancelled = await client.post("/api/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["key"] == "cancel.done"
        editor.gate.set()
        assert (await chat.recorder.result(running["version_id"])).key == "edit.done"
        history = (await client.get("/api/history")).json()["history"]
        assert queued["version_id"] not in [e["version_id"] for e in history]
        nothing = await client.post("/api/cancel")
        assert nothing.status_code == 409


async def test_forget_deletes_this_browsers_history_only(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as alice, chat.browser() as bob:
        await upload(alice)
        bobs = (await upload(bob))["version_id"]
        forgot = await alice.post("/api/forget")
        assert forgot.status_code == 200 and forgot.json()["key"] == "forget.done"
        assert (await alice.get("/api/history")).json()["key"] == "history.empty"
        assert (await bob.get(f"/api/versions/{bobs}/image")).status_code == 200


# -- settings ----------------------------------------------------------------------------------


async def test_settings_get_update_invalid_and_reset(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        shown = (await client.get("/api/settings")).json()
        assert shown["settings"]["num_inference_steps"] == 3
        assert shown["settings"]["resolution"] == 256
        assert shown["settings"]["seed_mode"] == "random"

        for name, value in (
            ("steps", "7"),
            ("guidance_scale", 9),
            ("image_guidance_scale", "2.5"),
            ("seed_mode", "fixed"),
            ("seed", 1234),
            ("resolution", "384"),
        ):
            response = await client.post("/api/settings", json={"name": name, "value": value})
            assert response.status_code == 200, response.text
            assert response.json()["key"] == "settings.updated"
            assert response.json()["settings"]["seed_mode"] in ("random", "fixed")
        values = (await client.get("/api/settings")).json()["settings"]
        assert values == {
            "num_inference_steps": 7,
            "guidance_scale": 9.0,
            "image_guidance_scale": 2.5,
            "seed_mode": "fixed",
            "seed": 1234,
            "resolution": 384,
            "candidates": 1,
        }

        bad = await client.post("/api/settings", json={"name": "resolution", "value": 300})
        assert bad.status_code == 400 and bad.json()["key"] == "error.invalid_setting"
        assert "256" in bad.json()["text"]
        unknown = await client.post("/api/settings", json={"name": "colour", "value": 1})
        assert unknown.status_code == 400 and unknown.json()["key"] == "error.unknown_setting"

        # The fixed seed and steps reach the next edit.
        await upload(client)
        version = await edited(chat, client, "make it night")
        [_, entry] = (await client.get("/api/history")).json()["history"]
        assert entry["version_id"] == version
        assert entry["seed"] == 1234 and entry["params"]["num_inference_steps"] == 7

        reset = await client.post("/api/settings/reset")
        assert reset.status_code == 200 and reset.json()["key"] == "settings.reset"
        assert reset.json()["settings"]["num_inference_steps"] == 3
        assert reset.json()["settings"]["seed_mode"] == "random"


# -- isolation ---------------------------------------------------------------------------------


async def test_two_browsers_never_see_each_others_images(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as alice, chat.browser() as bob:
        assert alice.cookies[COOKIE] != bob.cookies[COOKIE]
        root = (await upload(alice))["version_id"]
        night = await edited(chat, alice, "make it night")

        # Bob has no photo at all: Alice's versions are simply not there for him.
        for kind in ("image", "full", "thumbnail"):
            response = await bob.get(f"/api/versions/{night}/{kind}")
            assert response.status_code == 404, (kind, response.text)
            assert response.json()["key"] == "error.version_not_found"
        await upload(bob, photo(shade=200))
        for kind in ("image", "full", "thumbnail"):
            assert (await bob.get(f"/api/versions/{root}/{kind}")).status_code == 404
        for path, body in (
            ("/api/undo", {"version_id": night}),
            ("/api/regenerate", {"version_id": night}),
            ("/api/instruct", {"text": "add snow", "base_version_id": night}),
        ):
            response = await bob.post(path, json=body)
            assert response.status_code == 404, (path, response.text)
        bobs_history = (await bob.get("/api/history")).json()["history"]
        assert root not in [e["version_id"] for e in bobs_history]
        alices_history = (await alice.get("/api/history")).json()["history"]
        assert [e["version_id"] for e in alices_history] == [root, night]


# -- the running frontend: uvicorn, the event stream, start-up refusals -------------------------


async def read_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event name, JSON data) of a server-sent event stream, skipping comments."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith(":") or line.startswith("retry:"):
            continue
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def test_running_frontend_streams_progress_and_results(tmp_path: Path) -> None:
    settings = web_settings(tmp_path / "data", default_steps=4)
    announced: list[str] = []
    started = asyncio.Event()

    def announce(text: str) -> None:
        announced.append(text)
        started.set()

    frontend = WebFrontend(settings, announce=announce)
    stop = asyncio.Event()
    editor = GatedEditor(closed=True)
    async with build(settings, editor=editor) as components:
        await frontend.preflight()
        url = frontend.url()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        task = asyncio.create_task(frontend.run(components, stop))
        await asyncio.wait_for(started.wait(), TIMEOUT_S)
        assert url in announced[0] and "Only this machine" in announced[0]
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
            assert (await client.get("/")).status_code == 200
            await client.post("/api/session")
            await upload(client)
            async with client.stream("GET", "/api/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = read_events(stream)
                assert (await anext(events))[0] == "ready"
                queued = await instruct(client, "make it night")
                editor.gate.set()
                seen: list[tuple[str, Any]] = []
                async with asyncio.timeout(TIMEOUT_S):
                    async for name, data in events:
                        seen.append((name, data))
                        if name in ("result", "failure"):
                            break
            progress = [d for n, d in seen if n == "progress"]
            assert [(d["args"]["step"], d["args"]["total"]) for d in progress] == [
                (1, 4),
                (2, 4),
                (3, 4),
                (4, 4),
            ]
            assert all(d["version_id"] == queued["version_id"] for d in progress)
            name, result = seen[-1]
            assert name == "result" and result["version_id"] == queued["version_id"]
            assert result["args"]["instruction"] == "make it night"
            assert isinstance(result["args"]["seed"], int)
            assert result["image"] == f"/api/versions/{queued['version_id']}/image"
            assert (await client.get(result["image"])).status_code == 200

            # A failure arrives on the stream with its catalogue text.
            editor.fail_on = "explode"
            async with client.stream("GET", "/api/events") as stream:
                events = read_events(stream)
                assert (await anext(events))[0] == "ready"
                failing = await instruct(client, "explode it")
                async with asyncio.timeout(TIMEOUT_S):
                    async for name, data in events:  # noqa: B007 (data is the failure after)
                        if name == "failure":
                            break
            assert data["version_id"] == failing["version_id"]
            assert data["text"] == render("error.edit_failed")
            assert data["actions"] == ["regenerate"]

            # Stopping ends open streams and the server.
            async with client.stream("GET", "/api/events") as stream:
                events = read_events(stream)
                assert (await anext(events))[0] == "ready"
                stop.set()
                async with asyncio.timeout(TIMEOUT_S):
                    rest = [event async for event in events]
                assert rest == []
        await asyncio.wait_for(task, TIMEOUT_S)
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as late:
                await late.get(url)


async def test_running_frontend_streams_live_previews_to_their_owner_only(tmp_path: Path) -> None:
    settings = web_settings(tmp_path / "data", default_steps=4)
    started = asyncio.Event()
    frontend = WebFrontend(settings, announce=lambda _text: started.set())
    stop = asyncio.Event()
    editor = PausingPreviewEditor(pause_at=2)
    async with build(settings, editor=editor) as components:
        await frontend.preflight()
        url = frontend.url()
        task = asyncio.create_task(frontend.run(components, stop))
        await asyncio.wait_for(started.wait(), TIMEOUT_S)
        async with (
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as alice,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as bob,
        ):
            await alice.post("/api/session")
            await bob.post("/api/session")
            await upload(alice)
            await upload(bob, photo(shade=200))
            async with alice.stream("GET", "/api/events") as stream:
                events = read_events(stream)
                assert (await anext(events))[0] == "ready"
                queued = await instruct(alice, "make it night")
                version_id = queued["version_id"]
                seen: list[tuple[str, Any]] = []
                async with asyncio.timeout(TIMEOUT_S):
                    async for name, data in events:
                        seen.append((name, data))
                        if name == "preview" and data["args"]["step"] == 2:
                            break
                    # The edit is held after step 2: its preview is there, for Alice only.
                    shown = await alice.get(seen[-1][1]["preview"])
                    others = await bob.get(seen[-1][1]["preview"])
                    editor.resume.set()
                    async for name, data in events:
                        seen.append((name, data))
                        if name in ("result", "failure"):
                            break
            previews = [d for n, d in seen if n == "preview"]
            assert [(d["args"]["step"], d["args"]["total"]) for d in previews] == [
                (1, 4),
                (2, 4),
                (3, 4),
            ]
            assert all(d["version_id"] == version_id for d in previews)
            assert previews[1]["preview"] == f"/api/versions/{version_id}/preview?step=2"
            assert shown.status_code == 200, shown.text
            assert shown.headers["content-type"] == "image/jpeg"
            assert shown.headers["cache-control"] == "no-store"
            with Image.open(io.BytesIO(shown.content)) as image:
                assert image.format == "JPEG"
            assert others.status_code == 404
            assert others.json()["key"] == "error.version_not_found"
            assert seen[-1][0] == "result" and seen[-1][1]["version_id"] == version_id
            # Once the result is in, the preview is gone (the page shows the result instead).
            after = await alice.get(f"/api/versions/{version_id}/preview")
            assert after.status_code == 409
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


async def test_an_exposed_web_chat_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    exposed = WebFrontend(web_settings(tmp_path, web_host="0.0.0.0"))
    with pytest.raises(FrontendError, match="PIX2CHAT_WEB_PASSWORD"):
        await exposed.preflight()
    protected = WebFrontend(web_settings(tmp_path, web_host="0.0.0.0", web_password="pw"))
    await protected.preflight()
    assert protected.url().startswith("http://127.0.0.1:")
    assert protected._socket is not None
    protected._socket.close()


async def test_a_taken_port_is_reported_before_the_model_loads(tmp_path: Path) -> None:
    first = WebFrontend(web_settings(tmp_path))
    await first.preflight()
    port = int(first.url().rsplit(":", 1)[1])
    second = WebFrontend(web_settings(tmp_path, web_port=port))
    with pytest.raises(FrontendError, match=f"cannot listen on 127.0.0.1:{port}"):
        await second.preflight()
    assert first._socket is not None
    first._socket.close()


async def test_connections_are_not_delayed_by_nagle(tmp_path: Path) -> None:
    """Accepted sockets inherit TCP_NODELAY; without it each response waited ~40 ms."""
    frontend = WebFrontend(web_settings(tmp_path))
    await frontend.preflight()
    assert frontend._socket is not None
    assert frontend._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    frontend._socket.close()


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "example.com", "::"))


def test_session_ids_are_hashes_and_password_cookies_are_signed() -> None:
    open_sessions, locked = Sessions(), Sessions("pw")
    cookie = open_sessions.issue()
    actor = open_sessions.actor(cookie)
    assert actor is not None and actor.platform == "web"
    assert cookie not in actor.chat_id and actor.chat_id == actor.user_id
    assert open_sessions.issue(cookie) == cookie
    assert locked.actor(cookie) is None  # unsigned
    signed = locked.issue(cookie)
    assert locked.actor(signed) == actor  # same browser, same conversation
    assert Sessions("other").actor(signed) is None
    assert open_sessions.actor("short") is None and open_sessions.actor(None) is None


def test_the_web_chat_starts_without_a_token_or_when_asked(tmp_path: Path) -> None:
    def names(**overrides: Any) -> list[str]:
        return [spec.name for spec in configured(web_settings(tmp_path, **overrides))]

    assert names() == ["Web chat"]
    assert names(telegram_token="1:x") == ["Telegram"]
    assert names(telegram_token="1:x", discord_token="y", web_enabled=True) == [
        "Telegram",
        "Discord",
        "Web chat",
    ]
