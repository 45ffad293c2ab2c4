"""The admin commands: /allow, /deny, /ban, /unban, /quota and /stats.

Only the admins named in PIX2CHAT_ADMINS may use them; anybody else gets a plain refusal.
A target is a user id of the platform the command is typed on, "telegram:<id>" or
"discord:<id>" for the other platform's users, "chat:<id>" (a Telegram group; a negative
Telegram id is one too), "server:<id>" (a Discord server), or "here" (the group chat or
server the command is typed in). `/allow` and the others also work as a reply to the user's
message: the replied-to user is the target.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bot.service.access import AccessControl
from bot.service.messages import Key
from bot.service.replies import Note, Reply, ReplyKind, replies_to_errors
from storage import access, stats
from storage.access import CHAT, SERVER, USER, Subject
from storage.database import Database
from storage.types import Actor

PLATFORMS = ("telegram", "discord")
USAGE = {
    "allow": "/allow <user id> (or reply to their message; /allow here for this group)",
    "deny": "/deny <user id> (or reply to their message; /deny here for this group)",
    "ban": "/ban <user id> (or reply to their message)",
    "unban": "/unban <user id> (or reply to their message)",
    "quota": "/quota <user id> <edits per day> (0: no limit; default: the server's)",
}


class BadTarget(ValueError):
    """The command's target could not be read."""


def parse_target(
    actor: Actor, text: str | None, here: Subject | None, replied_user: str | None
) -> Subject:
    """Whom an admin command is about (see the module docstring)."""
    word = (text or "").strip()
    if not word:
        if replied_user is None:
            raise BadTarget()
        return Subject(actor.platform, USER, replied_user)
    if word.lower() == "here":
        if here is None:
            raise BadTarget()
        return here
    mention = re.fullmatch(r"<@!?(\d+)>", word)  # a Discord @mention
    if mention is not None:
        return Subject(actor.platform, USER, mention[1])
    prefix, colon, rest = word.partition(":")
    if colon:
        prefix = prefix.lower()
        if prefix in PLATFORMS and rest.isdigit():
            return Subject(prefix, USER, rest)
        if prefix in (CHAT, SERVER) and rest.lstrip("-").isdigit():
            platform = "telegram" if prefix == CHAT else "discord"
            return Subject(platform, prefix, rest)
        raise BadTarget()
    if word.isdigit():
        return Subject(actor.platform, USER, word)
    if actor.platform == "telegram" and word.startswith("-") and word[1:].isdigit():
        return Subject("telegram", CHAT, word)  # Telegram's group chats have negative ids
    raise BadTarget()


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} s" if value < 90 else f"{value / 60:.1f} min"


