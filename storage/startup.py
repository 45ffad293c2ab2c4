"""What every process does with the database before serving: wait for it, then match its schema.

`pix2chat run`, `pix2chat worker` and `pix2chat migrate` all start here, so an unreachable
database, a race with other processes starting at the same time, and a schema from another
version of pix2chat are handled the same way everywhere, each as one line for the operator
(`DatabaseUnavailable` or `SchemaMismatch`) instead of a traceback on the first query.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from storage.connect import DatabaseUnavailable, classify, wait_until_reachable, where
from storage.migrate import SchemaTooOld, current, is_current, too_old_message, upgrade

SCHEMA_POLL_S = 2.0


def prepare_schema(
    url: str,
    *,
    wait_s: float,
    migrate: bool,
    notify: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait up to `wait_s` for the database, then upgrade its schema (`migrate`), or else wait
    up to `wait_s` more for someone to run `pix2chat migrate`.

    Raises:
        DatabaseUnavailable: the database cannot be reached, or stopped answering meanwhile.
        SchemaTooNew: the database was migrated by a newer pix2chat.
        SchemaTooOld: `migrate` is off and the schema stayed older than this code's.
    """
    wait_until_reachable(url, wait_s, notify, sleep=sleep, clock=clock)
    try:
        if migrate:
            upgrade(url)
        else:
            _wait_for_migrate(url, wait_s, notify, sleep, clock)
    except DBAPIError as error:  # it went away between the probe and the upgrade
        reason = classify(error)
        raise DatabaseUnavailable(
            f"Cannot reach the database at {where(url)} ({reason.text})"
        ) from None


def _wait_for_migrate(
    url: str,
    wait_s: float,
    notify: Callable[[str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    deadline = clock() + wait_s
    announced = False
    while True:
        revision = current(url)
        if is_current(revision):
            return
        remaining = deadline - clock()
        if remaining <= 0:
            raise SchemaTooOld(too_old_message(revision))
        if not announced:
            notify(f"{too_old_message(revision)}; waiting for it for up to {wait_s:g} s")
            announced = True
        sleep(min(SCHEMA_POLL_S, remaining))
