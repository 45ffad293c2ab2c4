"""Recipes in the web chat through the real Starlette app: the picker's list, commands,
export and import, several photos at once, the batch's grid event and its zip."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import zipfile
from pathlib import Path

from PIL import Image

from bot.service.replies import ReplyKind
from tests.bot.service.harness import photo
from tests.bot.web.test_web import TIMEOUT_S, Chat, edited, upload, web_chat


async def _save_winter(chat: Chat, client: object) -> None:
    await upload(client)  # type: ignore[arg-type]
    await edited(chat, client, "make it night")  # type: ignore[arg-type]
    response = await client.post("/api/recipe", json={"words": "save winter"})  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.json()["key"] == "recipe.saved"


async def _batch_result(chat: Chat, run: int) -> object:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            for _actor, reply in chat.recorder.replies:
                if reply.kind is ReplyKind.BATCH_RESULT and reply.args["run"] == run:
                    return reply
            await asyncio.sleep(0.02)


async def test_picker_apply_several_photos_grid_and_zip(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as alice, chat.browser() as bob:
        await _save_winter(chat, alice)
        listing = (await alice.get("/api/recipes")).json()
        assert listing["recipes"] == [{"name": "winter", "steps": 1}]
        assert listing["max_photos"] == 20
        assert (await bob.get("/api/recipes")).json()["recipes"] == []

        sizes = [(64, 48), (80, 60)]
        photos = [
            {"name": f"p{i}.jpg", "data": base64.b64encode(photo(size, shade=i)).decode()}
            for i, size in enumerate(sizes)
        ]
        photos.append({"name": "notes.txt", "data": base64.b64encode(b"hello").decode()})
        response = await alice.post("/api/recipes/apply", json={"name": "winter", "photos": photos})
        assert response.status_code == 200, response.text
        started = response.json()
        assert started["kind"] == "batch_status" and started["args"]["photos"] == 2
        assert "Skipped notes.txt" in started["text"]

        result = await _batch_result(chat, started["run"])
        assert len(result.versions) == 2  # type: ignore[attr-defined]
        zipped = await alice.get(f"/api/batches/{started['run']}/zip")
        assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
            got = [Image.open(io.BytesIO(archive.read(n))).size for n in archive.namelist()]
        assert got == sizes
        assert (await bob.get(f"/api/batches/{started['run']}/zip")).status_code == 404


async def test_commands_export_import_and_bad_input(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as alice, chat.browser() as bob:
        await _save_winter(chat, alice)
        shown = (await alice.post("/api/recipe", json={"words": "show winter"})).json()
        assert "1. “make it night”" in shown["text"]
        exported = (await alice.post("/api/recipe", json={"words": "export winter"})).json()
        assert exported["download"] == "/api/recipes/winter/export"
        download = await alice.get(exported["download"])
        assert download.status_code == 200
        assert "attachment" in download.headers["content-disposition"]
        document = json.loads(download.content)
        assert (await bob.get("/api/recipes/winter/export")).status_code == 404

        imported = await bob.post("/api/recipes/import", content=download.content)
        assert imported.status_code == 200 and imported.json()["key"] == "recipe.imported"
        assert document["name"] == "winter"

        bad = await bob.post("/api/recipes/import", content=b"{oops")
        assert bad.status_code == 400 and "not a recipe" in bad.json()["text"]
        huge = await bob.post("/api/recipes/import", content=b" " * 100_000)
        assert huge.status_code == 413 and "recipe file is too large" in huge.json()["text"]
        unknown = await bob.post(
            "/api/recipes/apply",
            json={"name": "nope", "photos": [{"name": "a.jpg", "data": ""}]},
        )
        assert unknown.status_code == 404 and "no recipe called" in unknown.json()["text"]
        broken = await bob.post("/api/recipes/apply", content=b"[1, 2")
        assert broken.status_code == 400
