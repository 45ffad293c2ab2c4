"""Access control and the admin commands on Discord, end to end.

A real discord.py client against the fake Discord (tests/fakes) on the production object
graph with the NullEditor: allow-list mode refuses strangers once (messages, slash commands,
buttons) and downloads nothing of theirs; admins allow users and servers, ban and unban,
override a quota and read /stats; everybody else is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Components
from editor.testing.doubles import NullEditor
from storage.models import Conversation
from tests.bot.discord.test_discord import (
    CHANNEL,
    GUILD,
    QUIET,
    jpeg,
    original,
    response_text,
    response_with_image,
    running_bot,
    until,
    upload,
)
from tests.fakes.discord_api import FakeDiscord, FakeInteraction, GuildSpec

ADMIN, STRANGER, FRIEND = 701, 702, 703
OTHER_GUILD, OTHER_CHANNEL = 444, 555


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    guilds = [
        GuildSpec(GUILD, channels={CHANNEL: "edits", QUIET: "general"}),
        GuildSpec(OTHER_GUILD, channels={OTHER_CHANNEL: "other"}),
    ]
    users = {ADMIN: "admin", STRANGER: "stranger", FRIEND: "friend"}
    async with FakeDiscord(guilds=guilds, users=users) as server:
        yield server


async def conversations_of(components: Components, user_id: int) -> int:
    async with components.database.read() as session:
        found = await session.scalar(
            select(func.count()).where(Conversation.user_id == str(user_id))
        )
    return found or 0


def is_ephemeral(fake: FakeDiscord, interaction: FakeInteraction) -> bool:
    message = original(fake, interaction)
    return message is not None and message.ephemeral


def texts(fake: FakeDiscord, channel_id: int, contains: str) -> list[str]:
    return [m.content for m in fake.messages(channel_id) if contains in m.content]


async def test_a_stranger_is_refused_once_with_nothing_downloaded_until_allowed(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = {"access": "allowlist", "admins": [f"discord:{ADMIN}"]}
    async with running_bot(fake, data_dir, NullEditor(), **settings) as components:
        since = fake.mark()
        fake.send_message(CHANNEL, STRANGER, "make it night", attachments=[upload(jpeg())])
        await until(lambda: texts(fake, CHANNEL, "This bot is private"))
        assert texts(fake, CHANNEL, "This bot is private") == [
            f"This bot is private. Ask its owner to add you; your id is {STRANGER}."
        ]
        # Again, by message and by slash command: silence, nothing downloaded or stored.
        fake.send_message(CHANNEL, STRANGER, "", attachments=[upload(jpeg(shade=3))])
        silent = fake.slash("edit", STRANGER, QUIET, attachments={"image": upload(jpeg())})
        await asyncio.sleep(0.6)
        assert len(texts(fake, CHANNEL, "This bot is private")) == 1
        assert not fake.interaction(silent.token).acknowledged
        assert not fake.find("GET", r"/attachments/.*", since=since)
        assert await conversations_of(components, STRANGER) == 0
        assert not (data_dir / "images").exists() or not any((data_dir / "images").rglob("*.*"))

        allowed = fake.slash("allow", ADMIN, QUIET, {"target": f"<@{STRANGER}>"})
        assert await response_text(fake, allowed, "Allowed") == f"Allowed discord:{STRANGER}."
        assert is_ephemeral(fake, allowed)

        started = fake.slash(
            "edit",
            STRANGER,
            QUIET,
            {"instruction": "make it night"},
            attachments={"image": upload(jpeg())},
        )
        assert "make it night" in (await response_with_image(fake, started)).content


async def test_an_allowed_server_serves_its_members(fake: FakeDiscord, tmp_path: Path) -> None:
    settings = {"access": "allowlist", "admins": [f"discord:{ADMIN}"]}
    async with running_bot(fake, tmp_path / "data", NullEditor(), **settings):
        refused = fake.slash("status", FRIEND, QUIET)
        text = await response_text(fake, refused, "private")
        assert f"your id is {FRIEND}" in text and is_ephemeral(fake, refused)

        here = fake.slash("allow", ADMIN, QUIET, {"target": "here"})
        assert await response_text(fake, here, "Allowed") == f"Allowed server discord:{GUILD}."

        started = fake.slash(
            "edit",
            FRIEND,
            QUIET,
            {"instruction": "add snow"},
            attachments={"image": upload(jpeg())},
        )
        assert "add snow" in (await response_with_image(fake, started)).content
        # Another server is not allowed.
        other = fake.slash("status", STRANGER, OTHER_CHANNEL)
        assert "private" in await response_text(fake, other, "private")


async def test_ban_unban_quota_and_stats(fake: FakeDiscord, tmp_path: Path) -> None:
    settings = {"admins": [f"discord:{ADMIN}"], "daily_quota": 1}
    async with running_bot(fake, tmp_path / "data", NullEditor(), **settings):
        night = fake.slash(
            "edit",
            STRANGER,
            QUIET,
            {"instruction": "make it night"},
            attachments={"image": upload(jpeg())},
        )
        result = await response_with_image(fake, night)

        # Non-admins get a plain refusal for every admin command.
        for name, options in [
            ("stats", {}),
            ("ban", {"user": str(FRIEND)}),
            ("quota", {"user": str(STRANGER), "edits": "50"}),
        ]:
            refused = fake.slash(name, STRANGER, QUIET, options)
            assert await response_text(fake, refused, "admins") == (
                "Only the bot's admins can do that."
            )

        banned = fake.slash("ban", ADMIN, QUIET, {"user": str(STRANGER)})
        assert await response_text(fake, banned, "Banned") == f"Banned discord:{STRANGER}."
        # A ban works in open mode, for messages and for buttons on old results.
        fake.send_message(CHANNEL, STRANGER, "add snow")
        await until(lambda: texts(fake, CHANNEL, "You can't use this bot"))
        pressed = fake.press(
            next(c for label, c in _buttons(result).items() if "Regenerate" in label),
            STRANGER,
            result.id,
            QUIET,
        )
        await asyncio.sleep(0.4)
        assert not fake.interaction(pressed.token).acknowledged  # silence after the notice

        unbanned = fake.slash("unban", ADMIN, QUIET, {"user": f"<@!{STRANGER}>"})
        assert "Unbanned" in await response_text(fake, unbanned, "Unbanned")
        quota = fake.slash("instruct", STRANGER, QUIET, {"text": "add snow"})
        assert "today's 1 edit" in await response_text(fake, quota, "today's")

        more = fake.slash("quota", ADMIN, QUIET, {"user": str(STRANGER), "edits": "5"})
        assert await response_text(fake, more, "edits a day") == (
            f"discord:{STRANGER} may now make 5 edits a day."
        )
        snow = fake.slash("instruct", STRANGER, QUIET, {"text": "add snow"})
        assert "add snow" in (await response_with_image(fake, snow)).content

        stats = fake.slash("stats", ADMIN, QUIET)
        text = await response_text(fake, stats, "Today")
        assert text.startswith("Today: 2 edits by 1 active users, 0 failed. Now: 0 waiting")
        assert f"1. discord:{STRANGER}: 2 edits" in text
        assert is_ephemeral(fake, stats)


def _buttons(message: object) -> dict[str, str]:
    return {
        button.get("label", ""): button["custom_id"]
        for row in message.components  # type: ignore[attr-defined]
        for button in row.get("components", [])
    }
