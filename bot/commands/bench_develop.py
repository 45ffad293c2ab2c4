"""`pix2chat bench develop`: drift over an edit chain, and the develop step's time and memory.

The "model" is simulated here, the way a VAE round trip behaves: it recolours one known
rectangle per turn and adds uniform integer noise in [-2, 2] to every pixel. With develop on,
its output is developed onto the full-resolution image; with develop off it is plainly
upsampled to the parent's size (what chaining full-size model outputs would do).
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bot.commands.bench_service import product_photo
from editor.develop import REFERENCE_SIDE, DevelopOptions, develop
from editor.images import fit_to_resolution

Echo = Callable[[str], None]
Box = tuple[int, int, int, int]

SIZES_MP: dict[int, tuple[int, int]] = {
    1: (1224, 816),
    6: (3000, 2000),
    12: (4240, 2832),
    24: (6000, 4000),
}
"""Megapixels -> a 3:2 size, the shape of most camera photos."""


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One chain's outcome.

    Attributes:
        identical: share of pixels outside the changed rectangles still bit-identical to the
            original after every turn.
        identical_beyond_feather: the same, outside the rectangles grown by the feather's
            reach (the band develop blends on purpose, to avoid a seam).
        sizes_kept: every turn's result had the original's size.
    """

    identical: float
    identical_beyond_feather: float
    sizes_kept: bool


@dataclass(frozen=True, slots=True)
class Timing:
    """One develop step at one size: p50 wall time and peak traced memory."""

    megapixels: int
    mode: str
    p50_ms: float
    peak_mb: float


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A product photo at any size, with pixel-level texture (sensor grain) at full resolution."""
    image = product_photo(512, seed).resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    grain = rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def fake_model(
    fitted: Image.Image, box: Box | None, rng: np.random.Generator, scale: float = 1.0
) -> Image.Image:
    """Recolour `box` (working pixels) or, without one, scale all values; +-2 noise everywhere."""
    values = np.asarray(fitted).astype(np.int16)
    if box is None:
        values = (values * scale).astype(np.int16)
    else:
        x0, y0, x1, y1 = box
        values[y0:y1, x0:x1] = rng.integers(30, 226, 3)
    values += rng.integers(-2, 3, values.shape, dtype=np.int16)
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def turn_boxes(size: tuple[int, int], turns: int, seed: int = 0) -> list[Box]:
    """A different rectangle per turn, 8-20 % of each side, anywhere in the picture."""
    rng = np.random.default_rng(seed)
    width, height = size
    boxes = []
    for _ in range(turns):
        w = int(rng.integers(width * 8 // 100, width * 20 // 100))
        h = int(rng.integers(height * 8 // 100, height * 20 // 100))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        boxes.append((x0, y0, x0 + w, y0 + h))
    return boxes


def drift(
    size: tuple[int, int], turns: int, working: int, develop_on: bool, seed: int = 0
) -> DriftResult:
    """Run one chain of `turns` local edits and compare the result with the original."""
    original = photo(*size, seed=seed)
    fitted_size = fit_to_resolution(original, working).size
    rng = np.random.default_rng(seed + 1)
    changed = np.zeros((size[1], size[0]), dtype=bool)
    grown = changed.copy()
    sx, sy = size[0] / fitted_size[0], size[1] / fitted_size[1]
    options = DevelopOptions()
    reach = _feather_reach(options, fitted_size, max(sx, sy))
    current, sizes_kept = original, True
    for box in turn_boxes(fitted_size, turns, seed):
        fitted = fit_to_resolution(current, working)
        output = fake_model(fitted, box, rng)
        if develop_on:
            current = develop(current, fitted, output, options).image
        else:
            current = output.resize(size, Image.Resampling.LANCZOS)
        sizes_kept &= current.size == size
        x0, x1 = int(box[0] * sx), int(box[2] * sx)
        y0, y1 = int(box[1] * sy), int(box[3] * sy)
        changed[y0 : y1 + 1, x0 : x1 + 1] = True
        grown[max(0, y0 - reach) : y1 + reach, max(0, x0 - reach) : x1 + reach] = True
    same = (np.asarray(current) == np.asarray(original)).all(axis=2)
    return DriftResult(
        identical=float(same[~changed].mean()),
        identical_beyond_feather=float(same[~grown].mean()),
        sizes_kept=sizes_kept,
    )


def _feather_reach(options: DevelopOptions, fitted: tuple[int, int], scale: float) -> int:
    """Full-resolution pixels beyond a change that the feather may blend: grow + blur + 1."""
    radius = max(1, round(options.feather_radius * max(fitted) / REFERENCE_SIDE))
    return int(np.ceil((2 * radius + 1) * scale)) + 1


def time_develop(megapixels: int, mode: str, runs: int, working: int = 768) -> Timing:
    """p50 of `runs` develop steps at one size, then the peak memory of one more under tracemalloc."""
    parent = photo(*SIZES_MP[megapixels])
    fitted = fit_to_resolution(parent, working)
    rng = np.random.default_rng(2)
    width, height = fitted.size
    box = (width // 3, height // 3, width // 2, height // 2) if mode == "local" else None
    output = fake_model(fitted, box, rng, scale=0.5)
    develop(parent, fitted, output)  # warm-up (OpenCV's thread pool, first allocations)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = develop(parent, fitted, output)
        times.append(time.perf_counter() - started)
    assert result.mode == mode, result.mode
    tracemalloc.start()
    try:
        develop(parent, fitted, output)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return Timing(megapixels, mode, statistics.median(times) * 1000, peak / 2**20)


def run_develop_benchmark(
    size: tuple[int, int] = (3000, 2000),
    turns: int = 10,
    working: int = 768,
    megapixels: Sequence[int] = (1, 6, 12, 24),
    runs: int = 5,
    echo: Echo = print,
) -> tuple[dict[bool, DriftResult], list[Timing]]:
    """Both benchmarks; prints a table and returns the figures (for tests)."""
    echo(f"== drift: {turns} local edits on a {size[0]}x{size[1]} photo, working {working} px ==")
    echo(f"{'develop':<8} {'identical outside':>18} {'beyond feather':>15} {'size kept':>10}")
    results = {}
    for develop_on in (True, False):
        result = drift(size, turns, working, develop_on)
        results[develop_on] = result
        echo(
            f"{'on' if develop_on else 'off':<8} {result.identical:>17.4%} "
            f"{result.identical_beyond_feather:>14.4%} {'yes' if result.sizes_kept else 'NO':>10}"
        )
    echo(f"== one develop step, p50 of {runs} runs (peak: tracemalloc, numpy + OpenCV arrays) ==")
    echo(f"{'size':<16} {'mode':<7} {'p50 ms':>8} {'peak MiB':>9}")
    timings = []
    for mp in megapixels:
        for mode in ("local", "global"):
            timing = time_develop(mp, mode, runs, working)
            timings.append(timing)
            width, height = SIZES_MP[mp]
            label = f"{mp} MP {width}x{height}"
            echo(f"{label:<16} {mode:<7} {timing.p50_ms:>8.0f} {timing.peak_mb:>9.0f}")
    return results, timings
