"""Variations on Discord: one message with four attachments and four Use buttons, picks (also
after a restart), someone else's buttons refused; Stronger by slash command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from editor.testing.doubles import NullEditor
from tests.bot.discord.test_discord import (
    ANN,
    BEN,
    CHANNEL,
    GUILD,
    QUIET,
    button,
    buttons,
    image_of,
    jpeg,
    original,
    response_text,
    response_with_image,
    running_bot,
    until,
    upload,
)
from tests.fakes.discord_api import FakeDiscord, GuildSpec


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guild = GuildSpec(GUILD, channels={CHANNEL: "edits", QUIET: "general"})
    async with FakeDiscord(guilds=[guild], users={ANN: "ann", BEN: "ben"}) as server:
        yield server


async def test_variations_in_one_message_with_use_buttons(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with running_bot(fake, data_dir, NullEditor(), scorer_model=""):
        night = await response_with_image(
            fake,
            fake.slash(
                "edit",
                ANN,
                CHANNEL,
                {"instruction": "make it night"},
                attachments={"image": upload(jpeg())},
            ),
        )
        assert {"🔀 Variations", "➕ Stronger", "➖ Subtler"} <= set(buttons(night))

        refused = fake.press(button(night, "variations"), BEN, night.id, CHANNEL)
        await until(lambda: fake.interaction(refused.token).acknowledged)
        assert "Only the person" in (fake.interaction(refused.token).response_data or {}).get(
            "content", ""
        )

        pressed = fake.press(button(night, "variations"), ANN, night.id, CHANNEL)
        grid = await until(
            lambda: (m := original(fake, pressed)) is not None and len(m.attachments) == 4 and m
        )
        assert list(buttons(grid)) == ["Use 1", "Use 2", "Use 3", "Use 4"]
        assert len({a.data for a in grid.attachments}) == 4
        assert "Tap Use" in grid.content

    async with running_bot(fake, data_dir, NullEditor(), scorer_model=""):  # restart
        refused = fake.press(button(grid, "use 2"), BEN, grid.id, CHANNEL)
        await until(lambda: fake.interaction(refused.token).acknowledged)
        assert "Only the person" in (fake.interaction(refused.token).response_data or {}).get(
            "content", ""
        )
        picked = await response_with_image(
            fake, fake.press(button(grid, "use 2"), ANN, grid.id, CHANNEL)
        )
        assert "candidate 2" in picked.content
        assert image_of(picked) == grid.attachments[1].data

        listing = await response_text(fake, fake.slash("history", ANN, CHANNEL), "make it night")
        assert "also candidate" in listing
        stronger = await response_with_image(fake, fake.slash("stronger", ANN, CHANNEL))
        assert "text guidance 10.0" in stronger.content
