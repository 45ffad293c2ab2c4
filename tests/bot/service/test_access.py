"""The access decision: admins, bans in open mode, the allow-list, and the one notice."""

from __future__ import annotations

from bot.service.access import AccessControl, AccessPolicy, Decision
from bot.work.metrics import Metrics
from storage import access
from storage.access import SERVER, USER, Subject
from storage.database import Database
from storage.types import Actor

ADMIN = Actor("discord", "10", "1")
BOB = Actor("discord", "10", "2")
SERVER_7 = Subject("discord", SERVER, "7")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_notice_per_silence_window(sqlite_database: Database) -> None:
    clock, metrics = Clock(), Metrics()
    policy = AccessPolicy("allowlist", frozenset({"discord:1"}), silence_s=60)
    control = AccessControl(sqlite_database, policy, metrics, clock)

    assert (await control.check(ADMIN)).allowed
    first = await control.check(BOB)
    assert not first.allowed and first.notice is not None
    assert first.notice.text() == "This bot is private. Ask its owner to add you; your id is 2."
    clock.now += 59
    assert await control.check(BOB) == Decision(False)
    # Chatter the bot would ignore anyway neither tells nor counts.
    clock.now += 2
    assert await control.check(BOB, addressed=False) == Decision(False)
    again = await control.check(BOB)
    assert again.notice is not None  # the window is over: told once more
    assert metrics.refusals.labels(reason="access")._value.get() == 3

    assert (await control.check(BOB, [SERVER_7])).allowed is False
    async with sqlite_database.write() as session:
        await access.set_allowed(session, SERVER_7, True, "discord:1")
    assert (await control.check(BOB, [SERVER_7])).allowed


async def test_a_ban_refuses_in_open_mode_and_beats_the_allow_list(
    sqlite_database: Database,
) -> None:
    control = AccessControl(sqlite_database, AccessPolicy(), Metrics(), Clock())
    assert (await control.check(BOB)).allowed  # open mode
    async with sqlite_database.write() as session:
        await access.set_allowed(session, Subject("discord", USER, "2"), True, "discord:1")
        await access.set_banned(session, Subject("discord", USER, "2"), True, "discord:1")
    refused = await control.check(BOB, [SERVER_7])
    assert not refused.allowed and refused.notice is not None
    assert refused.notice.text().startswith("You can't use this bot.")
