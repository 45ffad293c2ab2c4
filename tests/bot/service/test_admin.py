"""How admin commands read their target, and the refusal for everybody else."""

from __future__ import annotations

import pytest

from bot.service.access import AccessControl, AccessPolicy
from bot.service.admin import Admin, BadTarget, parse_target
from bot.service.replies import ReplyKind
from bot.work.metrics import Metrics
from storage.access import CHAT, SERVER, USER, Subject
from storage.database import Database
from storage.types import Actor

TELEGRAM_ADMIN = Actor("telegram", "-100", "1")
DISCORD_ADMIN = Actor("discord", "55", "1")
GROUP = Subject("telegram", CHAT, "-100")


@pytest.mark.parametrize(
    ("actor", "text", "replied", "expected"),
    [
        (TELEGRAM_ADMIN, "42", None, Subject("telegram", USER, "42")),
        (TELEGRAM_ADMIN, " 42 ", None, Subject("telegram", USER, "42")),
        (TELEGRAM_ADMIN, "", "77", Subject("telegram", USER, "77")),
        (TELEGRAM_ADMIN, "here", None, GROUP),
        (TELEGRAM_ADMIN, "-100200", None, Subject("telegram", CHAT, "-100200")),
        (TELEGRAM_ADMIN, "discord:9", None, Subject("discord", USER, "9")),
        (TELEGRAM_ADMIN, "server:31", None, Subject("discord", SERVER, "31")),
        (DISCORD_ADMIN, "<@12>", None, Subject("discord", USER, "12")),
        (DISCORD_ADMIN, "<@!12>", None, Subject("discord", USER, "12")),
        (DISCORD_ADMIN, "chat:-5", None, Subject("telegram", CHAT, "-5")),
    ],
)
def test_targets(actor: Actor, text: str, replied: str | None, expected: Subject) -> None:
    here = GROUP if actor.platform == "telegram" else None
    assert parse_target(actor, text, here, replied) == expected


@pytest.mark.parametrize("text", ["", "bob", "slack:1", "server:x", "12a", "-", "<@x>"])
def test_unreadable_targets(text: str) -> None:
    with pytest.raises(BadTarget):
        parse_target(DISCORD_ADMIN, text, None, None)


def test_here_outside_a_group_is_unreadable() -> None:
    with pytest.raises(BadTarget):
        parse_target(Actor("telegram", "1", "1"), "here", None, None)


async def test_only_admins_and_only_users_for_ban_and_quota(sqlite_database: Database) -> None:
    policy = AccessPolicy(admins=frozenset({"telegram:1"}))
    admin = Admin(sqlite_database, AccessControl(sqlite_database, policy, Metrics()))
    stranger = Actor("telegram", "5", "5")

    for reply in [
        await admin.allow(stranger, "6"),
        await admin.ban(stranger, "6"),
        await admin.quota(stranger, "6", "10"),
        await admin.stats(stranger),
    ]:
        assert (
            reply.kind is ReplyKind.ERROR and reply.text() == "Only the bot's admins can do that."
        )

    banned_group = await admin.ban(TELEGRAM_ADMIN, "here")
    assert banned_group.kind is ReplyKind.ERROR and banned_group.text().startswith("Usage: /ban")
    default = await admin.quota(TELEGRAM_ADMIN, "6", "default")
    assert default.text() == "telegram:6 is back to the default daily quota."
    negative = await admin.quota(TELEGRAM_ADMIN, "6", "-3")
    assert negative.text().startswith("Usage: /quota")
