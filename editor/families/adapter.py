"""What a family adapter does: load its pipeline and map one batch onto one pipeline call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from PIL import Image

from editor.base import EditRequest
from editor.families.registry import Family

StepCallback = Callable[[int, int], None]
"""Called with (step, total) after each denoising step, from the model thread."""

StepEnd = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]
"""diffusers' `callback_on_step_end` signature: (pipeline, step index, timestep, kwargs)."""


def reporting(on_step: StepCallback) -> StepEnd:
    """A `callback_on_step_end` that reports (step, total) and changes nothing."""

    def on_step_end(
        pipeline: Any, step_index: int, _timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        on_step(step_index + 1, pipeline.num_timesteps)
        return kwargs

    return on_step_end


class FamilyAdapter(Protocol):
    """One small adapter per family; `FamilyEditor` does the rest (device, LoRA, sizes)."""

    family: Family
    tokenizer_subfolder: str
    """The tokenizer whose length limit bounds an instruction."""

    def load(self, model: str, torch_dtype: torch.dtype) -> Any:
        """`from_pretrained` of the family's pipeline class (raises on failure)."""

    def instruction_limit(self, tokenizer_max: int) -> int:
        """Instruction tokens the family reads, given its tokenizer's `model_max_length`."""

    def multiple(self, pipe: Any) -> int:
        """Both sides of the working image must be multiples of this many pixels."""

    def run(
        self,
        pipe: Any,
        requests: Sequence[EditRequest],
        size: tuple[int, int],
        generators: list[torch.Generator],
        on_step: StepCallback,
    ) -> list[Image.Image]:
        """One pipeline call: every request's image is already `size`; results at `size`."""
