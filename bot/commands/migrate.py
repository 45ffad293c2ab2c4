"""`pix2chat migrate`: create or upgrade the database schema."""

from __future__ import annotations

from collections.abc import Callable

from bot.commands.database import ready_database
from bot.config import Settings
from storage.migrate import current


def migrate(settings: Settings, echo: Callable[[str], None]) -> int:
    """Upgrade to the newest revision (waiting for the database first) and say which it is;
    the exit status (see bot.commands.database)."""
    status = ready_database(settings, migrate=True)
    if status == 0:
        echo(f"Database is at revision {current(settings.resolved_database_url())}.")
    return status
