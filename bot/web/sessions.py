"""Browser sessions: a random secret cookie per browser, turned into a conversation actor.

The cookie is the only credential, so the database never stores it: the actor's ids are a
hash of it. In password mode the cookie also carries an HMAC of the secret under the password,
so only a browser that logged in holds a valid one (and changing the password logs everyone
out without losing their history: logging in again keeps the same secret).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from storage.types import Actor

PLATFORM = "web"
COOKIE = "pix2chat_session"
COOKIE_MAX_AGE_S = 400 * 24 * 3600
"""Browsers cap cookie lifetimes at 400 days."""

_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""secrets.token_urlsafe(32): 43 URL-safe characters."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) only accepts connections from this machine."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Sessions:
    """Issues and checks session cookies; `password` switches on login.

    Attributes:
        password: the shared password; None when only this machine can reach the chat.
    """

    password: str | None = None

    @property
    def needs_login(self) -> bool:
        return self.password is not None

    def issue(self, previous: str | None = None) -> str:
        """A cookie value: the previous browser secret if it had one (keeps its history)."""
        secret = _secret_of(previous) or secrets.token_urlsafe(32)
        if self.password is None:
            return secret
        return f"{secret}.{self._mac(secret)}"

    def actor(self, cookie: str | None) -> Actor | None:
        """The conversation actor of a valid cookie, else None."""
        if not cookie:
            return None
        secret, _, mac = cookie.partition(".")
        if not _SECRET.match(secret):
            return None
        if self.password is not None and not hmac.compare_digest(mac, self._mac(secret)):
            return None
        return actor_for_secret(secret)

    def check_password(self, attempt: str) -> bool:
        if self.password is None:
            return True
        return hmac.compare_digest(attempt.encode(), self.password.encode())

    def _mac(self, secret: str) -> str:
        assert self.password is not None
        digest = hmac.new(self.password.encode(), secret.encode(), hashlib.sha256).hexdigest()
        return digest[:32]


def actor_for_secret(secret: str) -> Actor:
    """The browser's actor: one private conversation, named by a hash of its secret."""
    browser = hashlib.sha256(f"pix2chat-web:{secret}".encode()).hexdigest()[:32]
    return Actor(PLATFORM, browser, browser)


def _secret_of(cookie: str | None) -> str | None:
    secret = (cookie or "").partition(".")[0]
    return secret if _SECRET.match(secret) else None
