"""The embedded scheduler and the service on SQLite when storage fails under them: a database
file locked by another process, a full disk. The edit is retried, the user who asks meanwhile
gets a clear message, and nothing is half-written."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import storage.database
from bot.work import outages, scheduler
from editor.testing.doubles import GatedEditor
from storage.images import FileImageStore
from tests.bot.service.harness import ALICE, BOB, Harness, photo, running_service


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.database, "SQLITE_BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(outages, "BACKOFF_S", (0.05,))
    monkeypatch.setattr(scheduler, "STORAGE_RETRY_S", 0.05)


@pytest.fixture
async def h(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_service(
        sqlite_url, tmp_path / "images", editor=GatedEditor(closed=True)
    ) as harness:
        yield harness


class Disk:
    """Makes every image write fail with ENOSPC while `full`, as a full disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.refused = 0
        real_put = FileImageStore.put

        def put(store: FileImageStore, data: bytes) -> str:
            if self.full:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_put(store, data)

        monkeypatch.setattr(FileImageStore, "put", put)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (polls state another task changes)
            await asyncio.sleep(0.01)


async def test_a_locked_database_delays_the_result_and_refuses_requests_clearly(
    h: Harness, sqlite_url: str
) -> None:
    await h.upload(ALICE)
    await h.upload(BOB, photo(shade=9))
    version_id = await h.queue(ALICE, "alice at night")
    await h.wait_status(version_id, "running")
    versions = await h.count_versions()
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        h.editor.gate.set()  # the result is computed and cannot be recorded
        refused = await h.service.instruct(BOB, "bob at night")
        await asyncio.sleep(0.5)
        assert not h.recorder.results(version_id)
    finally:
        holder.rollback()
        holder.close()
    await h.recorder.done(version_id)
    await asyncio.sleep(0.2)  # a second result would arrive now

    assert (refused.key, refused.is_error) == ("error.unavailable", True)
    assert "briefly unavailable" in refused.text()
    assert await h.count_versions() == versions  # bob's refused edit left nothing behind
    assert len(h.recorder.results(version_id)) == 1
    version = await h.version(version_id)
    assert (version.status, version.attempts) == ("done", 1)


async def test_a_full_disk_runs_the_edit_again_once_there_is_room(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    await h.upload(ALICE)
    version_id = await h.queue(ALICE, "alice at night")
    await h.wait_status(version_id, "running")
    disk.full = True
    h.editor.gate.set()
    await _until(lambda: disk.refused >= 2)  # computed, not stored, run again: still full
    refused = await h.service.receive_image(BOB, photo(shade=9))
    disk.full = False
    await h.recorder.done(version_id)
    await asyncio.sleep(0.2)

    assert (refused.key, refused.is_error) == ("error.storage_full", True)
    assert len(h.recorder.results(version_id)) == 1
    version = await h.version(version_id)
    assert (version.status, version.attempts) == ("done", 1)  # the disk's fault, not counted
    assert not list(h.images.root.rglob(".tmp-*"))  # no half-written image


async def test_a_disk_that_stays_full_fails_the_edit_with_a_clear_message(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "STORAGE_RETRIES", 2)
    disk = Disk(monkeypatch)
    await h.upload(ALICE)
    version_id = await h.queue(ALICE, "alice at night")
    await h.wait_status(version_id, "running")
    disk.full = True
    h.editor.gate.set()
    reply = await h.recorder.result(version_id)

    assert reply.key == "error.storage_full" and reply.is_error
    assert disk.refused == 3  # the first run and two more
    assert (await h.version(version_id)).status == "failed"


def test_an_image_write_that_runs_out_of_space_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileImageStore(tmp_path)

    def no_space(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        store.put(b"half an image")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
