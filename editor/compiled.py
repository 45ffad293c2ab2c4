"""Speed options applied to a loaded pipeline, and the torch.compile'd shapes it can run.

`apply_speed_options` changes the pipeline's modules once, after loading (memory format, fused
projections, compiled UNet and VAE decoder); `warm_up` compiles every configured shape before
users arrive; `CompiledModules` says which shapes are compiled and swaps the compiled or plain
modules into the pipeline for each call; `padded_plan` fits a batch to compiled batch sizes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image

from editor.base import EditRequest, is_out_of_memory
from editor.errors import ModelLoadError
from editor.params import EditParams
from editor.speed import SpeedOptions, free_memory

log = logging.getLogger(__name__)

WARM_UP_STEPS = 3
"""Enough calls per shape for torch.compile to compile and CUDA graph trees to record."""

Shape = tuple[int, int, int]
"""(width, height, batch size) of one compiled graph."""


class CompiledModules:
    """torch.compile'd modules next to the plain ones, and the shapes compiled so far.

    Batches of shapes that were not warmed up run the plain modules instead of compiling on a
    user's time. Empty (and false) when compile is off.
    """

    def __init__(self) -> None:
        self.plain: dict[str, torch.nn.Module] = {}
        self.compiled: dict[str, torch.nn.Module] = {}
        self.warm: set[Shape] = set()

    def __bool__(self) -> bool:
        return bool(self.compiled)

    def batch_sizes(self, request: EditRequest) -> list[int]:
        """Batch sizes compiled for this request's shape; none without compile or guidance.

        Without classifier-free guidance (a guidance scale of 1) the UNet sees a third of the
        batch, a shape that was not compiled.
        """
        params = request.params
        if not self.compiled or params.guidance_scale <= 1.0 or params.image_guidance_scale < 1.0:
            return []
        width, height = request.image.size
        return sorted(b for w, h, b in self.warm if (w, h) == (width, height))

    def install(self, pipe: StableDiffusionInstructPix2PixPipeline, compiled: bool) -> None:
        """Put the compiled (or the plain) UNet and decoder into the pipeline for the next call."""
        modules = self.compiled if compiled else self.plain
        if "unet" in modules:
            pipe.unet = modules["unet"]
        if "decoder" in modules:
            pipe.vae.decoder = modules["decoder"]


def apply_speed_options(
    pipe: StableDiffusionInstructPix2PixPipeline, speed: SpeedOptions, device_type: str
) -> CompiledModules:
    """Memory format, fused projections and compiled modules; call after fusing LoRA.

    Fusing copies the current projection weights, so it must follow LoRA fusing; compiling
    must follow both, since it captures the modules as they are.
    """
    if speed.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if speed.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    if speed.cuda_graphs and device_type != "cuda":
        log.warning("cuda_graphs is ignored on %s: CUDA graphs need CUDA", pipe.device)
    modules = CompiledModules()
    if speed.compile == "off":
        return modules
    options: dict[str, Any] = {"dynamic": False, "backend": speed.compile_backend}
    mode = speed.inductor_mode(device_type)
    if mode is not None:
        options["mode"] = mode
    modules.plain["unet"] = pipe.unet
    modules.compiled["unet"] = _compile(pipe.unet, options)
    if speed.compile == "unet+vae":
        modules.plain["decoder"] = pipe.vae.decoder
        modules.compiled["decoder"] = _compile(pipe.vae.decoder, options)
    # One graph per shape; keep them all rather than falling back to eager after eight.
    shapes = len(speed.compile_sizes) * len(set(speed.compile_batch_sizes))
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), shapes + 2))
    return modules


def _compile(module: torch.nn.Module, options: dict[str, Any]) -> torch.nn.Module:
    compiled = torch.compile(module, **options)
    assert isinstance(compiled, torch.nn.Module)  # an OptimizedModule wrapping `module`
    return compiled


def warm_up(
    run: Callable[[list[EditRequest], int], object],
    speed: SpeedOptions,
    modules: CompiledModules,
    device_type: str,
) -> None:
    """Compile every configured (size, batch size) now, so no user pays for it.

    `run(requests, batch_size)` makes one compiled pipeline call. A batch size that does not
    fit in memory is left out (with a warning) along with the larger ones; batches of those
    sizes are then split into the compiled sizes that fit.
    """
    started = time.perf_counter()
    for width, height in speed.compile_sizes:
        image = Image.new("RGB", (width, height), (128, 128, 128))
        for batch_size in sorted(set(speed.compile_batch_sizes)):
            requests = [
                EditRequest(image, "warm up", EditParams(num_inference_steps=WARM_UP_STEPS))
            ] * batch_size
            try:
                run(requests, batch_size)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise ModelLoadError(
                        f"torch.compile failed while warming up {width}x{height} at batch "
                        f"{batch_size}: {error}\nTurn compile off to run without it.",
                        option="compile",
                        value=speed.compile,
                        suggestion="off",
                    ) from error
                log.warning(
                    "no memory to compile batch %d at %dx%d; larger batches there will be split",
                    batch_size,
                    width,
                    height,
                )
                oom = True
            else:
                oom = False
                modules.warm.add((width, height, batch_size))
            if oom:
                free_memory(device_type)
                break
    log.info(
        "compiled %d shape(s) in %.0f s (%s)",
        len(modules.warm),
        time.perf_counter() - started,
        speed.summary(device_type),
    )


def padded_plan(count: int, batch_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split `count` samples into (real, padded) chunks that only use compiled batch sizes.

    Chunks take the largest compiled size while enough samples remain; the last one is padded
    up to the smallest compiled size that holds it.
    """
    sizes = sorted(set(batch_sizes))
    plan = []
    while count > 0:
        real = min(count, sizes[-1])
        plan.append((real, next(size for size in sizes if size >= real)))
        count -= real
    return plan
