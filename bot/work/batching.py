"""The one batching engine the embedded scheduler and the remote GPU worker share.

The batch signature (which samples may share one pipeline call), the single model thread (so
the event loop keeps serving chats, progress and heartbeats during long generations), one
pipeline call from stored parents to stored results (each developed onto its full-resolution
parent, editor/develop.py, so both schedulers store the same thing), and `BatchEngine`: the loop that gathers
compatible work, waits a little for company, runs one call and retries a failed batch one
sample at a time. What runs next is its owner's policy (bot/work/fairness.py for the embedded
scheduler; oldest first in `MicroBatcher`, the worker's, since PostgreSQL already ordered it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, Protocol, TypeVar

from PIL import Image

from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback
from editor.develop import develop as develop_onto
from editor.images import encode_png, encode_preview_jpeg, fit_to_resolution, fitted_size
from editor.params import EditParams
from storage.images import ImageStore

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")


@dataclasses.dataclass(frozen=True, slots=True)
class Work:
    """One sample to compute: a stored parent image, an instruction, every parameter.

    `parent_size` is the stored parent's own size; the model works at its fitted size.
    """

    version_id: int
    parent_sha: str
    parent_size: tuple[int, int]
    instruction: str
    params: EditParams

    def signature(self) -> tuple[object, ...]:
        return batch_signature(self.params, self.parent_size)


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """A computed, stored result.

    `image_sha` is what the version shows and chains on (developed onto the parent: `size` is
    the parent's); `raw_sha` the model's own output at the working size, kept for evaluation
    and debugging (None with develop off, where the raw output is the image).
    """

    version_id: int
    image_sha: str
    size: tuple[int, int]
    raw_sha: str | None = None

    @property
    def shas(self) -> list[str]:
        """Every image this result stored (to delete if the version is gone meanwhile)."""
        return [self.image_sha] if self.raw_sha is None else [self.image_sha, self.raw_sha]


def batch_signature(params: EditParams, parent_size: tuple[int, int]) -> tuple[object, ...]:
    """Samples with equal signatures can share one pipeline call (steps, guidances, size, model).

    The size is the working (fitted) size: parents of different stored sizes that fit to the
    same size batch together.
    """
    return (*params.batch_key(), fitted_size(parent_size, params.resolution), params.model)


PREVIEW_JPEG_QUALITY = 70
"""Previews are rough and short-lived: small JPEGs, encoded in the model thread."""

PreviewSink = Callable[[int, int, int, bytes], None]
"""Receives (version_id, step, total, jpeg) in the model thread; must not block."""


def compute_batch(
    editor: Editor,
    images: ImageStore,
    works: Sequence[Work],
    progress: ProgressCallback,
    preview: PreviewSink | None = None,
    *,
    develop: bool = True,
) -> list[Output]:
    """Decode parents, run one pipeline call, store results losslessly (model thread).

    The model sees each parent fitted to its working resolution. With `develop`, each output is
    developed onto its full-resolution parent (what is stored as the image, at the parent's
    size) and the raw output is stored beside it; without, the raw output is the image.
    With `preview`, the editor's previews (if it makes any) reach it as JPEGs named by version.
    """
    on_preview: PreviewCallback | None = None
    if preview is not None:
        sink = preview

        def encode(step: int, total: int, images: Mapping[int, Image.Image]) -> None:
            for index, shot in images.items():
                jpeg = encode_preview_jpeg(shot, quality=PREVIEW_JPEG_QUALITY)
                sink(works[index].version_id, step, total, jpeg)

        on_preview = encode

    requests = [
        EditRequest(
            image=fit_to_resolution(_decode(images, work.parent_sha), work.params.resolution),
            instruction=work.instruction,
            params=work.params,
        )
        for work in works
    ]
    results = editor.edit_batch(requests, progress, on_preview)
    outputs = []
    for work, request, result in zip(works, requests, results, strict=True):
        raw = result.convert("RGB")
        if not develop:
            outputs.append(Output(work.version_id, images.put(encode_png(raw)), raw.size))
            continue
        # Decoded again rather than kept from above: one full-size parent in memory at a time.
        developed = develop_onto(_decode(images, work.parent_sha), request.image, raw).image
        outputs.append(
            Output(
                work.version_id,
                images.put(encode_png(developed)),
                developed.size,
                raw_sha=images.put(encode_png(raw)),
            )
        )
    return outputs


def _decode(images: ImageStore, sha: str) -> Image.Image:
    with Image.open(io.BytesIO(images.get(sha))) as stored:
        return stored.convert("RGB")


class ModelThread:
    """The one thread the model runs in: diffusers pipelines are not safe to share."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pix2chat-model")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    def close(self) -> None:
        """Wait for the running call, then release the thread."""
        self._executor.shutdown(wait=True)


def threadsafe_progress(callback: Callable[[int, int], None]) -> ProgressCallback:
    """A progress callback for the model thread that runs `callback` on the current loop."""
    loop = asyncio.get_running_loop()

    def report(step: int, total: int) -> None:
        loop.call_soon_threadsafe(callback, step, total)

    return report


