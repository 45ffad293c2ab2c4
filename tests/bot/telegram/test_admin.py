"""Access control and the admin commands on Telegram, end to end.

The real python-telegram-bot Application against the fake Bot API (tests/fakes), on the
production object graph with the NullEditor: allow-list mode refuses strangers once and
stores nothing of theirs, admins allow users and groups, ban and unban, override a quota and
read /stats; everybody else is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Components
from editor.testing.doubles import NullEditor
from storage.models import Conversation, UserLimit
from tests.bot.telegram.test_telegram import (
    TIMEOUT,
    TOKEN,
    jpeg,
    next_photo,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI

ADMIN, STRANGER, FRIEND = 9001, 1002, 1003
GROUP = -100555
SUPERGROUP = {"chat_type": "supergroup"}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def rows_of(components: Components, user_id: int) -> tuple[int, int]:
    """(conversations, limit rows) the database holds for a Telegram user."""
    async with components.database.read() as session:
        conversations = await session.scalar(
            select(func.count()).where(Conversation.user_id == str(user_id))
        )
        limits = await session.scalar(select(func.count()).where(UserLimit.user_id == str(user_id)))
    return conversations or 0, limits or 0


def stored_files(data_dir: Path) -> list[Path]:
    images = data_dir / "images"
    return [p for p in images.rglob("*") if p.is_file()] if images.exists() else []


async def quiet_for(api: FakeBotAPI, chat_id: int, since: int, seconds: float = 0.6) -> None:
    """Nothing was sent to `chat_id` for a while (the bot stays silent)."""
    await asyncio.sleep(seconds)
    sent = api.calls_to("sendMessage", lambda p: int(p["chat_id"]) == chat_id, since=since)
    sent += api.calls_to("sendPhoto", lambda p: int(p["chat_id"]) == chat_id, since=since)
    assert not sent, [c.params for c in sent]


async def test_a_stranger_is_refused_once_and_nothing_is_stored_until_an_admin_allows_them(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = {"access": "allowlist", "admins": [f"telegram:{ADMIN}"]}
    async with running_bot(api, data_dir, NullEditor(), **settings) as components:
        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(), caption="make it night")
        refusal = await next_text(api, STRANGER, since)
        assert refusal == (f"This bot is private. Ask its owner to add you; your id is {STRANGER}.")

        # More photos, text, commands: silence, and still nothing downloaded or stored.
        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(shade=50))
        api.send_text(STRANGER, STRANGER, "add snow")
        api.send_text(STRANGER, STRANGER, "/stats")
        await quiet_for(api, STRANGER, since)
        assert not api.calls_to("getFile")
        assert await rows_of(components, STRANGER) == (0, 0)
        assert stored_files(data_dir) == []

        # The admin (served in allow-list mode without being listed) allows them by id.
        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/allow {STRANGER}")
        assert await next_text(api, ADMIN, since) == f"Allowed telegram:{STRANGER}."

        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(), caption="make it night")
        night = await next_photo(api, STRANGER, since)
        assert "make it night" in (night.caption or "")

        # /deny takes them off the list again (the notice was given already: silence).
        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/deny {STRANGER}")
        assert "no longer on the allow-list" in await next_text(api, ADMIN, since)
        since = len(api.calls)
        api.send_text(STRANGER, STRANGER, "add snow")
        await quiet_for(api, STRANGER, since)


async def test_an_allowed_group_serves_its_members_but_not_their_private_chats(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    settings = {"access": "allowlist", "admins": [f"telegram:{ADMIN}"]}
    async with running_bot(api, tmp_path / "data", NullEditor(), **settings):
        # Plain chatter of strangers in a group is not for the bot: no notice.
        since = len(api.calls)
        api.send_text(GROUP, STRANGER, "hello all", **SUPERGROUP)
        await quiet_for(api, GROUP, since, 0.3)
        # A captioned photo is: one notice, in the group.
        api.send_photo(GROUP, STRANGER, jpeg(), caption="make it night", **SUPERGROUP)
        assert "This bot is private" in await next_text(api, GROUP, since)

        since = len(api.calls)
        api.send_text(GROUP, ADMIN, "/allow@pix2chat_bot here", **SUPERGROUP)
        assert await next_text(api, GROUP, since) == f"Allowed chat telegram:{GROUP}."

        since = len(api.calls)
        api.send_photo(GROUP, STRANGER, jpeg(), caption="make it night", **SUPERGROUP)
        night = await next_photo(api, GROUP, since)
        assert "make it night" in (night.caption or "")
        # Another member of the group is served too.
        since = len(api.calls)
        api.send_photo(GROUP, FRIEND, jpeg(shade=99), caption="add snow", **SUPERGROUP)
        assert "add snow" in ((await next_photo(api, GROUP, since)).caption or "")

        # Their private chat is not the group: refused.
        since = len(api.calls)
        api.send_text(FRIEND, FRIEND, "/start")
        assert "your id is 1003" in await next_text(api, FRIEND, since)


async def test_ban_as_a_reply_in_open_mode_then_unban(api: FakeBotAPI, tmp_path: Path) -> None:
    settings = {"admins": [f"telegram:{ADMIN}"]}  # open mode: everybody is served
    async with running_bot(api, tmp_path / "data", NullEditor(), **settings) as components:
        since = len(api.calls)
        api.send_photo(GROUP, STRANGER, jpeg(), caption="make it night", **SUPERGROUP)
        await next_photo(api, GROUP, since)
        since = len(api.calls)
        rude = api.send_text(GROUP, STRANGER, "@pix2chat_bot make it rude", **SUPERGROUP)
        await next_photo(api, GROUP, since)

        since = len(api.calls)
        api.send_text(
            GROUP,
            ADMIN,
            "/ban",
            reply_to_message_id=rude["message"]["message_id"],
            **SUPERGROUP,
        )
        assert await next_text(api, GROUP, since) == f"Banned telegram:{STRANGER}."

        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(shade=7), caption="again")
        assert "You can't use this bot" in await next_text(api, STRANGER, since)
        assert await rows_of(components, STRANGER) == (1, 1)  # the group's, from before

        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/unban {STRANGER}")
        assert await next_text(api, ADMIN, since) == f"Unbanned telegram:{STRANGER}."
        night = await result_of(api, GROUP, STRANGER, "@pix2chat_bot add snow", **SUPERGROUP)
        assert "add snow" in (night.caption or "")


async def test_a_quota_override_replaces_the_daily_quota(api: FakeBotAPI, tmp_path: Path) -> None:
    settings = {"admins": [f"telegram:{ADMIN}"], "daily_quota": 1}
    async with running_bot(api, tmp_path / "data", NullEditor(), **settings):
        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(), caption="make it night")
        await next_photo(api, STRANGER, since)
        since = len(api.calls)
        api.send_text(STRANGER, STRANGER, "add snow")
        assert "You've used today's 1 edit" in await next_text(api, STRANGER, since)

        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/quota {STRANGER} 3")
        assert await next_text(api, ADMIN, since) == (
            f"telegram:{STRANGER} may now make 3 edits a day."
        )
        for instruction in ("add snow", "add a hat"):
            photo = await result_of(api, STRANGER, STRANGER, instruction)
            assert instruction in (photo.caption or "")
        since = len(api.calls)
        api.send_text(STRANGER, STRANGER, "add a dog")
        assert "You've used today's 3 edits" in await next_text(api, STRANGER, since)

        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/quota {STRANGER} lots")
        assert (await next_text(api, ADMIN, since)).startswith("Usage: /quota <user id>")
        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/quota {STRANGER} 0")
        assert "no daily limit" in await next_text(api, ADMIN, since)
        assert "add a dog" in (
            (await result_of(api, STRANGER, STRANGER, "add a dog")).caption or ""
        )


async def test_stats_for_an_admin_and_a_plain_refusal_for_everybody_else(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    settings = {"admins": [f"telegram:{ADMIN}"]}
    async with running_bot(api, tmp_path / "data", NullEditor(fail_on="explode"), **settings):
        since = len(api.calls)
        api.send_photo(STRANGER, STRANGER, jpeg(), caption="make it night")
        await next_photo(api, STRANGER, since)
        await result_of(api, STRANGER, STRANGER, "add snow")
        since = len(api.calls)
        api.send_photo(FRIEND, FRIEND, jpeg(shade=40), caption="add a hat")
        await next_photo(api, FRIEND, since)
        since = len(api.calls)
        api.send_text(FRIEND, FRIEND, "explode")
        await next_text(api, FRIEND, since, contains="failed")

        since = len(api.calls)
        api.send_text(FRIEND, FRIEND, "/stats")
        assert await next_text(api, FRIEND, since) == "Only the bot's admins can do that."
        for command in (f"/allow {FRIEND}", f"/ban {STRANGER}", f"/quota {FRIEND} 9"):
            since = len(api.calls)
            api.send_text(FRIEND, FRIEND, command)
            assert await next_text(api, FRIEND, since) == "Only the bot's admins can do that."

        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, "/stats")
        text = await next_text(api, ADMIN, since)
        assert text.startswith("Today: 3 edits by 2 active users, 1 failed. Now: 0 waiting")
        assert f"1. telegram:{STRANGER}: 2 edits" in text
        assert f"2. telegram:{FRIEND}: 1 edits" in text
        assert "p50" in text and "GPU time" in text


@pytest.mark.parametrize("target", ["", "someone", "chat:x"])
async def test_a_bad_target_gets_the_usage(api: FakeBotAPI, tmp_path: Path, target: str) -> None:
    settings = {"admins": [f"telegram:{ADMIN}"]}
    async with running_bot(api, tmp_path / "data", NullEditor(), **settings):
        since = len(api.calls)
        api.send_text(ADMIN, ADMIN, f"/allow {target}".strip())
        reply = await asyncio.wait_for(next_text(api, ADMIN, since), TIMEOUT)
        assert reply.startswith("Usage: /allow <user id>")
