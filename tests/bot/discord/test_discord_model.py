"""/model on Discord: list, switch per user, a bad name answered, the choice reaching edits."""

from __future__ import annotations

from pathlib import Path

from editor.testing.doubles import GatedEditor
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

MODELS = "ip2p=timbrooks/instruct-pix2pix,kontext=black-forest-labs/FLUX.1-Kontext-dev"


async def test_model_lists_switches_and_reaches_the_edit(
    fake: FakeDiscord,  # noqa: F811
    tmp_path: Path,
) -> None:
    editor = GatedEditor()
    async with running_bot(fake, tmp_path / "data", editor, models=MODELS):
        assert "model" in {command["name"] for command in fake.commands()}
        listing = await response_text(fake, fake.slash("model", ANN, QUIET), "Models here")
        assert "ip2p, kontext" in listing
        bad = await response_text(fake, fake.slash("model", ANN, QUIET, {"name": "x"}), "model")
        assert "one of ip2p, kontext" in bad
        picked = await response_text(
            fake, fake.slash("model", ANN, QUIET, {"name": "kontext"}), "kontext"
        )
        assert "model is now kontext" in picked
        await response_text(
            fake,
            fake.slash("edit", ANN, QUIET, attachments={"image": upload(jpeg())}),
            "Got your photo",
        )
        await response_with_image(
            fake, fake.slash("instruct", ANN, QUIET, {"text": "make it night"})
        )
    assert editor.calls[-1][0].params.model == "kontext"
