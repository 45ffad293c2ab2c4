"""Discord in the user's language, end to end against the fake: the interaction's locale,
/language overriding it (also for plain messages, which carry no locale), and slash-command
descriptions localized through discord.py's Translator.

Discord's clients have no Arabic locale: Arabic readers choose it with /language ar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.service.messages import Key, render
from editor.testing.doubles import NullEditor
from tests.bot.discord.test_discord import (
    ANN,
    BEN,
    CHANNEL,
    QUIET,
    jpeg,
    response_text,
    response_with_image,
    running_bot,
    until,
    upload,
)
from tests.fakes.discord_api import FakeDiscord, GuildSpec

GUILD = 111


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guild = GuildSpec(GUILD, channels={CHANNEL: "edits", QUIET: "general"})
    async with FakeDiscord(guilds=[guild], users={ANN: "ann", BEN: "ben"}) as server:
        yield server


async def test_the_interaction_locale_picks_the_language(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        spanish = fake.slash("undo", ANN, QUIET, locale="es-ES")
        expected = render(Key.ERROR_NO_IMAGE, locale="es")
        assert await response_text(fake, spanish, expected) == expected

        started = fake.slash(
            "edit",
            BEN,
            QUIET,
            {"instruction": "make it night"},
            attachments={"image": upload(jpeg())},
            locale="es-419",
        )
        night = await response_with_image(fake, started)
        assert night.content.startswith("“make it night” (semilla ")
        labels = {b.get("label") for row in night.components for b in row.get("components", [])}
        assert render(Key.BUTTON_UNDO, locale="es") in labels

        english = fake.slash("undo", ANN, QUIET, locale="en-GB")
        text = await response_text(fake, english, render(Key.ERROR_NO_IMAGE, locale="en"))
        assert text == render(Key.ERROR_NO_IMAGE, locale="en")


async def test_language_overrides_the_locale_and_reaches_plain_messages(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        unknown = fake.slash("language", ANN, QUIET, {"code": "xx"}, locale="es-ES")
        text = await response_text(fake, unknown, "xx")
        assert text.startswith("No hablo “xx”.")

        chosen = fake.slash("language", ANN, QUIET, {"code": "ar"}, locale="es-ES")
        assert await response_text(fake, chosen, "العربية") == (
            "من الآن فصاعدًا أجيبك باللغة العربية."
        )
        undo = fake.slash("undo", ANN, QUIET, locale="es-ES")
        expected = render(Key.ERROR_NO_IMAGE, locale="ar")
        assert await response_text(fake, undo, expected) == expected

        # a plain message has no locale: the stored choice words the answer
        fake.send_message(CHANNEL, ANN, "add snow")
        await until(lambda: any(m.content == expected for m in fake.messages(CHANNEL)))

        listed = fake.slash("language", ANN, QUIET, locale="es-ES")
        listing = await response_text(fake, listed, "es (español)")
        assert listing.startswith("أجيبك باللغة العربية.")


async def test_slash_command_descriptions_are_localized(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path / "data", NullEditor()):
        commands = {command["name"]: command for command in fake.commands()}
        undo = commands["undo"]
        assert undo["description"] == "Back to the previous version"
        localized = undo["description_localizations"]
        assert localized["es-ES"] == localized["es-419"] == "Volver a la versión anterior"
        assert "en-GB" not in localized  # English is the default description
        language = commands["language"]
        assert language["description_localizations"]["es-ES"] == render(
            Key.COMMAND_LANGUAGE, locale="es"
        )
        [code] = language["options"]
        assert code["description_localizations"]["es-419"] == render(Key.OPTION_CODE, locale="es")
        steps = next(o for o in commands["settings"]["options"] if o["name"] == "steps")
        assert (
            steps["description_localizations"]["es-ES"] == "Pasos de eliminación de ruido (1-100)"
        )
