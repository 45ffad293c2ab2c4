"""Which language each user reads: /language's choice, else what their app reports.

Frontends pass the platform's hint with every event (Telegram's language_code, Discord's
interaction locale, the browser's Accept-Language) and render in the locale this returns.
The choice and the last detected language are stored per (platform, user), so results that
finish later are worded in the same language, even after a restart.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from bot.service import catalogues
from bot.service.messages import SOURCE_LOCALE, Key, LanguageName
from bot.service.replies import Reply, ReplyKind, replies_to_errors
from storage import languages
from storage.database import Database, brief, outage
from storage.languages import StoredLanguage
from storage.types import Actor

log = logging.getLogger(__name__)

AUTO = "auto"
"""`/language auto`: forget the choice and follow the app's language again."""
CACHE_TTL_S = 60.0
"""How long a process trusts its copy (another process may have seen a /language)."""
CACHE_SIZE = 10_000

Hint = str | Sequence[str] | None
"""A platform's language tag, or a browser's tags in order of preference."""


def negotiate_hint(hint: Hint) -> str | None:
    """The catalogue locale a platform hint asks for, or None if we have none of it."""
    if hint is None:
        return None
    return catalogues.negotiate([hint] if isinstance(hint, str) else hint)


def choices() -> str:
    """The languages on offer, each in its own name: "en (English), es (español), ..."."""
    return ", ".join(f"{code} ({catalogues.display_name(code)})" for code in catalogues.available())


class Languages:
    """Resolves and stores each user's language (with a short per-process cache)."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self.database = database
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, StoredLanguage]] = OrderedDict()

    async def locale_for(self, actor: Actor, hint: Hint = None) -> str:
        """The locale to answer `actor` in: their choice, else their app's, else English.

        A newly reported app language is remembered for later deliveries. A storage outage
        never stops an answer: it is given in the app's language (or English).
        """
        detected = negotiate_hint(hint)
        try:
            stored = await self._stored(actor)
            if detected is not None and detected != stored.detected:
                await self._save(actor, StoredLanguage(stored.chosen, detected))
        except Exception as error:
            if outage(error) is None:
                raise
            log.warning("language of %s: storage %s", actor, brief(error))
            return detected or SOURCE_LOCALE
        return _usable(stored.chosen) or detected or _usable(stored.detected) or SOURCE_LOCALE

    def peek(self, actor: Actor) -> str:
        """The locale last seen for `actor` without waiting for storage (progress lines)."""
        cached = self._cache.get((actor.platform, actor.user_id))
        stored = cached[1] if cached is not None else StoredLanguage()
        return _usable(stored.chosen) or _usable(stored.detected) or SOURCE_LOCALE

    @replies_to_errors
    async def choose(self, actor: Actor, code: str | None, hint: Hint = None) -> Reply:
        """`/language`: list the choices; `/language es`: choose; `/language auto`: follow the app."""
        code = (code or "").strip()
        current = await self.locale_for(actor, hint)
        if not code:
            return Reply(
                key=Key.LANGUAGE_LIST,
                args={"language": LanguageName(current), "choices": choices()},
            )
        stored = await self._stored(actor)
        if code.lower() == AUTO:
            await self._save(actor, StoredLanguage(None, stored.detected))
            following = negotiate_hint(hint) or _usable(stored.detected) or SOURCE_LOCALE
            return Reply(
                key=Key.LANGUAGE_AUTO, args={"language": LanguageName(following)}, locale=following
            )
        chosen = catalogues.negotiate([code])
        if chosen is None:
            return Reply(
                key=Key.LANGUAGE_UNKNOWN,
                args={"code": code[:32], "choices": choices()},
                kind=ReplyKind.ERROR,
            )
        await self._save(actor, StoredLanguage(chosen, stored.detected))
        return Reply(
            key=Key.LANGUAGE_CHOSEN, args={"language": LanguageName(chosen)}, locale=chosen
        )

    async def _stored(self, actor: Actor) -> StoredLanguage:
        key = (actor.platform, actor.user_id)
        cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] < CACHE_TTL_S:
            return cached[1]
        async with self.database.read() as session:
            stored = await languages.get(session, actor.platform, actor.user_id)
        self._remember(key, stored)
        return stored

    async def _save(self, actor: Actor, stored: StoredLanguage) -> None:
        async with self.database.write() as session:
            await languages.save(session, actor.platform, actor.user_id, stored)
        self._remember((actor.platform, actor.user_id), stored)

    def _remember(self, key: tuple[str, str], stored: StoredLanguage) -> None:
        self._cache[key] = (self.clock(), stored)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def _usable(locale: str | None) -> str | None:
    """A stored locale, if this build still has its catalogue."""
    return locale if locale in catalogues.available() else None
