"""`pix2chat edit`: one photo, one instruction, the real pipeline, no chat or database."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from bot.app import make_editor, with_setting_hint
from bot.config import Settings
from bot.service.preferences import new_seed
from editor.base import EditRequest, ProgressCallback
from editor.errors import EmptyInstruction, InstructionTooLong, ModelLoadError, UserError
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


def edit_command(settings: Settings, request: OneShotRequest) -> int:
    """`pix2chat edit`: edit with progress on stderr; the exit status (2: bad input, 1: model)."""
    from bot.service.conversation import error_reply

    try:
        result = edit_file(settings, request, progress=print_progress)
    except UserError as error:
        typer.secho(error_reply(error).text(), fg="red", err=True)
        return 2
    except FileNotFoundError as error:
        typer.secho(f"No such file: {error.filename or request.image}", fg="red", err=True)
        return 2
    except OSError as error:  # a folder, no permission, a full disk...
        message = f"{error.filename or request.image}: {error.strerror or error}"
        typer.secho(message, fg="red", err=True)
        return 2
    except ModelLoadError as error:
        typer.secho(with_setting_hint(error), fg="red", err=True)
        return 1
    typer.echo(
        f"\nSaved {result.output} ({result.size[0]}x{result.size[1]}, seed {result.seed}, "
        f"{result.seconds:.1f} s)"
    )
    return 0


def print_progress(step: int, total: int) -> None:
    sys.stderr.write(f"\rEditing… {step}/{total}")
    sys.stderr.flush()
