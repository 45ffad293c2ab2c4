"""What the embedded scheduler and the remote GPU worker share on the model side.

The batch signature (which samples may share one pipeline call), the single model thread (so
the event loop keeps serving chats, progress and heartbeats during long generations), one
pipeline call from stored parents to stored results, and a micro-batcher that gathers the
samples of concurrently running jobs into such calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import ParamSpec, TypeVar

from PIL import Image

from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback
from editor.images import encode_png, encode_preview_jpeg, fit_to_resolution, fitted_size
from editor.params import EditParams
from storage.images import ImageStore

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Work:
    """One sample to compute: a stored parent image, an instruction, every parameter."""

    version_id: int
    parent_sha: str
    parent_size: tuple[int, int]
    instruction: str
    params: EditParams

    def signature(self) -> tuple[object, ...]:
        return batch_signature(self.params, self.parent_size)


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """A computed, stored result."""

    version_id: int
    image_sha: str
    size: tuple[int, int]


def batch_signature(params: EditParams, parent_size: tuple[int, int]) -> tuple[object, ...]:
    """Samples with equal signatures can share one pipeline call (steps, guidances, size)."""
    return (*params.batch_key(), fitted_size(parent_size, params.resolution))


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
) -> list[Output]:
    """Decode parents, run one pipeline call, store results losslessly (model thread).

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

    requests = []
    for work in works:
        with Image.open(io.BytesIO(images.get(work.parent_sha))) as parent:
            image = fit_to_resolution(parent.convert("RGB"), work.params.resolution)
        requests.append(EditRequest(image=image, instruction=work.instruction, params=work.params))
    results = editor.edit_batch(requests, progress, on_preview)
    return [
        Output(work.version_id, images.put(encode_png(result)), result.size)
        for work, result in zip(works, results, strict=True)
    ]


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


@dataclasses.dataclass(eq=False, slots=True)
class _Waiting:
    work: Work
    future: asyncio.Future[Output]


BatchStarted = Callable[[list[int]], Awaitable[None]]
BatchProgress = Callable[[list[int], int, int], None]


class MicroBatcher:
    """Runs samples submitted by concurrent jobs, compatible ones together in one call.

    The oldest waiting sample picks the signature; others with the same signature join, up to
    `max_batch`, after waiting at most `max_wait_ms` for company (the embedded scheduler's
    rules). A failing batch is retried one sample at a time, so one bad request fails alone.
    """

    def __init__(
        self,
        model: ModelThread,
        editor: Editor,
        images: ImageStore,
        *,
        max_batch: int = 4,
        max_wait_ms: int = 20,
        on_start: BatchStarted | None = None,
        on_progress: BatchProgress | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.editor = editor
        self.images = images
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.on_start = on_start
        self.on_progress = on_progress
        self.batch_sizes: list[int] = []
        self._waiting: list[_Waiting] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MicroBatcher:
        self._task = asyncio.create_task(self._serve(), name="pix2chat-batcher")
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self, work: Work) -> Output:
        """Compute one sample (raises what its own pipeline call raised)."""
        future: asyncio.Future[Output] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(work, future))
        self._wakeup.set()
        return await future

    def _next_batch(self) -> list[_Waiting]:
        self._waiting = [item for item in self._waiting if not item.future.done()]
        if not self._waiting:
            return []
        signature = self._waiting[0].work.signature()
        same = [item for item in self._waiting if item.work.signature() == signature]
        return same[: self.max_batch]

    async def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(batch) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
                batch = self._next_batch()
            for item in batch:
                self._waiting.remove(item)
            try:
                await self._run(batch)
            except Exception as error:  # never leave a job waiting on a dead batcher
                log.exception("batcher crashed on a batch")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)

    async def _run(self, batch: list[_Waiting]) -> None:
        ids = [item.work.version_id for item in batch]
        self.batch_sizes.append(len(batch))
        if self.on_start is not None:
            try:
                await self.on_start(ids)
            except Exception:
                log.exception("batch start hook failed")
        try:
            outputs = await self._compute(batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), error)
            for item in batch:
                try:
                    (output,) = await self._compute([item])
                except Exception as single_error:
                    if not item.future.done():
                        item.future.set_exception(single_error)
                else:
                    if not item.future.done():
                        item.future.set_result(output)
            return
        for item, output in zip(batch, outputs, strict=True):
            if not item.future.done():
                item.future.set_result(output)

    async def _compute(self, batch: list[_Waiting]) -> list[Output]:
        ids = [item.work.version_id for item in batch]
        on_progress = self.on_progress

        def report(step: int, total: int) -> None:
            if on_progress is not None:
                on_progress(ids, step, total)

        progress = threadsafe_progress(report)
        works = [item.work for item in batch]
        return await self.model.run(compute_batch, self.editor, self.images, works, progress)
