"""Deliveries: each result sent once, then marked delivered, even when marking must wait for
storage to come back (a PostgreSQL restart between the upload and the mark)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import psycopg
import pytest
from sqlalchemy import exc

from bot.service import mailboxes
from bot.service.mailboxes import EventDelivery
from bot.service.relay import done_reply
from bot.service.replies import Reply
from storage.types import Actor

ALICE = Actor("telegram", "chat-alice", "alice")


class StorageAway:
    """The service's `mark_delivered`, failing while storage is away."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.marked: list[int] = []

    async def mark_delivered(self, version_id: int) -> None:
        if self.failures:
            self.failures -= 1
            raise exc.OperationalError("UPDATE", {}, psycopg.OperationalError("connection refused"))
        self.marked.append(version_id)

    async def locale(self, actor: Any) -> str:
        return "en"


class Chat(EventDelivery):
    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.sent: list[int] = []

    async def show_progress(self, reply: Reply) -> None:
        pass

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        assert reply.version_id is not None
        self.sent.append(reply.version_id)
        return True


async def _until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 (polls state another task changes)
            await asyncio.sleep(0.01)


async def test_a_result_sent_while_storage_is_away_is_marked_later_and_never_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mailboxes, "MARK_RETRY_S", (0.02,))
    storage = StorageAway(failures=3)
    chat = Chat(cast(Any, storage))
    await chat.on_event(ALICE, done_reply(7, "alice at night", 1))
    await _until(lambda: chat.sent)
    assert chat.unmarked == {7} and chat.was_delivered(7)
    await chat.on_event(ALICE, done_reply(7, "alice at night", 1))  # the resync names it again
    await _until(lambda: storage.marked)
    await chat.close()
    assert chat.sent == [7]
    assert storage.marked == [7] and not chat.unmarked


async def test_closing_tries_once_more_to_mark_what_was_sent() -> None:
    storage = StorageAway(failures=1)
    chat = Chat(cast(Any, storage))
    await chat.on_event(ALICE, done_reply(8, "alice at dawn", 1))
    await _until(lambda: chat.unmarked)
    await chat.close()
    assert chat.sent == [8] and storage.marked == [8]
