"""/upscale, /cutout and /white as Discord slash commands end to end: a real discord.py client
against the fake Discord, the production graph with the tiny finishing models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from editor.testing.doubles import NullEditor
from tests.bot.discord.test_discord import (
    ANN,
    QUIET,
    fake,  # noqa: F401 (the fake Discord fixture)
    original,
    response_text,
    running_bot,
    until,
    upload,
)
from tests.fakes.discord_api import FakeDiscord, FakeMessage


async def result_of(fake: FakeDiscord, interaction: Any) -> FakeMessage:  # noqa: F811
    """The result with its picture: in the command's response, or (when it finished before the
    "queued" answer was shown) a message of its own in the channel."""
    before = {message.id for message in fake.messages(QUIET)}

    def found() -> FakeMessage | None:
        answer = original(fake, interaction)
        if answer is not None and answer.attachments:
            return answer
        later = [m for m in fake.messages(QUIET) if m.id not in before and m.attachments]
        return later[-1] if later else None

    return await until(found)


def product(size: tuple[int, int] = (320, 256)) -> bytes:
    """A red product on a green studio background, as a PNG."""
    image = Image.new("RGB", size, (20, 190, 40))
    w, h = size
    image.paste((220, 30, 30), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def test_upscale_cutout_and_white_slash_commands(
    fake: FakeDiscord,  # noqa: F811
    tmp_path: Path,
    tiny_esrgan_2x: Path,
    tiny_matting: Path,
) -> None:
    settings = {"upscaler_model": str(tiny_esrgan_2x), "matting_model": str(tiny_matting)}
    async with running_bot(fake, tmp_path / "data", NullEditor(), **settings):
        commands = {command["name"]: command for command in fake.commands()}
        assert [o["name"] for o in commands["upscale"].get("options", [])] == ["scale"]
        assert [o["name"] for o in commands["white"].get("options", [])] == ["square"]
        assert "cutout" in commands

        photo = upload(product(), name="p.png", kind="image/png")
        started = fake.slash("edit", ANN, QUIET, attachments={"image": photo})
        await response_text(fake, started, "photo")

        bad = fake.slash("upscale", ANN, QUIET, {"scale": "3x"})
        assert "4x" in await response_text(fake, bad, "4x")

        cut = await result_of(fake, fake.slash("cutout", ANN, QUIET))
        assert cut.attachments[0].filename.endswith(".png")
        with Image.open(io.BytesIO(cut.attachments[0].data)) as cutout:
            assert cutout.mode == "RGBA"
            alpha = np.asarray(cutout)[..., 3]
            assert alpha[0, 0] == 0 and alpha.max() == 255  # a transparent border, a subject

        white = await result_of(fake, fake.slash("white", ANN, QUIET, {"square": True}))
        with Image.open(io.BytesIO(white.attachments[0].data)) as on_white:
            width, height = on_white.size
            assert abs(width - height) <= 1
            corner = np.asarray(on_white.convert("RGB"))[0, 0]
            assert corner.min() >= 250  # white (a JPEG chat copy: within rounding)

        # Last: the tiny random upscaler's output is near black (no subject to cut out).
        upscaled = await result_of(fake, fake.slash("upscale", ANN, QUIET))
        assert "2x" in upscaled.content
        with Image.open(io.BytesIO(upscaled.attachments[0].data)) as chat_copy:
            assert abs(chat_copy.size[0] / chat_copy.size[1] - 1) < 0.01  # the square one, 2x
