"""Variations in the web chat: the JSON of a set (a 2x2 grid of candidates with pick buttons),
picking, another browser's pick refused, Stronger at the edge, and the page's own wiring."""

from __future__ import annotations

from pathlib import Path

from bot.web.render import reply_json
from tests.bot.web.test_web import edited, pixels, upload, web_chat


async def test_variations_pick_and_refusals_over_http(tmp_path: Path) -> None:
    async with (
        web_chat(tmp_path, scorer_model="") as chat,
        chat.browser() as client,
        chat.browser() as stranger,
    ):
        await upload(client)
        night = await edited(chat, client, "make it night")

        queued = await client.post("/api/variations", json={"version_id": night})
        assert queued.status_code == 200, queued.text
        set_id = queued.json()["version_id"]
        await chat.recorder.result(set_id)
        # What the page receives on its event stream, rendered for the grid.
        (_, reply), *_ = [(a, r) for a, r in chat.recorder.replies if r.kind.value == "variations"]
        body = reply_json(reply)
        assert [c["number"] for c in body["candidates"]] == [1, 2, 3, 4]
        assert [c["use"] for c in body["candidates"]] == ["Use 1", "Use 2", "Use 3", "Use 4"]
        third = body["candidates"][2]
        assert third["image"] == f"/api/versions/{third['version_id']}/image"
        assert (await pixels(client, third["version_id"])).size

        # Another browser can neither see nor pick Alice's candidates.
        assert (await stranger.get(third["image"])).status_code == 404
        await upload(stranger)
        refused = await stranger.post("/api/pick", json={"version_id": third["version_id"]})
        assert refused.status_code == 404
        assert (await stranger.post("/api/pick", json={})).status_code == 400

        picked = await client.post("/api/pick", json={"version_id": third["version_id"]})
        assert picked.status_code == 200, picked.text
        assert picked.json()["image"] == third["image"]
        history = (await client.get("/api/history")).json()["history"]
        assert [e["candidate"] for e in history if e["candidate"]] == [1, 2, 4]
        assert next(e for e in history if e["is_head"])["version_id"] == third["version_id"]

        await client.post("/api/undo", json={})
        undone = await client.post("/api/pick", json={"version_id": third["version_id"]})
        assert undone.status_code == 409
        assert "undone" in undone.json()["text"]


async def test_stronger_subtler_and_the_strongest_edge(tmp_path: Path) -> None:
    edge = {"default_guidance_scale": 20.0, "default_image_guidance_scale": 1.0}
    async with web_chat(tmp_path, **edge) as chat, chat.browser() as client:
        await upload(client)
        await edited(chat, client, "make it night")
        refused = await client.post("/api/stronger", json={})
        assert refused.status_code == 409
        assert "already at the strongest setting" in refused.json()["text"].lower()
        softer = await client.post("/api/subtler", json={})
        assert softer.status_code == 200 and "17.5" in softer.json()["text"]


async def test_the_page_knows_the_new_buttons_and_the_grid(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser() as client:
        state = (await client.get("/api/state")).json()
        for key in ("button.variations", "button.stronger", "button.subtler", "button.use"):
            assert key in state["messages"]
        script = (await client.get("/static/app.js")).text
        assert "/api/variations" in script and "/api/pick" in script
        assert "candidateGrid" in script
        style = (await client.get("/static/style.css")).text
        assert "grid-template-columns: 1fr 1fr" in style
