"""`pix2chat edit`: one photo, one instruction, the real pipeline, no chat or database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bot.app import make_editor
from bot.config import Settings
from bot.service.preferences import new_seed
from editor.base import EditRequest, ProgressCallback
from editor.errors import EmptyInstruction, InstructionTooLong
from editor.images import ImageLimits, encode_png, fit_to_resolution, load_image
from editor.params import EditParams


@dataclass(frozen=True, slots=True)
class OneShotRequest:
    """Command-line arguments; None means the configured default."""

    image: Path
    instruction: str
    output: Path
    steps: int | None = None
    guidance: float | None = None
    image_guidance: float | None = None
    seed: int | None = None
    resolution: int | None = None


@dataclass(frozen=True, slots=True)
class OneShotResult:
    output: Path
    size: tuple[int, int]
    seed: int
    seconds: float


def edit_file(
    settings: Settings, request: OneShotRequest, progress: ProgressCallback | None = None
) -> OneShotResult:
    """Validate the photo and the instruction like a chat message, edit, write a lossless PNG.

    Raises:
        UserError: the photo or the instruction is refused (before the model is loaded, except
            for an instruction too long for the text encoder).
        OSError: the photo cannot be read or the result cannot be written.
        ModelLoadError: the configured model cannot be loaded.
    """
    data = request.image.read_bytes()
    image = load_image(
        data, ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
    )
    instruction = " ".join(request.instruction.split())
    if not instruction:
        raise EmptyInstruction()
    defaults = settings.default_params()
    params = EditParams(
        num_inference_steps=request.steps or defaults.num_inference_steps,
        guidance_scale=request.guidance or defaults.guidance_scale,
        image_guidance_scale=request.image_guidance or defaults.image_guidance_scale,
        seed=new_seed() if request.seed is None else request.seed,
        resolution=request.resolution or defaults.resolution,
    )
    editor = make_editor(settings)
    started = time.perf_counter()
    editor.load()
    # The pipeline would silently drop what the text encoder cannot read; say so instead.
    tokens = editor.count_tokens(instruction)
    if tokens > editor.max_instruction_tokens:
        raise InstructionTooLong(tokens=tokens, max_tokens=editor.max_instruction_tokens)
    fitted = fit_to_resolution(image, params.resolution)
    [result] = editor.edit_batch([EditRequest(fitted, instruction, params)], progress)
    request.output.parent.mkdir(parents=True, exist_ok=True)
    request.output.write_bytes(encode_png(result))
    return OneShotResult(request.output, result.size, params.seed, time.perf_counter() - started)
