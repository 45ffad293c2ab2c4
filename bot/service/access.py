"""Who may use the bot: open or allow-list mode, admins, bans, and the one polite refusal.

Frontends ask `AccessControl.check` before they download anything, so nothing of a refused
user is stored. The rules live in the database (storage/access.py), shared by every process;
the refusal notice's silence window is per process (a refused user hears at most once per
window from each frontend process).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.service.messages import Key
from bot.service.replies import Reply, ReplyKind
from bot.work.metrics import Metrics
from storage import access
from storage.access import Subject
from storage.database import Database
from storage.types import Actor

AccessMode = Literal["open", "allowlist"]
MAX_REMEMBERED = 10_000
"""Refused users whose last notice time is kept (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """PIX2CHAT_ACCESS and PIX2CHAT_ADMINS ("telegram:123", "discord:456")."""

    mode: AccessMode = "open"
    admins: frozenset[str] = frozenset()
    silence_s: float = 600.0

    @classmethod
    def of(cls, mode: AccessMode, admins: Collection[str], silence_s: float) -> AccessPolicy:
        return cls(mode, frozenset(admins), silence_s)

    def is_admin(self, actor: Actor) -> bool:
        return f"{actor.platform}:{actor.user_id}" in self.admins


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to serve a request; when not, the notice to send (None: stay silent)."""

    allowed: bool
    notice: Reply | None = None


SERVE = Decision(True)


class AccessControl:
    """Applies the policy and the stored rules to each request."""

    def __init__(
        self,
        database: Database,
        policy: AccessPolicy,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self._told: OrderedDict[str, float] = OrderedDict()

    def is_admin(self, actor: Actor) -> bool:
        return self.policy.is_admin(actor)

    async def check(
        self, actor: Actor, places: Sequence[Subject] = (), *, addressed: bool = True
    ) -> Decision:
        """Serve admins; refuse banned users; in allow-list mode, serve only allowed users or
        members of allowed places (`places`: the Telegram group chat or Discord server).

        `addressed=False` (group chatter the bot would ignore anyway) refuses without a
        notice and without starting the silence, so the user's first real request is told.
        """
        if self.policy.is_admin(actor):
            return SERVE
        async with self.database.read() as session:
            standing = await access.standing(session, actor.platform, actor.user_id, places)
        if standing.banned:
            return self._refuse(actor, Key.ACCESS_BANNED, addressed)
        if self.policy.mode == "open" or standing.user_allowed or standing.place_allowed:
            return SERVE
        return self._refuse(actor, Key.ACCESS_PRIVATE, addressed)

    def _refuse(self, actor: Actor, key: Key, addressed: bool) -> Decision:
        """Tell a refused user once, then nothing for `silence_s` (no spam, either way)."""
        if not addressed:
            return Decision(False)
        self.metrics.refusals.labels(reason="access").inc()
        who, now = f"{actor.platform}:{actor.user_id}", self.clock()
        last = self._told.get(who)
        if last is not None and now - last < self.policy.silence_s:
            return Decision(False)
        self._told[who] = now
        self._told.move_to_end(who)
        while len(self._told) > MAX_REMEMBERED:
            self._told.popitem(last=False)
        notice = Reply(key=key, args={"user_id": actor.user_id}, kind=ReplyKind.ERROR)
        return Decision(False, notice)
