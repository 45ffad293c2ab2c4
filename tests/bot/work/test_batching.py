"""The shared batching engine, without a database: waiting, failures, previews, crashes, and
one pipeline call's results developed onto their full-resolution parents."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from PIL import Image

from bot.work.batching import BatchEngine, ModelThread, Output, Work, compute_batch
from editor.images import encode_png, fitted_size
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


# -- developing onto the full-resolution parent --------------------------------------------------


def _stored_photo(store: MemoryImageStore, size: tuple[int, int]) -> str:
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient))
    return store.put(encode_png(image))


def _size_of(store: MemoryImageStore, sha: str) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(store.get(sha))) as image:
        return image.format, image.size


def _full_size_work(sha: str, size: tuple[int, int], version_id: int = 1) -> Work:
    return Work(version_id, sha, size, "x", EditParams(num_inference_steps=2, resolution=256))


def test_a_result_is_developed_onto_its_full_resolution_parent_and_the_raw_output_kept() -> None:
    store, editor = MemoryImageStore(), NullEditor()
    sha = _stored_photo(store, (1000, 700))

    (output,) = compute_batch(editor, store, [_full_size_work(sha, (1000, 700))], _no_progress)

    working = fitted_size((1000, 700), 256)
    assert [request.image.size for request in editor.calls[0]] == [working]  # the model's size
    assert output.size == (1000, 700)
    assert _size_of(store, output.image_sha) == ("PNG", (1000, 700))
    assert output.raw_sha is not None and output.raw_sha != output.image_sha
    assert _size_of(store, output.raw_sha) == ("PNG", working)
    assert output.shas == [output.image_sha, output.raw_sha]


def test_with_develop_off_the_result_is_the_working_size_output() -> None:
    store, editor = MemoryImageStore(), NullEditor()
    sha = _stored_photo(store, (1000, 700))

    (output,) = compute_batch(
        editor, store, [_full_size_work(sha, (1000, 700))], _no_progress, develop=False
    )

    working = fitted_size((1000, 700), 256)
    assert output.size == working
    assert _size_of(store, output.image_sha) == ("PNG", working)
    assert output.raw_sha is None and output.shas == [output.image_sha]


def test_parents_of_different_sizes_with_one_working_size_share_a_batch_and_keep_theirs() -> None:
    store, editor = MemoryImageStore(), NullEditor()
    small, large = (1000, 700), (2000, 1400)
    works = [
        _full_size_work(_stored_photo(store, small), small, 1),
        _full_size_work(_stored_photo(store, large), large, 2),
    ]
    assert works[0].signature() == works[1].signature()  # grouped by the working size

    outputs = compute_batch(editor, store, works, _no_progress)

    assert len(editor.calls) == 1 and len(editor.calls[0]) == 2
    assert [output.size for output in outputs] == [small, large]
    assert [_size_of(store, output.image_sha)[1] for output in outputs] == [small, large]


def _no_progress(step: int, total: int) -> None:
    return None
