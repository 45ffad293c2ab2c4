"""Discord pieces that need no gateway: button ids, intents, settings parsing."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.discord import views
from bot.discord.client import intents_for


def test_button_ids_round_trip_and_reject_foreign_ids() -> None:
    custom = views.custom_id("undo", 42, "1001")
    assert views.parse(custom) == ("undo", 42, "1001")
    assert len(custom) <= 100  # Discord's custom_id limit
    for foreign in (None, "", "undo:42:1001", "p2c:undo:x:1001", "p2c:undo:42:alice"):
        assert views.parse(foreign) is None


def test_message_content_intent_only_when_channels_take_plain_messages() -> None:
    assert not intents_for(Settings(_env_file=None)).message_content  # type: ignore[call-arg]
    chatty = Settings(_env_file=None, discord_channel_ids=[5])  # type: ignore[call-arg]
    assert intents_for(chatty).message_content
    assert intents_for(chatty).guilds and intents_for(chatty).dm_messages


def test_id_lists_accept_commas_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIX2CHAT_DISCORD_GUILD_IDS", "12, 34")
    monkeypatch.setenv("PIX2CHAT_DISCORD_CHANNEL_IDS", "[5,6]")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.discord_guild_ids == [12, 34]
    assert settings.discord_channel_ids == [5, 6]
    monkeypatch.setenv("PIX2CHAT_DISCORD_GUILD_IDS", "twelve")
    with pytest.raises(ValueError, match="discord_guild_ids"):
        Settings(_env_file=None)  # type: ignore[call-arg]
