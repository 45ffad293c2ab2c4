"""The database step every serving command starts with, as one line and an exit status.

`pix2chat run|web`, `pix2chat worker` and `pix2chat migrate` wait for the database and match
its schema before anything else (before the model loads, before the event loop starts, so
Ctrl-C or SIGTERM while waiting just stops the process). What goes wrong is said in one line on
stderr, with a distinct exit status: 3 the database is unreachable, 4 its schema does not match
this pix2chat.
"""

from __future__ import annotations

import typer

from bot.config import Settings
from storage.connect import DatabaseUnavailable
from storage.migrate import SchemaMismatch

# Exit statuses when the database is the problem (documented in the README).
EXIT_DATABASE_UNAVAILABLE = 3
EXIT_SCHEMA_MISMATCH = 4


def _warn(line: str) -> None:
    typer.secho(line, fg="yellow", err=True)


def ready_database(settings: Settings, *, migrate: bool | None = None) -> int:
    """0 once the database answers at this code's schema; else the exit status, after one line.

    `migrate` forces the upgrade on (`pix2chat migrate`) whatever PIX2CHAT_MIGRATE_ON_START says.
    """
    from bot.app import prepare_database

    try:
        prepare_database(settings, _warn, migrate=migrate)
    except (DatabaseUnavailable, SchemaMismatch) as error:
        return report(error)
    except KeyboardInterrupt:
        return 130
    return 0


def report(error: DatabaseUnavailable | SchemaMismatch) -> int:
    """Say what is wrong in one line on stderr; the exit status for it."""
    typer.secho(str(error), fg="red", err=True)
    if isinstance(error, DatabaseUnavailable):
        return EXIT_DATABASE_UNAVAILABLE
    return EXIT_SCHEMA_MISMATCH
