"""/keep, /only and /regions as Discord slash commands end to end: a real discord.py client
against the fake Discord, the production graph with a tiny random CLIPSeg loaded through the
production loader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from editor.testing.doubles import NullEditor
from tests.bot.discord.test_discord import (
    ANN,
    QUIET,
    fake,  # noqa: F401 (the fake Discord fixture)
    jpeg,
    response_text,
    response_with_image,
    running_bot,
    upload,
)
from tests.fakes.discord_api import FakeDiscord


async def test_keep_and_only_slash_commands_with_a_region_option(
    fake: FakeDiscord,  # noqa: F811
    tmp_path: Path,
    tiny_clipseg_dir: Path,
) -> None:
    settings = {"segmenter_model": str(tiny_clipseg_dir), "device": "cpu"}
    async with running_bot(fake, tmp_path / "data", NullEditor(), **settings):
        commands = {command["name"]: command for command in fake.commands()}
        for name in ("keep", "only"):
            options = commands[name].get("options", [])
            assert [(o["name"], o.get("required")) for o in options] == [("region", True)]
        assert "regions" in commands

        started = fake.slash("edit", ANN, QUIET, attachments={"image": upload(jpeg())})
        await response_text(fake, started, "photo")
        kept = await response_with_image(
            fake, fake.slash("keep", ANN, QUIET, {"region": "the logo"})
        )
        assert "the logo" in kept.content and "/keep off" in kept.content
        with Image.open(io.BytesIO(kept.attachments[0].data)) as preview:
            assert preview.size == (320, 240)
            assert np.asarray(preview).std() > 0

        empty = fake.slash("only", ANN, QUIET, {"region": "“ ”"})
        assert "/keep the logo" in await response_text(fake, empty, "/keep the logo")

        listing = fake.slash("regions", ANN, QUIET)
        assert "the logo" in await response_text(fake, listing, "the logo")

        off = fake.slash("keep", ANN, QUIET, {"region": "off"})
        assert "no longer" in await response_text(fake, off, "no longer")
