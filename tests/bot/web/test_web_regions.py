"""/keep, /only and /regions in the web chat over HTTP, on the production graph with the tiny
random CLIPSeg loaded by the production loader (PIX2CHAT_SEGMENTER_MODEL=<its folder>)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from storage.models import VersionRegion
from tests.bot.service.harness import photo
from tests.bot.web.test_web import edited, pixels, upload, web_chat


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


async def test_keep_only_and_regions_in_the_web_chat(
    tmp_path: Path, tiny_clipseg_dir: Path
) -> None:
    settings = {"segmenter_model": str(tiny_clipseg_dir), "device": "cpu"}
    async with web_chat(tmp_path, **settings) as chat, chat.browser() as client:
        root = (await upload(client, photo((320, 240))))["version_id"]

        # Bad input first: no words, an unknown kind.
        empty = await client.post("/api/regions", json={"kind": "keep", "text": "  "})
        assert empty.status_code == 400 and empty.json()["key"] == "region.usage"
        odd = await client.post("/api/regions", json={"kind": "maybe", "text": "the logo"})
        assert odd.status_code == 400
        assert (await client.get("/api/regions")).json()["key"] == "region.none"

        keep = await client.post("/api/regions", json={"kind": "keep", "text": "the logo"})
        assert keep.status_code == 200, keep.text
        body = keep.json()
        assert body["kind"] == "region" and "the logo" in body["text"]
        assert body["image"].startswith("data:image/jpeg;base64,")
        preview = decode(base64.b64decode(body["image"].split(",", 1)[1]))
        assert preview.shape == (240, 320, 3)

        version_id = await edited(chat, client, "make it night")
        original = np.asarray((await pixels(client, root, "full")).convert("RGB"))
        result = np.asarray((await pixels(client, version_id, "full")).convert("RGB"))
        async with chat.components.database.read() as session:
            (region,) = (
                await session.scalars(
                    select(VersionRegion).where(VersionRegion.version_id == version_id)
                )
            ).all()
        assert (region.kind, region.text) == ("keep", "the logo") and region.mask_sha
        kept = decode(chat.components.images.get(region.mask_sha))[..., 0] > 0
        assert 0.01 < kept.mean() < 0.99
        assert np.array_equal(result[kept], original[kept])
        assert np.any(result[~kept] != original[~kept])

        only = await client.post("/api/regions", json={"kind": "only", "text": "the sky"})
        assert only.status_code == 200 and "keeping wins" in only.json()["text"]
        listing = (await client.get("/api/regions")).json()["text"]
        assert "the logo" in listing and "the sky" in listing

        off = await client.post("/api/regions", json={"kind": "keep", "text": "off"})
        assert off.status_code == 200 and "no longer" in off.json()["text"]
        listing = (await client.get("/api/regions")).json()["text"]
        assert "the logo" not in listing and "the sky" in listing


async def test_the_page_offers_the_region_controls_next_to_the_input(tmp_path: Path) -> None:
    async with web_chat(tmp_path) as chat, chat.browser(session=False) as client:
        page = (await client.get("/")).text
        composer = page[
            page.index('id="composer"') : page.index("</form>", page.index('id="composer"'))
        ]
        for control in ("region-keep", "region-only", "region-show", "region-keep-off"):
            assert f'id="{control}"' in composer
        script = (await client.get("/static/app.js")).text
        assert "/api/regions" in script
