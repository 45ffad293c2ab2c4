"""The shared batching engine, without a database: waiting, failures, previews, crashes."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.work.batching import BatchEngine, ModelThread, Output, Work
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage.images import MemoryImageStore
from tests.scaleout.harness import photo


class Owner:
    """A minimal `BatchOwner`: a list of works, oldest first, every outcome recorded."""

    def __init__(self, *, skip: frozenset[int] = frozenset(), crash_on_done: bool = False) -> None:
        self.waiting: list[Work] = []
        self.skip = skip
        self.crash_on_done = crash_on_done
        self.log: list[tuple[str, list[int]]] = []
        self.over = asyncio.Event()

    def next_batch(self, max_batch: int) -> list[Work]:
        return self.waiting[:max_batch]

    def take(self, batch: list[Work]) -> None:
        del self.waiting[: len(batch)]

    def finish(self, batch: list[Work]) -> None:
        self.log.append(("finish", [w.version_id for w in batch]))
        if not self.waiting:
            self.over.set()

    async def begin(self, batch: list[Work]) -> list[tuple[Work, Work]]:
        return [(w, w) for w in batch if w.version_id not in self.skip]

    async def succeeded(self, results: list[tuple[Work, Output]], seconds: float) -> None:
        self.log.append(("done", [output.version_id for _, output in results]))
        if self.crash_on_done:
            raise RuntimeError("the database went away")

    async def failed(self, item: Work, error: Exception) -> None:
        self.log.append(("failed", [item.version_id]))

    async def crashed(self, batch: list[Work], error: Exception) -> None:
        self.log.append(("crashed", [w.version_id for w in batch]))


def _work(sha: str, version_id: int, instruction: str = "x") -> Work:
    params = EditParams(num_inference_steps=4, resolution=64, seed=version_id)
    return Work(version_id, sha, (64, 48), instruction, params)


async def _drain(owner: Owner, editor: NullEditor, store: MemoryImageStore, **options: Any) -> None:
    model = ModelThread()
    engine: BatchEngine[Work] = BatchEngine(owner, model, editor, store, **options)
    try:
        engine.start()
        engine.wake()
        async with asyncio.timeout(10):
            await owner.over.wait()
        await engine.drain()
    finally:
        model.close()


async def test_the_engine_reports_progress_and_previews_on_the_loop_and_skips_unclaimed() -> None:
    store = MemoryImageStore()
    sha = store.put(photo("alice"))
    owner = Owner(skip=frozenset({2}))
    owner.waiting = [_work(sha, 1), _work(sha, 2), _work(sha, 3)]
    progress: list[tuple[list[int], int, int]] = []
    previews: list[tuple[int, int]] = []
    await _drain(
        owner,
        NullEditor(preview_every=2),
        store,
        max_batch=3,
        max_wait_ms=0,
        on_progress=lambda ids, step, total: progress.append((ids, step, total)),
        on_preview=lambda version_id, step, total, jpeg: previews.append((version_id, step)),
    )
    assert owner.log == [("done", [1, 3]), ("finish", [1, 2, 3])]
    assert progress == [([1, 3], step, 4) for step in (1, 2, 3, 4)]
    assert sorted(previews) == [(1, 2), (3, 2)]


async def test_a_bookkeeping_crash_is_the_owners_to_handle_and_the_batch_still_finishes() -> None:
    store = MemoryImageStore()
    sha = store.put(photo("alice"))
    owner = Owner(crash_on_done=True)
    owner.waiting = [_work(sha, 1), _work(sha, 2, "explode")]
    await _drain(owner, NullEditor(fail_on="explode"), store, max_batch=2, max_wait_ms=0)
    # the batch failed, so it is retried one at a time; recording the first result crashes,
    # which ends the batch (the rest stays with the owner, as the database is the truth)
    assert owner.log == [("done", [1]), ("crashed", [1, 2]), ("finish", [1, 2])]
