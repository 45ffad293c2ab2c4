"""Recipes on Discord end to end: `/recipe` with several attachments, the message flow's
`/recipe NAME` with attached photos, export and import, and bad input."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from editor.testing.doubles import NullEditor
from tests.bot.discord.test_discord import (
    ANN,
    CHANNEL,
    GUILD,
    QUIET,
    decode,
    jpeg,
    response_text,
    running_bot,
    until,
    upload,
)
from tests.fakes.discord_api import FakeDiscord, GuildSpec


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guild = GuildSpec(GUILD, channels={CHANNEL: "edits", QUIET: "general"})
    async with FakeDiscord(guilds=[guild], users={ANN: "ann"}) as server:
        yield server


async def _save_winter(fake: FakeDiscord) -> None:
    await response_text(
        fake,
        fake.slash(
            "edit",
            ANN,
            QUIET,
            {"instruction": "make it night"},
            attachments={"image": upload(jpeg())},
        ),
        "seed",  # the result, not the queued note
    )
    await response_text(fake, fake.slash("instruct", ANN, QUIET, {"text": "add snow"}), "seed")
    saved = await response_text(
        fake, fake.slash("recipe", ANN, QUIET, {"command": "save winter"}), "Saved"
    )
    assert "(2 steps" in saved


def _zips(fake: FakeDiscord, channel: int) -> list[bytes]:
    return [
        a.data for m in fake.messages(channel) for a in m.attachments if a.filename.endswith(".zip")
    ]


async def test_slash_recipe_with_several_attachments(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        await _save_winter(fake)
        sizes = [(320, 240), (400, 300), (240, 360)]
        started = fake.slash(
            "recipe",
            ANN,
            QUIET,
            {"command": "winter"},
            attachments={
                f"photo{i + 1}": upload(jpeg(size, shade=i * 40), name=f"p{i}.jpg")
                for i, size in enumerate(sizes)
            },
        )
        status = await response_text(fake, started, "photos done")
        assert "Applying “winter” to 3 photo(s)" in status
        [archive] = await until(lambda: _zips(fake, QUIET))
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            assert [decode(zipped.read(n)).size for n in zipped.namelist()] == sizes
        pictures = [
            a
            for m in fake.messages(QUIET)
            for a in m.attachments
            if a.filename.startswith("pix2chat-") and a.filename.endswith(".jpg")
        ]
        assert len(pictures) >= 3  # the three results, attached together
        final = await response_text(fake, started, "finished")
        assert "3 of 3 photos done" in final


async def test_message_flow_export_import_and_bad_input(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        await _save_winter(fake)
        fake.send_message(
            CHANNEL,
            ANN,
            "/recipe winter",
            attachments=[upload(jpeg((300, 200)), "a.jpg"), upload(jpeg((200, 300), 9), "b.jpg")],
        )
        await until(lambda: any("Applying" in m.content for m in fake.messages(CHANNEL)))
        [archive] = await until(lambda: _zips(fake, CHANNEL))
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            assert len(zipped.namelist()) == 2

        exported = fake.slash("recipe", ANN, QUIET, {"command": "export winter"})
        await response_text(fake, exported, "Send this file back")
        [recipe_file] = await until(
            lambda: [
                a
                for m in fake.messages(QUIET)
                for a in m.attachments
                if a.filename.endswith(".recipe.json")
            ]
        )
        document = json.loads(recipe_file.data)
        document["name"] = "winter2"
        fake.send_message(
            CHANNEL,
            ANN,
            "",
            attachments=[
                ("w2.json", json.dumps(document).encode(), "application/json", None, None)
            ],
        )
        await until(
            lambda: any("Imported recipe “winter2”" in m.content for m in fake.messages(CHANNEL))
        )

        fake.send_message(CHANNEL, ANN, "/recipe nope", attachments=[upload(jpeg(), "c.jpg")])
        await until(
            lambda: any("no recipe called “nope”" in m.content for m in fake.messages(CHANNEL))
        )
        fake.send_message(
            CHANNEL, ANN, "", attachments=[("bad.json", b"{oops", "application/json", None, None)]
        )
        await until(
            lambda: any("not a recipe I can use" in m.content for m in fake.messages(CHANNEL))
        )
        listing = await response_text(fake, fake.slash("recipes", ANN, QUIET), "recipes")
        assert "winter: 2 steps" in listing and "winter2: 2 steps" in listing
