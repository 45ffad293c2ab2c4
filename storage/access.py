"""The allow-list, bans and quota overrides, persisted (table `access_rules`).

Pure storage: which rules exist. What they mean for a request (open or allow-list mode,
admins, the refusal message) is decided in bot/service/access.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AccessRule, utcnow

USER = "user"
CHAT = "chat"
"""A Telegram group chat: every member is served when it is allowed."""
SERVER = "server"
"""A Discord server (guild): every member is served when it is allowed."""
SCOPES = (USER, CHAT, SERVER)


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom a rule is about: a user, a group chat or a server, on one platform."""

    platform: str
    scope: str
    subject_id: str

    def __str__(self) -> str:
        prefix = "" if self.scope == USER else f"{self.scope} "
        return f"{prefix}{self.platform}:{self.subject_id}"


@dataclass(frozen=True, slots=True)
class Standing:
    """What the rules say about one request: the user and the places it comes from."""

    user_allowed: bool = False
    place_allowed: bool = False
    banned: bool = False
    daily_quota: int | None = None


async def standing(
    session: AsyncSession, platform: str, user_id: str, places: Sequence[Subject] = ()
) -> Standing:
    """The user's rules and whether any of `places` (their group chat or server) is allowed."""
    keys = [(platform, USER, user_id), *((p.platform, p.scope, p.subject_id) for p in places)]
    # One primary-key lookup per key (OR of equalities): a row-value IN scans the table on
    # SQLite, which costs tens of ms with 100,000 rules.
    rows = (
        await session.scalars(
            select(AccessRule).where(
                or_(
                    *(
                        and_(
                            AccessRule.platform == key_platform,
                            AccessRule.scope == scope,
                            AccessRule.subject_id == subject_id,
                        )
                        for key_platform, scope, subject_id in keys
                    )
                )
            )
        )
    ).all()
    user = next((r for r in rows if r.scope == USER), None)
    return Standing(
        user_allowed=bool(user and user.allowed),
        place_allowed=any(r.allowed for r in rows if r.scope != USER),
        banned=bool(user and user.banned),
        daily_quota=user.daily_quota if user else None,
    )


async def daily_quota(session: AsyncSession, platform: str, user_id: str) -> int | None:
    """The user's quota override, or None for the server default."""
    return await session.scalar(
        select(AccessRule.daily_quota).where(
            AccessRule.platform == platform,
            AccessRule.scope == USER,
            AccessRule.subject_id == user_id,
        )
    )


async def _rule(session: AsyncSession, subject: Subject) -> AccessRule:
    """The subject's row, created empty if it has none (inside the caller's write)."""
    rule = await session.get(AccessRule, (subject.platform, subject.scope, subject.subject_id))
    if rule is None:
        rule = AccessRule(
            platform=subject.platform,
            scope=subject.scope,
            subject_id=subject.subject_id,
            allowed=False,
            banned=False,
        )
        session.add(rule)
    return rule


async def set_allowed(session: AsyncSession, subject: Subject, allowed: bool, by: str) -> bool:
    """Add to (or take off) the allow-list; whether that changed anything."""
    rule = await _rule(session, subject)
    changed = rule.allowed != allowed
    rule.allowed, rule.updated_by, rule.updated_at = allowed, by, utcnow()
    return changed


async def set_banned(session: AsyncSession, subject: Subject, banned: bool, by: str) -> bool:
    """Ban (or unban) a user; whether that changed anything."""
    rule = await _rule(session, subject)
    changed = rule.banned != banned
    rule.banned, rule.updated_by, rule.updated_at = banned, by, utcnow()
    return changed


async def set_daily_quota(
    session: AsyncSession, subject: Subject, quota: int | None, by: str
) -> None:
    """Override a user's daily quota (None: back to the server default; 0: no daily limit)."""
    rule = await _rule(session, subject)
    rule.daily_quota, rule.updated_by, rule.updated_at = quota, by, utcnow()
