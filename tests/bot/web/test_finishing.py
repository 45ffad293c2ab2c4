"""/upscale, /cutout and /white in the web chat: typed commands and the Upscale button,
through the real Starlette app on the production object graph with tiny finishing models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from editor.finishing.provenance import verify
from tests.bot.web.test_web import edited, upload, web_chat


def product(size: tuple[int, int] = (320, 256)) -> bytes:
    image = Image.new("RGB", size, (20, 190, 40))
    w, h = size
    image.paste((220, 30, 30), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_finishing_in_the_web_chat(
    tmp_path: Path, tiny_esrgan_2x: Path, tiny_matting: Path
) -> None:
    async with (
        web_chat(
            tmp_path, upscaler_model=str(tiny_esrgan_2x), matting_model=str(tiny_matting)
        ) as chat,
        chat.browser() as client,
    ):
        await upload(client, product())
        night = await edited(chat, client, "make it night")
        done = (await chat.recorder.result(night)).key
        assert done == "edit.done"

        # The Upscale button of a result.
        response = await client.post("/api/upscale", json={"version_id": night})
        assert response.status_code == 200, response.text
        assert response.json()["key"] in ("finish.queued", "finish.queued_next")
        upscaled = int(response.json()["version_id"])
        assert (await chat.recorder.result(upscaled)).key == "finish.done_upscale"
        full = await client.get(f"/api/versions/{upscaled}/full")
        assert decode(full.content).size == (640, 512)
        assert verify(full.content).manifest is not None

        # Typed commands, branching from the edit as the page does after a click.
        response = await client.post(
            "/api/instruct", json={"text": "/cutout", "base_version_id": night}
        )
        body = response.json()
        assert body["key"] in ("finish.queued", "finish.queued_next"), body
        cut = int(body["version_id"])
        result = await chat.recorder.result(cut)
        assert result.key == "finish.done_cutout" and result.document
        png = decode((await client.get(f"/api/versions/{cut}/full")).content)
        assert png.mode == "RGBA" and np.asarray(png.getchannel("A"))[0].max() == 0
        chat_copy = decode((await client.get(f"/api/versions/{cut}/image")).content)
        assert np.asarray(chat_copy.convert("RGB"))[:4, :4].min() > 200  # on a light ground

        response = await client.post("/api/instruct", json={"text": "/white square"})
        white = int(response.json()["version_id"])
        assert "already a cut-out" in response.json()["text"]
        assert (await chat.recorder.result(white)).key == "finish.done_white"
        square = decode((await client.get(f"/api/versions/{white}/full")).content)
        assert square.width == square.height
        assert (np.asarray(square.convert("RGB"))[0] == 255).all()

        # Bad input answers in words, with a 4xx, and nothing is queued.
        response = await client.post("/api/instruct", json={"text": "/upscale 3x"})
        assert response.status_code == 400
        assert "/upscale 4x" in response.json()["text"]

        # Another browser cannot upscale this one's versions.
        async with chat.browser() as other:
            await upload(other)
            response = await other.post("/api/upscale", json={"version_id": night})
            assert response.status_code == 404
