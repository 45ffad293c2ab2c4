"""The editor boundary: what the schedulers need from a model (doubles live in editor/testing)."""

from __future__ import annotations

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
