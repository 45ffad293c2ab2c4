"""Recipes on Telegram end to end: an album captioned /recipe NAME, a reply to a photo,
export and import of the recipe file, and the bad inputs a chat can send."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from editor.testing.doubles import NullEditor
from storage.models import Version
from tests.bot.telegram.test_telegram import (
    ALICE,
    TIMEOUT,
    TOKEN,
    decode,
    jpeg,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI, SentMessage


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def _save_winter(api: FakeBotAPI) -> None:
    since = len(api.calls)
    api.send_photo(ALICE, ALICE, jpeg((320, 240)))
    await next_text(api, ALICE, since, contains="Got your photo")
    await result_of(api, ALICE, ALICE, "make it night")
    await result_of(api, ALICE, ALICE, "add snow")
    since = len(api.calls)
    api.send_text(ALICE, ALICE, "/recipe save winter")
    assert "Saved recipe “winter” (2 steps" in await next_text(api, ALICE, since, "Saved")


def _documents(api: FakeBotAPI, since: int, suffix: str) -> list[SentMessage]:
    ids = {
        call.result["message_id"]
        for call in api.calls_to("sendDocument", since=since)
        if call.ok and str(call.result["document"].get("file_name", "")).endswith(suffix)
    }
    return [m for m in api.sent(ALICE) if m.message_id in ids]


async def test_an_album_captioned_with_a_recipe_becomes_one_batch(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path / "data", NullEditor()) as components:
        await _save_winter(api)
        sizes = [(320, 240), (400, 300), (240, 360)]
        since = len(api.calls)
        for index, size in enumerate(sizes):  # only the second item carries the caption
            caption = "/recipe winter" if index == 1 else None
            api.send_photo(
                ALICE, ALICE, jpeg(size, shade=index * 30), caption=caption, media_group_id="g1"
            )
        status = await next_text(api, ALICE, since, contains="Applying")
        assert "3 photo(s), 2 step(s) each (6 edits)" in status
        album = await api.wait_for("sendMediaGroup", timeout=TIMEOUT, since=since)
        assert album.ok and len(album.result) == 3
        for message in album.result:
            decode(api.photo_bytes(message))
        await api.wait_for("sendDocument", timeout=TIMEOUT, since=since)
        [archive] = _documents(api, since, ".zip")
        assert archive.document is not None
        with zipfile.ZipFile(io.BytesIO(archive.document)) as zipped:
            names = zipped.namelist()
            assert len(names) == 3
            got = [Image.open(io.BytesIO(zipped.read(n))).size for n in names]
        assert got == sizes  # full resolution, each photo at its own size
        finished = [m for m in api.sent(ALICE) if m.text and "finished" in m.text]
        assert finished and "3 of 3 photos done" in (finished[-1].text or "")
        async with components.database.read() as session:
            roots = await session.scalar(
                select(func.count(Version.id)).where(Version.parent_id.is_(None))
            )
        assert roots == 1 + 3  # the recipe's own photo, then one root per album photo
        assert len(api.calls_to("sendPhoto", since=since)) == 0  # no message per step


async def test_reply_to_a_photo_export_import_and_bad_input(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path / "data", NullEditor()):
        await _save_winter(api)

        # /recipe NAME in reply to a photo of the user's
        since = len(api.calls)
        sent = api.send_photo(ALICE, ALICE, jpeg((300, 200), shade=99))
        await next_text(api, ALICE, since, contains="Got your photo")
        since = len(api.calls)
        api.send_text(
            ALICE, ALICE, "/recipe winter", reply_to_message_id=sent["message"]["message_id"]
        )
        assert "1 photo(s)" in await next_text(api, ALICE, since, contains="Applying")
        single = await api.wait_for("sendPhoto", timeout=TIMEOUT, since=since)
        assert decode(api.photo_bytes(single.result)).size == (300, 200)

        # export, then send the file back under another user name... as the same user
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/recipe export winter")
        await api.wait_for("sendDocument", timeout=TIMEOUT, since=since)
        [exported] = _documents(api, since, ".json")
        assert exported.document is not None
        document = json.loads(exported.document)
        assert [s["instruction"] for s in document["steps"]] == ["make it night", "add snow"]
        document["name"] = "winter2"
        since = len(api.calls)
        api.send_document(
            ALICE,
            ALICE,
            json.dumps(document).encode(),
            file_name="winter2.recipe.json",
            mime_type="application/json",
        )
        assert "Imported recipe “winter2”" in await next_text(api, ALICE, since, "Imported")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/recipes")
        listing = await next_text(api, ALICE, since, contains="recipes")
        assert "winter: 2 steps" in listing and "winter2: 2 steps" in listing

        cases = [
            (
                "not a recipe I can use",
                lambda: api.send_document(
                    ALICE, ALICE, b"{oops", file_name="x.json", mime_type="application/json"
                ),
            ),
            (
                "too large",
                lambda: api.send_document(
                    ALICE, ALICE, b" " * 70_000, file_name="big.json", mime_type="application/json"
                ),
            ),
            (
                "no recipe called “summer”",
                lambda: api.send_photo(ALICE, ALICE, jpeg(), caption="/recipe summer"),
            ),
            ("Send photos with the caption", lambda: api.send_text(ALICE, ALICE, "/recipe winter")),
            ("Recipes replay your edits", lambda: api.send_text(ALICE, ALICE, "/recipe")),
        ]
        for expected, act in cases:
            since = len(api.calls)
            act()
            text = await next_text(api, ALICE, since)
            assert expected in text, (expected, text)
            assert "Traceback" not in text
