"""`pix2chat run` answers while the model loads: frontends start at once, edits queue with a
"warming up" reply, `pix2chat doctor` sees the state, and a model that cannot load is told to
the users who wait before the process exits with the load error.

`serve` is `pix2chat run` without its signal handlers: the real Telegram frontend against the
fake Bot API, with an editor double whose load waits for the test (tests/fakes,
editor/testing/doubles.py `SlowLoadingEditor`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.commands.doctor import check_model
from bot.commands.run import serve
from bot.work.warmup import STATE_FILE, read_state
from editor.errors import ModelLoadError
from editor.testing.doubles import SlowLoadingEditor
from tests.bot.telegram.test_telegram import (
    TIMEOUT,
    TOKEN,
    jpeg,
    next_photo,
    next_text,
    settings_for,
)
from tests.fakes.telegram_api import FakeBotAPI

ALICE, BOB = 1001, 1002


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def test_an_instruction_while_the_model_loads_is_queued_and_delivered_once_ready(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    model = tmp_path / "model"  # what doctor checks: the load itself is the double's
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    settings = settings_for(api, tmp_path / "data", model=str(model))
    editor = SlowLoadingEditor()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, editor))
    try:
        await api.wait_for("getUpdates", timeout=TIMEOUT)  # serving, the model still loading
        assert editor.load_started.is_set() and not editor.loaded.is_set()

        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg(), caption="make it night")
        text = await next_text(api, ALICE, since, contains="warming up")
        assert text.startswith("On it: “make it night”. The model is still warming up (loading")
        since = len(api.calls)
        api.send_photo(BOB, BOB, jpeg(shade=30))
        text = await next_text(api, BOB, since)
        assert text.startswith("Got your photo.")
        assert "The model is still warming up (loading for" in text

        state = read_state(settings.data_dir)
        assert state is not None and state["state"] == "loading" and state["pid"] == os.getpid()
        assert "pix2chat run (pid" in check_model(settings).detail
        assert "loading for" in check_model(settings).detail

        since = len(api.calls)
        editor.loaded.set()
        night = await next_photo(api, ALICE, since)
        assert "make it night" in (night.caption or "")
        for _ in range(100):  # the state file follows within a moment
            state = read_state(settings.data_dir)
            if state is not None and state["state"] == "ready":
                break
            await asyncio.sleep(0.05)
        assert state is not None and state["detail"].startswith("ready (loaded in")

        # Once ready, replies are the usual ones.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add snow")
        assert "warming up" not in await next_text(api, ALICE, since, contains="On it")
        await next_photo(api, ALICE, since)
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert not (settings.data_dir / STATE_FILE).exists()  # nothing stale for doctor


async def test_a_model_that_fails_to_load_is_told_to_waiting_users_and_raised(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    settings = settings_for(api, tmp_path / "data")
    failure = ModelLoadError("The model 'nowhere' could not be loaded.", option="model")
    editor = SlowLoadingEditor(fail_with=failure)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, editor))
    await api.wait_for("getUpdates", timeout=TIMEOUT)
    since = len(api.calls)
    api.send_photo(ALICE, ALICE, jpeg(), caption="make it night")
    await next_text(api, ALICE, since, contains="warming up")

    since = len(api.calls)
    editor.loaded.set()
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        await asyncio.wait_for(task, TIMEOUT)
    told = api.calls_to("sendMessage", lambda p: "could not start" in str(p["text"]), since=since)
    assert [int(call.params["chat_id"]) for call in told] == [ALICE]
    assert not api.calls_to("sendMessage", lambda p: int(p["chat_id"]) == BOB)
    assert not (settings.data_dir / STATE_FILE).exists()


def test_run_exits_with_the_load_error_after_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web chat starts at once; the missing model then stops it with today's message."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("PIX2CHAT_")]:
        monkeypatch.delenv(name)
    env = {
        "PIX2CHAT_DATA_DIR": str(tmp_path / "data"),
        "PIX2CHAT_MODEL": str(tmp_path / "no-model-here"),
        "PIX2CHAT_DEVICE": "cpu",
        "PIX2CHAT_WEB_PORT": "0",
        "HF_HUB_OFFLINE": "1",
    }
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 1, result.output
    assert "no-model-here" in result.output and "PIX2CHAT_MODEL" in result.output


async def test_the_web_chat_shows_the_warm_up_and_the_failed_load(tmp_path: Path) -> None:
    """The browser gets the warming-up reply, then the failure as a `notice` event."""
    import socket

    import httpx

    from tests.bot.web.test_web import read_events, web_settings

    with socket.socket() as probe:  # a free port, known to the test before serve() binds it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = web_settings(tmp_path / "data", web_port=port)
    editor = SlowLoadingEditor(fail_with=ModelLoadError("The model could not be loaded."))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, editor))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        for _ in range(200):  # serving at once, while the model loads
            try:
                await client.post("/api/session")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
        photo_bytes = jpeg()
        uploaded = await client.post(
            "/api/photo", content=photo_bytes, headers={"content-type": "image/jpeg"}
        )
        assert "still warming up" in uploaded.json()["text"]
        queued = (await client.post("/api/instruct", json={"text": "make it night"})).json()
        assert queued["kind"] == "queued" and "still warming up" in queued["text"]
        async with client.stream("GET", "/api/events") as stream:
            events = read_events(stream)
            assert (await anext(events))[0] == "ready"
            editor.loaded.set()
            notices = []
            async with asyncio.timeout(TIMEOUT):
                async for name, data in events:
                    if name == "notice":
                        notices.append(data)
                        break
    assert notices[0]["is_error"] and "could not start" in notices[0]["text"]
    with pytest.raises(ModelLoadError):
        await asyncio.wait_for(task, TIMEOUT)
