"""Editor doubles: the deterministic NullEditor and its variants that gate, fail, pause, run out
of memory, time or slow down edits, and `BoxSegmenter`, a segmenter that answers named boxes.
For tests, benchmarks and crash drills; production code never imports them."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from PIL import Image

from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback

GATE_TIMEOUT_S = 10.0


class NullEditor:
    """Returns the input, slightly changed by the seed, instantly: for fast tests and benchmarks.

    Deterministic: the same request gives the same pixels; `fail_on` makes an instruction raise
    so tests can check failure isolation; `step_delay_s` makes each step take time, so tests can
    interrupt a job mid-run; `preview_every` makes it offer a preview every that many steps
    (the input blended towards the result as the steps advance), like the TAESD previews of the
    real editor.
    """

    max_instruction_tokens = 75

    def __init__(
        self, fail_on: str | None = None, step_delay_s: float = 0.0, preview_every: int = 0
    ) -> None:
        self.fail_on = fail_on
        self.step_delay_s = step_delay_s
        self.preview_every = preview_every
        self.calls: list[list[EditRequest]] = []

    def load(self) -> None:
        return None

    def count_tokens(self, instruction: str) -> int:
        return len(instruction.split())

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        self.calls.append(list(requests))
        steps = requests[0].params.num_inference_steps if requests else 0
        for step in range(1, steps + 1):
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
            if progress is not None:
                progress(step, steps)
            every = self.preview_every
            if preview is not None and every > 0 and step % every == 0 and step < steps:
                amount = 0.25 * step / steps
                preview(step, steps, {i: _tinted(r, amount) for i, r in enumerate(requests)})
        results = []
        for request in requests:
            if self.fail_on is not None and self.fail_on in request.instruction:
                raise RuntimeError(f"NullEditor told to fail on {self.fail_on!r}")
            results.append(_tinted(request, 0.25))
        return results

    def describe(self) -> dict[str, str]:
        return {"editor": "null (no model)", "device": "none"}


def _tinted(request: EditRequest, amount: float) -> Image.Image:
    """The NullEditor's "edit": the input blended towards a colour chosen by seed and text."""
    # Each channel from other bits of the seed: two seeds almost never give a similar colour
    # (with one shade of 256, four variations shared a picture now and then).
    seed = request.params.seed
    tint = Image.new(
        "RGB",
        request.image.size,
        (seed % 256, (seed >> 8) % 256, (len(request.instruction) + (seed >> 16)) % 256),
    )
    return Image.blend(request.image.convert("RGB"), tint, amount)


class GatedEditor(NullEditor):
    """The NullEditor, but each batch waits for `gate`: close it to keep edits pending.

    The gate starts open (`closed=True` starts it shut); a gate never opened fails the batch
    after a timeout instead of hanging the test.
    """

    def __init__(
        self,
        fail_on: str | None = None,
        step_delay_s: float = 0.0,
        *,
        closed: bool = False,
        preview_every: int = 0,
    ) -> None:
        super().__init__(fail_on=fail_on, step_delay_s=step_delay_s, preview_every=preview_every)
        self.gate = threading.Event()
        if not closed:
            self.gate.set()

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        if not self.gate.wait(timeout=GATE_TIMEOUT_S):
            raise RuntimeError("the test never opened the gate")
        return super().edit_batch(requests, progress, preview)


class PausingPreviewEditor(GatedEditor):
    """The NullEditor with a preview every step, holding the edit after the preview of step
    `pause_at` until `resume` is set, so a test can look at a running edit's preview."""

    def __init__(self, pause_at: int = 2) -> None:
        super().__init__(preview_every=1)
        self.pause_at = pause_at
        self.resume = threading.Event()

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        def hold(step: int, total: int, images: Mapping[int, Image.Image]) -> None:
            assert preview is not None
            preview(step, total, images)
            if step == self.pause_at and not self.resume.wait(timeout=GATE_TIMEOUT_S):
                raise RuntimeError("the test never resumed the edit")

        return super().edit_batch(requests, progress, hold if preview is not None else None)


class OutOfMemoryEditor(NullEditor):
    """Runs out of GPU memory on any batch holding a "huge" instruction, as torch reports it."""

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        if any("huge" in request.instruction for request in requests):
            self.calls.append(list(requests))
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().edit_batch(requests, progress, preview)


class TimedNullEditor(NullEditor):
    """Remembers when the model part of the last batch ended (`finished_at`, perf_counter).

    The service benchmark subtracts it from the time the reply arrived: what is left is the
    service's own overhead.
    """

    finished_at = 0.0

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        results = super().edit_batch(requests, progress, preview)
        self.finished_at = time.perf_counter()
        return results


class StepDelay:
    """Wraps an editor so every denoising step takes `delay_s` longer.

    For drills and tests that must kill a worker in the middle of an edit, with any model.
    """

    def __init__(self, editor: Editor, delay_s: float) -> None:
        self.inner = editor
        self.delay_s = delay_s
        self.max_instruction_tokens = editor.max_instruction_tokens

    def load(self) -> None:
        self.inner.load()

    def count_tokens(self, instruction: str) -> int:
        return self.inner.count_tokens(instruction)

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        def slow(step: int, total: int) -> None:
            time.sleep(self.delay_s)
            if progress is not None:
                progress(step, total)

        return self.inner.edit_batch(requests, slow, preview)

    def describe(self) -> dict[str, str]:
        return {**self.inner.describe(), "step_delay_s": str(self.delay_s)}


Box = tuple[float, float, float, float]
"""(left, top, right, bottom) as shares of the width and height, 0..1."""


class BoxSegmenter:
    """A segmenter double: each known text is a fixed box, unknown texts match nothing.

    Exact, so tests can assert which pixels a region covers. `calls` counts `masks` calls and
    `loaded` says whether `load` ran (the bot must load segmenters lazily).
    """

    def __init__(self, boxes: Mapping[str, Box]) -> None:
        self.boxes = {text.casefold(): box for text, box in boxes.items()}
        self.loaded = False
        self.calls = 0
        self.threads: list[str] = []

    def load(self) -> None:
        self.loaded = True

    def masks(
        self, image: Image.Image, texts: Sequence[str], size: tuple[int, int] | None = None
    ) -> list[Image.Image]:
        self.load()
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        width, height = size or image.size
        masks = []
        for text in texts:
            mask = Image.new("L", (width, height), 0)
            box = self.boxes.get(text.casefold())
            if box is not None:
                mask.paste(255, box_pixels(box, (width, height)))
            masks.append(mask)
        return masks


def box_pixels(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A share box in pixels of `size` (what `BoxSegmenter` paints)."""
    width, height = size
    left, top, right, bottom = box
    return (round(left * width), round(top * height), round(right * width), round(bottom * height))


class SlowLoadingEditor(NullEditor):
    """The NullEditor whose `load` waits for `loaded` (a model still downloading), then
    succeeds, or raises `fail_with` (a model that cannot load); a load never let through
    fails after a timeout instead of hanging the test."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        super().__init__()
        self.fail_with = fail_with
        self.loaded = threading.Event()
        self.load_started = threading.Event()

    def load(self) -> None:
        self.load_started.set()
        if not self.loaded.wait(timeout=GATE_TIMEOUT_S):
            raise RuntimeError("the test never let the model load")
        if self.fail_with is not None:
            raise self.fail_with
