"""The segmenter part of `pix2chat bench develop`: how fast `/keep` and `/only` masks come.

Two figures, both without downloading anything:
- masks per second through the production `ClipSegSegmenter` on the CPU, with the tiny random
  CLIPSeg (the code path of every mask: processor, model, upsampling, threshold);
- the real CLIPSeg architecture (`CIDAS/clipseg-rd64-refined`'s config: CLIP ViT-B/16 vision,
  reduce_dim 64, the refined transposed convolution) built with random weights: its parameter
  count, its weights' bytes in float32 and float16, and the CPU time of one 352 px mask.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.commands.bench_develop import SIZES_MP, Echo, photo

REAL_SIDE = 352
"""The released CLIPSeg checkpoints' input and output side."""


@dataclass(frozen=True, slots=True)
class SegmenterFigures:
    """What the benchmark measured."""

    tiny_masks_per_s: float
    tiny_texts_per_call: int
    real_parameters: int
    real_float32_mb: float
    real_float16_mb: float
    real_cpu_ms: float | None
    confine_ms: dict[int, float]


def tiny_masks_per_second(runs: int, texts: int = 1, size: tuple[int, int] = (768, 512)) -> float:
    """Masks per second of the production segmenter on the tiny CLIPSeg (after a warm-up)."""
    from editor.segment import ClipSegSegmenter
    from editor.testing.tiny import build_tiny_clipseg

    with tempfile.TemporaryDirectory() as folder:
        segmenter = ClipSegSegmenter(str(build_tiny_clipseg(Path(folder))), device="cpu")
        segmenter.load()
    image = photo(*size)
    words = ["the logo", "the background", "the shirt", "the sky"][:texts]
    segmenter.masks(image, words, size=(3000, 2000))
    started = time.perf_counter()
    for _ in range(runs):
        segmenter.masks(image, words, size=(3000, 2000))
    return runs * len(words) / (time.perf_counter() - started)


def confine_milliseconds(megapixels: int, runs: int = 3) -> float:
    """p50 ms of applying a keep and an only mask to an edit at `megapixels` (the step after
    develop when regions are set)."""
    import numpy as np
    from PIL import Image

    from editor.develop import confine

    width, height = SIZES_MP[megapixels]
    parent = photo(width, height)
    edited = Image.fromarray((np.asarray(parent) // 2).astype(np.uint8))
    keep, only = Image.new("L", parent.size, 0), Image.new("L", parent.size, 0)
    keep.paste(255, (width // 3, height // 3, width // 2, height // 2))
    only.paste(255, (0, 0, width * 3 // 4, height))
    confine(parent, edited, keep=keep, only=only)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        confine(parent, edited, keep=keep, only=only)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def real_architecture(runs: int) -> tuple[int, float, float, float | None]:
    """Parameters, float32 MB, float16 MB and p50 CPU ms per mask (None without runs) of the
    real CLIPSeg architecture with random weights."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from editor.tokenizer import build_byte_tokenizer

    config = CLIPSegConfig(
        vision_config={"patch_size": 16, "image_size": 224},  # as released; 352 px interpolates
        use_complex_transposed_convolution=True,
    )
    model = CLIPSegForImageSegmentation(config).eval()
    parameters = sum(p.numel() for p in model.parameters())
    milliseconds: float | None = None
    if runs > 0:
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = build_byte_tokenizer(Path(folder))
        text = tokenizer(["the logo"], return_tensors="pt", padding=True)
        pixels = torch.rand(1, 3, REAL_SIDE, REAL_SIDE)
        times = []
        with torch.inference_mode():
            for _ in range(runs + 1):  # the first is a warm-up
                started = time.perf_counter()
                model(input_ids=text.input_ids, pixel_values=pixels)
                times.append(time.perf_counter() - started)
        milliseconds = statistics.median(times[1:]) * 1000
    return parameters, parameters * 4 / 2**20, parameters * 2 / 2**20, milliseconds


def run_segmenter_benchmark(
    runs: int = 20,
    real_runs: int = 3,
    echo: Echo = print,
    confine_sizes: Sequence[int] = (12, 24),
) -> SegmenterFigures:
    """Print and return the segmenter figures."""
    echo(f"== segmenter: masks for /keep and /only (CPU, {runs} calls) ==")
    single = tiny_masks_per_second(runs, texts=1)
    paired = tiny_masks_per_second(max(1, runs // 2), texts=2)
    echo(
        f"tiny CLIPSeg, production path: {single:.1f} masks/s (1 region per call), "
        f"{paired:.1f} masks/s (keep + only in one call)"
    )
    parameters, fp32, fp16, ms = real_architecture(real_runs)
    echo(
        f"real CLIPSeg (rd64-refined architecture, random weights): {parameters / 1e6:.1f} M "
        f"parameters, {fp32:.0f} MiB in float32, {fp16:.0f} MiB in float16"
    )
    if ms is not None:
        echo(f"real CLIPSeg, one {REAL_SIDE} px mask on the CPU: p50 {ms:.0f} ms of {real_runs}")
    applied = {mp: confine_milliseconds(mp) for mp in confine_sizes}
    if applied:
        echo(
            "applying keep + only masks to an edit: "
            + ", ".join(f"{mp} MP p50 {value:.0f} ms" for mp, value in applied.items())
        )
    return SegmenterFigures(single, 1, parameters, fp32, fp16, ms, applied)
