"""Waiting for the database at start-up: one clear line and a bounded retry, never a traceback.

Processes are started together with their database (compose, Kubernetes, a reboot), so the
database is often not up yet, or restarting. Each start first checks that the database answers:
an unreachable server is retried with exponential backoff for a bounded time, saying so once;
problems that waiting cannot fix (a wrong password, a missing database, an unwritable SQLite
folder) are reported at once. Either way the caller gets a `DatabaseUnavailable` whose message
is one line an operator can act on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from storage.database import sync_url

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
CONNECT_TIMEOUT_S = 5

# (fragment of the driver's message, reason shown, worth retrying)
_REASONS: tuple[tuple[str, str, bool], ...] = (
    ("connection refused", "connection refused", True),
    ("could not translate host name", "host name not found", True),
    ("name or service not known", "host name not found", True),
    ("temporary failure in name resolution", "host name not found", True),
    ("nodename nor servname", "host name not found", True),
    ("timeout expired", "timed out", True),
    ("timed out", "timed out", True),
    ("the database system is starting up", "the server is starting up", True),
    ("the database system is shutting down", "the server is shutting down", True),
    ("the database system is in recovery mode", "the server is recovering", True),
    ("no route to host", "no route to host", True),
    ("network is unreachable", "network unreachable", True),
    ("server closed the connection unexpectedly", "connection closed", True),
    ("password authentication failed", "authentication failed", False),
    ("no pg_hba.conf entry", "authentication failed: no pg_hba.conf entry", False),
    ("role", "authentication failed: no such role", False),
    ("does not exist", "the database does not exist", False),
)


class DatabaseUnavailable(Exception):
    """The database cannot be used; the message is the one line to show (no traceback)."""


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    retry: bool


def classify(error: BaseException) -> Reason:
    """Why a connection failed, from the driver's message (psycopg has no finer error types)."""
    message = str(getattr(error, "orig", None) or error).strip()
    lowered = message.lower()
    for fragment, reason, retry in _REASONS:
        if fragment in lowered and (fragment != "role" or "does not exist" in lowered):
            return Reason(reason, retry)
    first = message.splitlines()[0] if message else type(error).__name__
    return Reason(first.removeprefix("connection failed: ")[:200], True)


def where(url: str) -> str:
    """host:port (PostgreSQL) or the file (SQLite), without credentials."""
    parsed = sync_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def probe(url: str) -> None:
    """Connect once and run `SELECT 1`; DatabaseUnavailable (with `.reason`) if that fails."""
    parsed = sync_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_folder(parsed.database)
        return
    engine = create_engine(
        parsed, poolclass=pool.NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        reason = classify(error)
        raise _Unreachable(
            f"Cannot reach the database at {where(url)} ({reason.text})", reason
        ) from None
    finally:
        engine.dispose()


class _Unreachable(DatabaseUnavailable):
    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason = reason


def _check_sqlite_folder(database: str | None) -> None:
    if database in (None, "", ":memory:"):
        return
    folder = Path(database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailable(
            f"Cannot create the database folder {folder} ({error.strerror or error})"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseUnavailable(
            f"Cannot write the database at {database} (folder {folder} is not writable)"
        )


def wait_until_reachable(
    url: str,
    timeout_s: float,
    notify: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the database answers; retry what waiting can fix for up to `timeout_s`.

    The first failure is announced once through `notify` ("...; retrying for up to 60 s"), then
    retried with a delay doubling from 0.5 s to at most 5 s. `timeout_s=0` does not wait.

    Raises:
        DatabaseUnavailable: still unreachable after `timeout_s`, or unfixable by waiting.
    """
    deadline = clock() + timeout_s
    delay = FIRST_DELAY_S
    announced = False
    while True:
        try:
            probe(url)
            return
        except _Unreachable as error:
            remaining = deadline - clock()
            if not error.reason.retry or remaining <= 0:
                suffix = f"; gave up after {timeout_s:g} s" if announced else ""
                raise DatabaseUnavailable(f"{error}{suffix}") from None
            if not announced:
                notify(f"{error}; retrying for up to {timeout_s:g} s")
                announced = True
            sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY_S)
