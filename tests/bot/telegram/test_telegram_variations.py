"""Variations, Stronger / Subtler on Telegram: one media group of four plus "Use 1".."Use 4",
picks by button (also after a restart), someone else's buttons refused, and the edge of the
guidance range, through the fake Bot API and the real python-telegram-bot code paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from editor.testing.doubles import NullEditor
from tests.bot.telegram.test_telegram import (
    ALICE,
    BOB,
    GROUP,
    TIMEOUT,
    TOKEN,
    button_data,
    buttons,
    jpeg,
    next_photo,
    next_text,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI, SentMessage

GROUP_CHAT = {"chat_type": "supergroup"}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def variations_message(
    api: FakeBotAPI, chat_id: int, since: int
) -> tuple[list[SentMessage], SentMessage]:
    """The media group of a set and the message with its Use buttons that follows it."""
    group_call = await api.wait_for(
        "sendMediaGroup", lambda p: int(p["chat_id"]) == chat_id, timeout=TIMEOUT, since=since
    )
    assert group_call.ok, group_call.response
    ids = {m["message_id"] for m in group_call.result}
    pictures = [m for m in api.sent(chat_id) if m.message_id in ids]
    use_call = await api.wait_for(
        "sendMessage",
        lambda p: int(p["chat_id"]) == chat_id and "Tap Use" in str(p.get("text", "")),
        timeout=TIMEOUT,
        since=since,
    )
    use = next(m for m in api.sent(chat_id) if m.message_id == use_call.result["message_id"])
    return pictures, use


async def test_variations_arrive_as_one_album_with_use_buttons_that_survive_a_restart(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with running_bot(api, data_dir, NullEditor(), scorer_model=""):
        since = len(api.calls)
        api.send_photo(GROUP, ALICE, jpeg(), caption="make it night", **GROUP_CHAT)
        night = await next_photo(api, GROUP, since)
        assert {"🔀 Variations", "➕ Stronger", "➖ Subtler"} <= set(buttons(night))

        # Bob may not ask for variations of Alice's result.
        since = len(api.calls)
        api.press_button(
            GROUP, BOB, night.message_id, button_data(night, "variations"), **GROUP_CHAT
        )
        notice = await api.wait_for("answerCallbackQuery", since=since)
        assert "Only the person" in notice.params.get("text", "")

        since = len(api.calls)
        api.press_button(
            GROUP, ALICE, night.message_id, button_data(night, "variations"), **GROUP_CHAT
        )
        pictures, use = await variations_message(api, GROUP, since)
        assert len(pictures) == 4 and len({m.media_group_id for m in pictures}) == 1
        assert len({api.photo_bytes(m) for m in pictures}) == 4  # four different seeds
        assert [m.caption.split(".")[0] for m in pictures if m.caption] == ["1", "2", "3", "4"]
        assert list(buttons(use)) == ["Use 1", "Use 2", "Use 3", "Use 4"]
        assert "candidate 1" in (use.text or "")

        # Someone else's pick is refused and changes nothing.
        since = len(api.calls)
        api.press_button(GROUP, BOB, use.message_id, button_data(use, "use 2"), **GROUP_CHAT)
        notice = await api.wait_for("answerCallbackQuery", since=since)
        assert "Only the person" in notice.params.get("text", "")
        await asyncio.sleep(0.2)
        assert not api.calls_to("sendPhoto", since=since)

    async with running_bot(
        api, data_dir, NullEditor(), scorer_model=""
    ):  # a restart between set and pick
        since = len(api.calls)
        api.press_button(GROUP, ALICE, use.message_id, button_data(use, "use 3"), **GROUP_CHAT)
        picked = await next_photo(api, GROUP, since)
        assert "candidate 3" in (picked.caption or "")
        assert api.photo_bytes(picked) == api.photo_bytes(pictures[2])

        # The next instruction edits the picked candidate: no "edits candidate" note.
        since = len(api.calls)
        api.send_text(GROUP, ALICE, "@pix2chat_bot add snow", **GROUP_CHAT)
        queued = await next_text(api, GROUP, since, contains="add snow")
        assert "edits candidate" not in queued


async def test_commands_stronger_subtler_and_the_edge_of_the_range(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    edge = {
        "default_guidance_scale": 20.0,
        "default_image_guidance_scale": 1.0,
        "scorer_model": "",
    }
    async with running_bot(api, tmp_path / "data", NullEditor(), **edge):
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg(), caption="make it night")
        await next_photo(api, ALICE, since)

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/stronger")
        refused = await next_text(api, ALICE, since)
        assert "already at the strongest setting" in refused.lower()

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/subtler")
        softer = await next_photo(api, ALICE, since)
        assert "text guidance 17.5" in (softer.caption or "")
        assert "image guidance 1.25" in (softer.caption or "")

        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/variations")
        pictures, use = await variations_message(api, ALICE, since)
        assert len(pictures) == 4 and len(buttons(use)) == 4
