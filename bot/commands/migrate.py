"""`pix2chat migrate`: create or upgrade the database schema."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from storage.migrate import current, upgrade


def migrate(settings: Settings, echo: Callable[[str], None]) -> None:
    """Upgrade to the newest revision (the data folder first, for SQLite) and say which it is."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    upgrade(url)
    echo(f"Database is at revision {current(url)}.")
