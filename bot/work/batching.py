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
from datetime import UTC, datetime
from typing import Generic, ParamSpec, Protocol, TypeVar

from PIL import Image

from bot.work.metrics import Metrics
from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback
from editor.develop import confine
from editor.develop import develop as develop_onto
from editor.errors import ModelLoadError
from editor.finishing.finisher import Finisher
from editor.finishing.spec import Finish
from editor.images import encode_png, encode_preview_jpeg, fit_to_resolution, fitted_size
from editor.params import EditParams
from editor.regions import KEEP, ONLY, Region, RegionMask
from editor.scoring import CandidateScorer
from editor.segment import Segmenter, coverage
from storage.images import ImageStore

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")


@dataclasses.dataclass(frozen=True, slots=True)
class Work:
    """One sample to compute: a stored parent image, an instruction, every parameter.

    `parent_size` is the stored parent's own size; the model works at its fitted size.
    `regions` are the edit's `/keep` and `/only` regions, masked on the parent at compute time.
    With `finish`, the sample is a finishing operation on the full-size parent instead of an edit.
    """

    version_id: int
    parent_sha: str
    parent_size: tuple[int, int]
    instruction: str
    params: EditParams
    regions: tuple[Region, ...] = ()
    finish: Finish | None = None
    queued_at: datetime | None = None
    """When the edit was queued (its version's `created_at`), for the queue-wait metric."""
    scored: bool = False
    """A candidate of a set: the scorer ranks it among its siblings."""

    def signature(self) -> tuple[object, ...]:
        if self.finish is not None:  # runs alone
            return ("finish", self.version_id)
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
    masks: tuple[RegionMask, ...] = ()
    score: float | None = None

    @property
    def shas(self) -> list[str]:
        """Every image this result stored (to delete if the version is gone meanwhile)."""
        raw = [] if self.raw_sha is None else [self.raw_sha]
        return [self.image_sha, *raw, *(mask.mask_sha for mask in self.masks)]


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
    segmenter: Segmenter | None = None,
    finisher: Finisher | None = None,
    scorer: CandidateScorer | None = None,
) -> list[Output]:
    """Decode parents, run one pipeline call, store results losslessly (model thread).

    The model sees each parent fitted to its working resolution. With `develop`, each output is
    developed onto its full-resolution parent (what is stored as the image, at the parent's
    size) and the raw output is stored beside it; without, the raw output is the image.
    A work with regions has them masked on its parent by `segmenter` (loaded on first use,
    here in the model thread) and applied to the result (`editor.develop.confine`); the masks
    are stored as PNGs and named in the output.
    With `preview`, the editor's previews (if it makes any) reach it as JPEGs named by version.
    Finishing operations (upscale, cut-out, white) run through `finisher` instead, one by one.
    With `scorer`, candidates of a set (`Work.scored`) get their score (`candidate_scores`).
    """
    if works and works[0].finish is not None:
        return [compute_finish(finisher, images, work, progress) for work in works]
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
    scores = candidate_scores(scorer, works, requests, results) if scorer is not None else {}
    outputs = []
    for work, request, result in zip(works, requests, results, strict=True):
        raw = result.convert("RGB")
        score = scores.get(work.version_id)
        if not develop:
            image, masks = _confined(segmenter, images, work, request.image, request.image, raw)
            outputs.append(
                Output(
                    work.version_id,
                    images.put(encode_png(image)),
                    image.size,
                    masks=masks,
                    score=score,
                )
            )
            continue
        # Decoded again rather than kept from above: one full-size parent in memory at a time.
        parent = _decode(images, work.parent_sha)
        developed = develop_onto(parent, request.image, raw).image
        image, masks = _confined(segmenter, images, work, request.image, parent, developed)
        outputs.append(
            Output(
                work.version_id,
                images.put(encode_png(image)),
                image.size,
                raw_sha=images.put(encode_png(raw)),
                masks=masks,
                score=score,
            )
        )
    return outputs


def _confined(
    segmenter: Segmenter | None,
    images: ImageStore,
    work: Work,
    working: Image.Image,
    parent: Image.Image,
    edited: Image.Image,
) -> tuple[Image.Image, tuple[RegionMask, ...]]:
    """`edited` with the work's regions applied against `parent`, and the stored masks.

    The segmenter reads the working-size copy (CLIPSeg sees 352 px anyway) and answers masks
    at the parent's size; regions that cover nothing or everything there are skipped.
    """
    if not work.regions:
        return edited, ()
    if segmenter is None:
        raise RuntimeError(f"edit {work.version_id} has regions but no segmenter is configured")
    texts = [region.text for region in work.regions]
    found = segmenter.masks(working, texts, size=parent.size)
    # A region that matches nothing or everything on this parent (a new photo without "the
    # shirt") would silently block the whole edit or do nothing: it is not applied, and the
    # version records no mask for it.
    used = [
        (region, mask)
        for region, mask in zip(work.regions, found, strict=True)
        if not (coverage(mask).is_nothing or coverage(mask).is_everything)
    ]
    by_kind = {region.kind: mask for region, mask in used}
    image = confine(parent, edited, keep=by_kind.get(KEEP), only=by_kind.get(ONLY))
    masks = tuple(
        RegionMask(region.kind, region.text, images.put(encode_png(mask))) for region, mask in used
    )
    return image, masks