class Admin:
    """The admin commands, each one transaction and one reply."""

    def __init__(
        self,
        database: Database,
        access_control: AccessControl,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.access = access_control
        self.clock = clock

    def _refused(self, actor: Actor) -> Reply | None:
        if self.access.is_admin(actor):
            return None
        return Reply(key=Key.ADMIN_ONLY, kind=ReplyKind.ERROR)

    def _target(
        self,
        command: str,
        actor: Actor,
        text: str | None,
        here: Subject | None,
        replied_user: str | None,
    ) -> Subject | Reply:
        try:
            subject = parse_target(actor, text, here, replied_user)
        except BadTarget:
            return Reply(key=Key.ADMIN_USAGE, args={"usage": USAGE[command]}, kind=ReplyKind.ERROR)
        if command in ("ban", "unban", "quota") and subject.scope != USER:
            return Reply(key=Key.ADMIN_USAGE, args={"usage": USAGE[command]}, kind=ReplyKind.ERROR)
        return subject

    @replies_to_errors
    async def allow(
        self,
        actor: Actor,
        target: str | None,
        here: Subject | None = None,
        replied_user: str | None = None,
    ) -> Reply:
        """Put a user, group chat or server on the allow-list."""
        return await self._set("allow", actor, target, here, replied_user)

    @replies_to_errors
    async def deny(
        self,
        actor: Actor,
        target: str | None,
        here: Subject | None = None,
        replied_user: str | None = None,
    ) -> Reply:
        """Take a user, group chat or server off the allow-list."""
        return await self._set("deny", actor, target, here, replied_user)

    @replies_to_errors
    async def ban(self, actor: Actor, target: str | None, replied_user: str | None = None) -> Reply:
        """Refuse a user in every mode, open included."""
        return await self._set("ban", actor, target, None, replied_user)

    @replies_to_errors
    async def unban(
        self, actor: Actor, target: str | None, replied_user: str | None = None
    ) -> Reply:
        return await self._set("unban", actor, target, None, replied_user)

    async def _set(
        self,
        command: str,
        actor: Actor,
        target: str | None,
        here: Subject | None,
        replied_user: str | None,
    ) -> Reply:
        refused = self._refused(actor)
        if refused is not None:
            return refused
        subject = self._target(command, actor, target, here, replied_user)
        if isinstance(subject, Reply):
            return subject
        by = f"{actor.platform}:{actor.user_id}"
        async with self.database.write() as session:
            if command in ("allow", "deny"):
                await access.set_allowed(session, subject, command == "allow", by)
            else:
                await access.set_banned(session, subject, command == "ban", by)
        key = {
            "allow": Key.ADMIN_ALLOWED,
            "deny": Key.ADMIN_DENIED,
            "ban": Key.ADMIN_BANNED,
            "unban": Key.ADMIN_UNBANNED,
        }[command]
        return Reply(key=key, args={"subject": str(subject)})

    @replies_to_errors
    async def quota(
        self, actor: Actor, target: str | None, edits: str | None, replied_user: str | None = None
    ) -> Reply:
        """A user's own daily quota: a number (0: no limit) or "default"."""
        refused = self._refused(actor)
        if refused is not None:
            return refused
        subject = self._target("quota", actor, target, None, replied_user)
        usage = Reply(key=Key.ADMIN_USAGE, args={"usage": USAGE["quota"]}, kind=ReplyKind.ERROR)
        if isinstance(subject, Reply):
            return subject
        word = (edits or "").strip().lower()
        if word == "default":
            quota: int | None = None
        elif word.isdigit() and int(word) <= 1_000_000:
            quota = int(word)
        else:
            return usage
        async with self.database.write() as session:
            await access.set_daily_quota(
                session, subject, quota, f"{actor.platform}:{actor.user_id}"
            )
        if quota is None:
            return Reply(key=Key.ADMIN_QUOTA_DEFAULT, args={"subject": str(subject)})
        if quota == 0:
            return Reply(key=Key.ADMIN_QUOTA_UNLIMITED, args={"subject": str(subject)})
        return Reply(key=Key.ADMIN_QUOTA, args={"subject": str(subject), "quota": quota})

    @replies_to_errors
    async def stats(self, actor: Actor) -> Reply:
        """Today's edits, users, queue, failures, edit times, GPU time, busiest users."""
        refused = self._refused(actor)
        if refused is not None:
            return refused
        async with self.database.read() as session:
            day = await stats.day_stats(session, datetime.fromtimestamp(self.clock(), UTC))
        notes = tuple(
            (Key.ADMIN_STATS_USER, {"rank": rank, "user": user, "count": count})
            for rank, (user, count) in enumerate(day.top_users, start=1)
        ) or ((Key.ADMIN_STATS_NOBODY, {}),)
        return Reply(
            key=Key.ADMIN_STATS,
            args={
                "edits": day.edits,
                "active_users": day.active_users,
                "failures": day.failures,
                "waiting": day.waiting,
                "running": day.running,
                "p50": _seconds(day.p50_s),
                "p95": _seconds(day.p95_s),
                "gpu": _seconds(day.gpu_s),
            },
            notes=tuple(Note(key, args) for key, args in notes),
        )
