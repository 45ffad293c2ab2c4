"""The editor boundary: what the scheduler needs from a model, plus a deterministic fake."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from editor.params import EditParams


@dataclass(frozen=True, slots=True)
class EditRequest:
    """One sample of a batch: an RGB image already fitted to its resolution, and what to do."""

    image: Image.Image
    instruction: str
    params: EditParams


class ProgressCallback(Protocol):
    """Called from the model thread after each denoising step."""

    def __call__(self, step: int, total: int) -> None: ...


class PreviewCallback(Protocol):
    """Called from the model thread every few steps with previews keyed by request index.

    The keys index the requests given to `edit_batch`; a split or padded batch still reports
    each request under its own index.
    """

    def __call__(self, step: int, total: int, images: Mapping[int, Image.Image]) -> None: ...


class Editor(Protocol):
    """Runs InstructPix2Pix edits. Blocking; the scheduler calls it from one dedicated thread.

    All requests of one call share image size, steps and both guidance scales
    (`EditParams.batch_key`); each has its own seed and instruction.
    """

    max_instruction_tokens: int

    def load(self) -> None:
        """Load weights (slow; called once, from the model thread)."""

    def count_tokens(self, instruction: str) -> int:
        """Tokens the text encoder would see, without start/end markers."""

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        """Edit every request in one pipeline call; results in request order.

        `preview`, if the editor can make previews (and is configured to), is called every few
        steps with rough pictures of the results; editors without previews never call it.
        """

    def describe(self) -> dict[str, str]:
        """Facts for `pix2chat doctor`: device, dtype, model."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an edit failed for lack of memory, so a smaller batch may fit.

    Python's MemoryError, CUDA's torch.OutOfMemoryError (a RuntimeError) and the RuntimeErrors
    MPS and the CPU allocator raise instead; by message, so this module needs no torch.
    """
    if isinstance(error, MemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


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
    shade = request.params.seed % 256
    tint = Image.new(
        "RGB", request.image.size, (shade, 255 - shade, len(request.instruction) % 256)
    )
    return Image.blend(request.image.convert("RGB"), tint, amount)