BatchProgress = Callable[[list[int], int, int], None]
"""Receives (version_ids, step, total) on the event loop."""
PreviewReport = Callable[[int, int, int, bytes], None]
"""Receives (version_id, step, total, jpeg) on the event loop."""


class BatchOwner(Protocol[ItemT]):
    """What a `BatchEngine` asks of the scheduler it serves: its line and its bookkeeping."""

    def next_batch(self, max_batch: int) -> list[ItemT]:
        """The items to run next, without removing them (empty: nothing can run now)."""

    def take(self, batch: list[ItemT]) -> None:
        """The batch starts: remove it from the line."""

    def finish(self, batch: list[ItemT]) -> None:
        """The batch is over, whatever happened to it."""

    async def begin(self, batch: list[ItemT]) -> list[tuple[ItemT, Work]]:
        """Claim the batch; the items still to compute, each with its work."""

    async def succeeded(self, results: list[tuple[ItemT, Output]], seconds: float) -> None:
        """One pipeline call computed these results in `seconds`."""

    async def failed(self, item: ItemT, error: Exception) -> None:
        """The item's own pipeline call raised `error`."""

    async def crashed(self, batch: list[ItemT], error: Exception) -> None:
        """Running the batch raised outside the pipeline (bookkeeping, a hook): log it."""


class BatchEngine(Generic[ItemT]):
    """Runs its owner's batches in the model thread, one pipeline call at a time.

    The owner's first item picks the signature; with fewer than `max_batch` items the engine
    waits at most `max_wait_ms` for company, then asks again. A failing batch is retried one
    item at a time, so one bad request fails alone. `develop` (PIX2CHAT_DEVELOP) develops
    each result onto its full-resolution parent (see `compute_batch`). Progress and previews reach the given
    callbacks on the event loop; without `on_preview` the editor makes none.
    """

    def __init__(
        self,
        owner: BatchOwner[ItemT],
        model: ModelThread,
        editor: Editor,
        images: ImageStore,
        *,
        max_batch: int = 4,
        max_wait_ms: int = 20,
        on_progress: BatchProgress | None = None,
        on_preview: PreviewReport | None = None,
        develop: bool = True,
        name: str = "pix2chat-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.owner = owner
        self.model = model
        self.editor = editor
        self.images = images
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.on_progress = on_progress
        self.on_preview = on_preview
        self.develop = develop
        self.name = name
        self.batch_sizes: list[int] = []
        self.model_thread_s = 0.0
        """Time spent in the model thread: decode, model, encode, store (for benchmarks)."""
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._serve(), name=self.name)

    def wake(self) -> None:
        """Something was added to the owner's line."""
        self._wakeup.set()

    async def drain(self) -> None:
        """Finish the running batch, then stop; what waits stays in the owner's line."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def cancel(self) -> None:
        """Stop now, abandoning the running batch."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _serve(self) -> None:
        while not self._stopping:
            batch = self.owner.next_batch(self.max_batch)
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(batch) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
                batch = self.owner.next_batch(self.max_batch)
                if not batch:
                    continue
            self.owner.take(batch)
            try:
                await self._run(batch)
            except Exception as error:  # the owner logs it and keeps nobody waiting
                await self.owner.crashed(batch, error)
            finally:
                self.owner.finish(batch)

    async def _run(self, batch: list[ItemT]) -> None:
        claimed = await self.owner.begin(batch)
        if not claimed:
            return
        self.batch_sizes.append(len(claimed))
        started = time.perf_counter()
        try:
            outputs = await self._compute([work for _, work in claimed])
        except Exception as error:
            if len(claimed) == 1:
                await self.owner.failed(claimed[0][0], error)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(claimed), error)
            for item, work in claimed:
                started = time.perf_counter()
                try:
                    (output,) = await self._compute([work])
                except Exception as single_error:
                    await self.owner.failed(item, single_error)
                else:
                    await self.owner.succeeded([(item, output)], time.perf_counter() - started)
            return
        results = [(item, output) for (item, _), output in zip(claimed, outputs, strict=True)]
        await self.owner.succeeded(results, time.perf_counter() - started)

    async def _compute(self, works: list[Work]) -> list[Output]:
        ids = [work.version_id for work in works]
        on_progress = self.on_progress

        def report(step: int, total: int) -> None:
            if on_progress is not None:
                on_progress(ids, step, total)

        progress = threadsafe_progress(report)
        preview: PreviewSink | None = None
        if self.on_preview is not None:
            on_preview = self.on_preview
            loop = asyncio.get_running_loop()

            def preview(version_id: int, step: int, total: int, jpeg: bytes) -> None:
                loop.call_soon_threadsafe(on_preview, version_id, step, total, jpeg)

        return await self.model.run(self._compute_in_thread, works, progress, preview)

    def _compute_in_thread(
        self, works: list[Work], progress: ProgressCallback, preview: PreviewSink | None
    ) -> list[Output]:
        started = time.perf_counter()
        try:
            return compute_batch(
                self.editor, self.images, works, progress, preview, develop=self.develop
            )
        finally:
            self.model_thread_s += time.perf_counter() - started
