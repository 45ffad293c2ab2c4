"""FLUX.1 Kontext: text guidance becomes Kontext's distilled guidance; no image guidance.

Kontext would resize every input to one of its preferred ~1 MP buckets; pix2chat keeps the
user's aspect instead (`_auto_resize=False`) and asks for exactly the working size, whose
sides `FamilyEditor` already made multiples of 16 (the VAE's 8 times the 2x2 patches).
True classifier-free guidance (`true_cfg_scale`) stays off: it doubles the cost and pix2chat
has no negative prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.flux.pipeline_flux_kontext import FluxKontextPipeline
from PIL import Image

from editor.base import EditRequest
from editor.families.adapter import StepCallback, reporting
from editor.families.registry import FLUX_KONTEXT

MAX_SEQUENCE_LENGTH = 512
"""T5 tokens Kontext reads; the instruction limit."""


class FluxKontextAdapter:
    """`FluxKontextPipeline`."""

    family = FLUX_KONTEXT
    tokenizer_subfolder = "tokenizer_2"

    def load(self, model: str, torch_dtype: torch.dtype) -> Any:
        return FluxKontextPipeline.from_pretrained(model, dtype=torch_dtype)

    def instruction_limit(self, tokenizer_max: int) -> int:
        return min(tokenizer_max, MAX_SEQUENCE_LENGTH) - 1  # T5: an end marker

    def multiple(self, pipe: Any) -> int:
        return int(pipe.vae_scale_factor) * 2

    def run(
        self,
        pipe: Any,
        requests: Sequence[EditRequest],
        size: tuple[int, int],
        generators: list[torch.Generator],
        on_step: StepCallback,
    ) -> list[Image.Image]:
        params = requests[0].params
        width, height = size

        output = pipe(
            image=[request.image for request in requests],
            prompt=[request.instruction for request in requests],
            height=height,
            width=width,
            max_area=width * height,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            generator=generators,
            callback_on_step_end=reporting(on_step),
            max_sequence_length=min(MAX_SEQUENCE_LENGTH, pipe.tokenizer_2.model_max_length),
            output_type="pil",
            _auto_resize=False,
        )
        return list(output.images)
