"""Errors turned into replies: user errors and passing storage outages, never a traceback."""

from __future__ import annotations

import errno

import psycopg
import pytest
from sqlalchemy import exc

from bot.service.replies import Reply, ReplyKind, replies_to_errors


def _raising(error: Exception) -> replies_to_errors:  # type: ignore[valid-type]
    @replies_to_errors
    async def handler() -> Reply:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (
            exc.OperationalError("BEGIN", {}, psycopg.OperationalError("connection refused")),
            "error.unavailable",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "error.storage_full"),
    ],
)
async def test_a_storage_outage_becomes_a_clear_error_reply(error: Exception, key: str) -> None:
    reply = await _raising(error)()  # type: ignore[operator]
    assert (reply.key, reply.kind) == (key, ReplyKind.ERROR)
    assert "Error" not in reply.text() and reply.text().endswith(".")


async def test_a_bug_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        await _raising(ZeroDivisionError())()  # type: ignore[operator]
