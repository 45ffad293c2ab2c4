"""Picking the model in the web chat: the settings API takes `model`, per browser."""

from __future__ import annotations

from pathlib import Path

from editor.testing.doubles import GatedEditor
from tests.bot.web.test_web import edited, upload, web_chat

MODELS = "ip2p=timbrooks/instruct-pix2pix,kontext=black-forest-labs/FLUX.1-Kontext-dev"


async def test_a_browser_picks_its_model_and_its_edits_use_it(tmp_path: Path) -> None:
    editor = GatedEditor()
    async with (
        web_chat(tmp_path, editor=editor, models=MODELS) as chat,
        chat.browser() as alice,
        chat.browser() as bob,
    ):
        assert (await alice.get("/api/settings")).json()["settings"]["model"] == "ip2p"
        bad = await alice.post("/api/settings", json={"name": "model", "value": "midjourney"})
        assert bad.status_code == 400 and "ip2p, kontext" in bad.json()["text"]
        picked = await alice.post("/api/settings", json={"name": "model", "value": "Kontext"})
        assert picked.status_code == 200 and picked.json()["settings"]["model"] == "kontext"

        for browser in (alice, bob):
            await upload(browser)
            await edited(chat, browser, "make it night")
        assert [call[0].params.model for call in editor.calls] == ["kontext", "ip2p"]

        # Back to the defaults: the default model again.
        reset = await alice.post("/api/settings/reset")
        assert reset.json()["settings"]["model"] == "ip2p"


async def test_one_model_has_no_model_setting_and_says_so(tmp_path: Path) -> None:
    async with web_chat(tmp_path, editor=GatedEditor()) as chat, chat.browser() as client:
        assert "model" not in (await client.get("/api/settings")).json()["settings"]
        refused = await client.post("/api/settings", json={"name": "model", "value": "kontext"})
        assert refused.status_code == 400 and refused.json()["key"] == "error.one_model"
