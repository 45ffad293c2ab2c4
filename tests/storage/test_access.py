"""The allow-list, bans and quota overrides, on SQLite and PostgreSQL."""

from __future__ import annotations

from storage import access
from storage.access import CHAT, SERVER, USER, Subject
from storage.database import Database


async def test_rules_by_user_and_by_place(database: Database) -> None:
    bob = Subject("telegram", USER, "2")
    group = Subject("telegram", CHAT, "-100")
    async with database.write() as session:
        assert await access.set_allowed(session, bob, True, "telegram:1")
        assert not await access.set_allowed(session, bob, True, "telegram:1")  # no change
        await access.set_allowed(session, group, True, "telegram:1")

    async with database.read() as session:
        bob_alone = await access.standing(session, "telegram", "2")
        carol_in_group = await access.standing(session, "telegram", "3", [group])
        carol_alone = await access.standing(session, "telegram", "3")
        # Same ids on the other platform are other people and other places.
        elsewhere = await access.standing(
            session, "discord", "2", [Subject("discord", SERVER, "-100")]
        )
    assert bob_alone == access.Standing(user_allowed=True)
    assert carol_in_group == access.Standing(place_allowed=True)
    assert carol_alone == access.Standing()
    assert elsewhere == access.Standing()


async def test_bans_and_quota_overrides_are_kept_beside_the_allow_list(database: Database) -> None:
    bob = Subject("discord", USER, "22")
    async with database.write() as session:
        await access.set_allowed(session, bob, True, "discord:1")
        assert await access.set_banned(session, bob, True, "discord:1")
        await access.set_daily_quota(session, bob, 40, "discord:1")
    async with database.read() as session:
        standing = await access.standing(session, "discord", "22")
        assert await access.daily_quota(session, "discord", "22") == 40
        assert await access.daily_quota(session, "discord", "23") is None
    assert standing == access.Standing(user_allowed=True, banned=True, daily_quota=40)

    async with database.write() as session:
        await access.set_banned(session, bob, False, "discord:1")
        await access.set_daily_quota(session, bob, None, "discord:1")
    async with database.read() as session:
        standing = await access.standing(session, "discord", "22")
    assert standing == access.Standing(user_allowed=True)
