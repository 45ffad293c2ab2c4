"""Riding out a storage outage: retried while it passes, bounded in time, bugs raised at once."""

from __future__ import annotations

import asyncio
import errno

import pytest

from bot.work import outages
from bot.work.outages import PatientImages, through_outage, until_reachable
from storage.database import Database
from storage.images import MemoryImageStore

FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outages, "BACKOFF_S", (0.01,))


async def test_an_action_is_retried_until_storage_is_back() -> None:
    calls: list[int] = []

    async def record() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise FULL
        return "recorded"

    assert await through_outage(record, "recording", timeout_s=5) == "recorded"
    assert len(calls) == 3


async def test_a_bug_is_raised_at_once() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await through_outage(broken, "recording", timeout_s=5)
    assert len(calls) == 1


async def test_an_outage_longer_than_the_timeout_raises_its_error() -> None:
    async def never() -> None:
        raise FULL

    with pytest.raises(OSError, match="No space"):
        await through_outage(never, "recording", timeout_s=0.05)


class FillingStore(MemoryImageStore):
    """A store whose disk is full for the first `full_for` writes."""

    def __init__(self, full_for: int) -> None:
        super().__init__()
        self.full_for = full_for
        self.tries = 0

    def put(self, data: bytes) -> str:
        self.tries += 1
        if self.tries <= self.full_for:
            raise FULL
        return super().put(data)


def test_a_computed_image_is_kept_until_it_can_be_stored() -> None:
    inner = FillingStore(full_for=2)
    store = PatientImages(inner, timeout_s=5)
    sha = store.put(b"result")
    assert inner.tries == 3 and store.get(sha) == b"result" and store.exists(sha)


def test_a_disk_that_stays_full_fails_the_write_in_the_end() -> None:
    store = PatientImages(FillingStore(full_for=10**6), timeout_s=0.05)
    with pytest.raises(OSError, match="No space"):
        store.put(b"result")


async def test_waiting_for_a_database_ends_when_it_answers_or_when_stopped(
    sqlite_url: str,
) -> None:
    async with Database(sqlite_url) as database:
        assert await until_reachable(database, timeout_s=1)
    async with Database("postgresql://nobody@127.0.0.1:1/none") as unreachable:
        stop = asyncio.Event()
        stop.set()
        assert not await until_reachable(unreachable, stop)
        assert not await until_reachable(unreachable, timeout_s=0.05)
