"""/upscale, /cutout, /white and provenance end to end on Telegram (fake Bot API, real
python-telegram-bot, production object graph with tiny finishing models)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from editor.finishing.provenance import verify
from editor.testing.doubles import NullEditor
from tests.bot.telegram.test_telegram import (
    ALICE,
    api,
    button_data,
    buttons,
    decode,
    next_photo,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI

__all__ = ["api"]


def product(size: tuple[int, int] = (320, 256)) -> bytes:
    image = Image.new("RGB", size, (20, 190, 40))
    w, h = size
    image.paste((220, 30, 30), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def test_upscale_cutout_white_and_provenance(
    api: FakeBotAPI,
    tmp_path: Path,
    tiny_esrgan_2x: Path,
    tiny_matting: Path,
) -> None:
    async with running_bot(
        api,
        tmp_path / "data",
        NullEditor(),
        upscaler_model=str(tiny_esrgan_2x),
        matting_model=str(tiny_matting),
    ):
        since = len(api.calls)
        api.send_document(ALICE, ALICE, product(), file_name="p.png", mime_type="image/png")
        assert "Got your photo" in await next_text(api, ALICE, since)

        # An edit's result offers Upscale; the button upscales that version.
        night = await result_of(api, ALICE, ALICE, "make it night")
        assert "🔍 Upscale" in buttons(night)
        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "upscale"))
        upscaled = await next_photo(api, ALICE, since)
        assert upscaled.caption == "Upscaled 2x."
        assert decode(api.photo_bytes(upscaled)).size == (640, 512)
        assert {"↩ Undo", "⬇ Full resolution"} <= set(buttons(upscaled))

        # Full resolution files carry the manifest and the watermark. (The tiny random
        # upscaler's output is nearly black: too dark to hold a watermark, so the edit's file
        # is the one checked for it.)
        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "full"))
        document = await api.wait_for("sendDocument", since=since)
        findings = verify(document.files[next(iter(document.files))])
        assert findings.manifest is not None and findings.watermark
        since = len(api.calls)
        api.press_button(ALICE, ALICE, upscaled.message_id, button_data(upscaled, "full"))
        document = await api.wait_for("sendDocument", since=since)
        findings = verify(document.files[next(iter(document.files))])
        assert any("edited by instruction" in action for action in findings.actions)
        assert any("upscaled 2x" in action for action in findings.actions)

        # /cutout in reply to the edit (a branch): a PNG document with transparency, not a
        # (flattened) photo.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/cutout", reply_to_message_id=night.message_id)
        sent = await api.wait_for("sendDocument", since=since)
        cut = decode(sent.files[next(iter(sent.files))])
        assert (cut.format, cut.mode) == ("PNG", "RGBA")
        assert np.asarray(cut.getchannel("A"))[0].max() == 0
        assert "transparent" in str(sent.params.get("caption"))
        assert not api.calls_to("sendPhoto", since=since)

        # /white square on the cut-out: its transparency is used; a 1:1 white canvas.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/white square")
        assert "already a cut-out" in await next_text(api, ALICE, since, contains="On it")
        white = decode(api.photo_bytes(await next_photo(api, ALICE, since)))
        assert white.width == white.height
        assert np.asarray(white.convert("RGB"))[:3].min() >= 250  # JPEG chat copy: near white

        # Bad input: a friendly sentence, the chat still works.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/upscale 3x")
        assert "/upscale 4x" in await next_text(api, ALICE, since)
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/undo")
        await next_photo(api, ALICE, since)
