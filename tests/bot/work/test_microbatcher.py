"""The GPU worker's micro-batcher, without a database: grouping and failure isolation."""

from __future__ import annotations

import asyncio

from bot.work.batching import ModelThread, Work
from bot.work.microbatcher import MicroBatcher
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage.images import MemoryImageStore
from tests.scaleout.harness import photo


async def test_micro_batcher_groups_compatible_samples_and_isolates_failures() -> None:
    store = MemoryImageStore()
    sha = store.put(photo("alice"))
    editor = NullEditor(fail_on="explode")
    model = ModelThread()

    def work(version_id: int, instruction: str, steps: int = 2) -> Work:
        params = EditParams(num_inference_steps=steps, resolution=64, seed=version_id)
        return Work(version_id, sha, (64, 48), instruction, params)

    try:
        async with MicroBatcher(model, editor, store, max_batch=3, max_wait_ms=50) as batcher:
            results = await asyncio.gather(
                batcher.run(work(1, "a")),
                batcher.run(work(2, "b")),
                batcher.run(work(3, "c", steps=3)),
                batcher.run(work(4, "explode")),
                return_exceptions=True,
            )
    finally:
        model.close()
    assert [[r.instruction for r in call] for call in editor.calls] == [
        ["a", "b", "explode"],
        ["a"],
        ["b"],
        ["explode"],
        ["c"],
    ]
    assert isinstance(results[3], RuntimeError)
    assert [r.version_id for r in results[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    assert all(store.exists(r.image_sha) for r in results[:3])  # type: ignore[union-attr]