def compute_finish(
    finisher: Finisher | None, images: ImageStore, work: Work, progress: ProgressCallback
) -> Output:
    """One finishing operation on the full-size parent, its result stored losslessly."""
    assert work.finish is not None
    if finisher is None:
        raise RuntimeError("this worker was started without the finishing tools")
    progress(0, 1)
    with Image.open(io.BytesIO(images.get(work.parent_sha))) as stored:
        has_alpha = stored.mode in ("RGBA", "LA", "PA") or "transparency" in stored.info
        parent = stored.convert("RGBA" if has_alpha else "RGB")
    result = finisher.run(work.finish, parent).image
    progress(1, 1)
    return Output(work.version_id, images.put(encode_png(result)), result.size)


def candidate_scores(
    scorer: CandidateScorer,
    works: Sequence[Work],
    requests: Sequence[EditRequest],
    results: Sequence[Image.Image],
) -> dict[int, float]:
    """Scores of the scored works by version id, ranked among candidates of the same parent and
    instruction (model thread). A scorer that fails leaves them unranked: the edits stand."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, work in enumerate(works):
        if work.scored:
            groups.setdefault((work.parent_sha, work.instruction), []).append(index)
    scores: dict[int, float] = {}
    for (_, instruction), indexes in groups.items():
        try:
            values = scorer.score(
                requests[indexes[0]].image,
                [results[index].convert("RGB") for index in indexes],
                instruction,
            )
        except ModelLoadError as error:  # not configured or not reachable: one line, no trace
            log.warning("candidates stay unranked: %s", str(error).splitlines()[0])
            continue
        except Exception:
            log.exception("the candidate scorer failed; candidates stay unranked")
            continue
        scores.update({works[i].version_id: v for i, v in zip(indexes, values, strict=True)})
    return scores


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
        segmenter: Segmenter | None = None,
        scorer: CandidateScorer | None = None,
        name: str = "pix2chat-batcher",
        finisher: Finisher | None = None,
        metrics: Metrics | None = None,
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
        self.segmenter = segmenter
        self.finisher = finisher
        self.scorer = scorer
        self.name = name
        self.metrics = metrics or Metrics()
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
        self._observe_start([work for _, work in claimed])
        self.metrics.running.inc(len(claimed))
        try:
            await self._run_claimed(claimed)
        finally:
            self.metrics.running.dec(len(claimed))

    async def _run_claimed(self, claimed: list[tuple[ItemT, Work]]) -> None:
        started = time.perf_counter()
        try:
            outputs = await self._compute([work for _, work in claimed])
        except Exception as error:
            if len(claimed) == 1:
                self.metrics.edits.labels(outcome="failed").inc()
                await self.owner.failed(claimed[0][0], error)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(claimed), error)
            for item, work in claimed:
                started = time.perf_counter()
                try:
                    (output,) = await self._compute([work])
                except Exception as single_error:
                    self.metrics.edits.labels(outcome="failed").inc()
                    await self.owner.failed(item, single_error)
                else:
                    seconds = time.perf_counter() - started
                    self._observe_done(1, seconds)
                    await self.owner.succeeded([(item, output)], seconds)
            return
        results = [(item, output) for (item, _), output in zip(claimed, outputs, strict=True)]
        seconds = time.perf_counter() - started
        self._observe_done(len(results), seconds)
        await self.owner.succeeded(results, seconds)

    def _observe_start(self, works: list[Work]) -> None:
        self.metrics.batch_size.observe(len(works))
        now = datetime.now(UTC)
        for work in works:
            if work.queued_at is not None:
                queued = work.queued_at
                if queued.tzinfo is None:  # SQLite hands back naive UTC datetimes
                    queued = queued.replace(tzinfo=UTC)
                self.metrics.queue_wait.observe(max(0.0, (now - queued).total_seconds()))

    def _observe_done(self, count: int, seconds: float) -> None:
        self.metrics.edits.labels(outcome="done").inc(count)
        for _ in range(count):
            self.metrics.edit_duration.observe(seconds)

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
                self.editor,
                self.images,
                works,
                progress,
                preview,
                develop=self.develop,
                segmenter=self.segmenter,
                finisher=self.finisher,
                scorer=self.scorer,
            )
        finally:
            spent = time.perf_counter() - started
            self.model_thread_s += spent
            self.metrics.gpu_seconds.inc(spent)
