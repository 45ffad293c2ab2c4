"""SDXL InstructPix2Pix and CosXL Edit: IP2P's parameters one for one, at SDXL's sizes.

Text and image guidance keep their names; SDXL's size conditioning is told the working size
(so it neither crops nor upscales in its head). CosXL Edit folders carry
`"is_cosxl_edit": true` in model_index.json, which diffusers passes to the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_instruct_pix2pix import (
    StableDiffusionXLInstructPix2PixPipeline,
)
from PIL import Image

from editor.base import EditRequest
from editor.families.adapter import StepCallback
from editor.families.registry import SDXL_INSTRUCT_PIX2PIX, read_model_index


class SdxlPix2PixAdapter:
    """`StableDiffusionXLInstructPix2PixPipeline` (also CosXL Edit)."""

    family = SDXL_INSTRUCT_PIX2PIX
    tokenizer_subfolder = "tokenizer"

    def load(self, model: str, torch_dtype: torch.dtype) -> Any:
        cosxl = bool(read_model_index(model).get("is_cosxl_edit", False))
        # No invisible watermark: it needs an extra package and alters every result.
        return StableDiffusionXLInstructPix2PixPipeline.from_pretrained(
            model, dtype=torch_dtype, add_watermarker=False, is_cosxl_edit=cosxl
        )

    def instruction_limit(self, tokenizer_max: int) -> int:
        return tokenizer_max - 2  # CLIP: start and end markers

    def multiple(self, pipe: Any) -> int:
        return int(pipe.vae_scale_factor)

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
        order = getattr(pipe.scheduler, "order", 1)

        def callback(step: int, _timestep: Any, _latents: torch.Tensor) -> None:
            on_step(step + 1, params.num_inference_steps)

        output = pipe(
            prompt=[request.instruction for request in requests],
            image=[request.image for request in requests],
            height=height,
            width=width,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            image_guidance_scale=params.image_guidance_scale,
            original_size=(height, width),
            target_size=(height, width),
            generator=generators,
            callback=callback,
            callback_steps=order,
            output_type="pil",
        )
        return list(output.images)
