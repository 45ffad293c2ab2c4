"""`pix2chat bench finishing`: upscale, cut-out and provenance costs on this machine.

Tiny random-weight models (editor/testing/finishing.py) stand in for the real ones, which this
machine cannot download: their figures are the pipeline's own cost (tiling, resizing,
compositing, encoding), not the real networks'. For the real 4x ESRGAN the architecture is
built with random weights to count its parameters and floating-point operations, and its GPU
time estimated from those (or timed with --device cuda where there is one).
"""

from __future__ import annotations

import io
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bot.commands.bench_service import product_photo
from editor.finishing.matting import Matting, cutout, on_white
from editor.finishing.provenance import Credentials as SigningCredentials
from editor.finishing.provenance import (
    Provenance,
    Step,
    embed_watermark,
    has_watermark,
    make_self_signed,
)
from editor.finishing.upscale import Upscaler
from editor.testing.finishing import export_tiny_matting, save_tiny_esrgan

Echo = Callable[[str], None]

TWELVE_MP = (4240, 2832)
GPU_DENSE_TFLOPS = 990.0
"""H100/H200 dense fp16/bf16 tensor throughput (TFLOP/s) the estimate divides by."""
GPU_EFFICIENCY = 0.25
"""Share of it a convolution network of ESRGAN's shape reaches in practice (an assumption)."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    side = max(size)
    return product_photo(side, seed).resize(size)


def bench_upscale(folder: Path, sizes: list[int], echo: Echo) -> None:
    """Seconds per megapixel of the tiny 2x model, tiled, and the peak memory it reached."""
    upscaler = Upscaler(str(save_tiny_esrgan(folder / "tiny-x2.pth", scale=2)))
    upscaler.load()
    echo(f"upscale (tiny 2x RRDBNet, {upscaler.parameter_count():,} parameters, CPU, tiled)")
    for side in sizes:
        image = _photo((side, side))
        before = _peak_rss_mb()
        started = time.perf_counter()
        result = upscaler.upscale(image, 2, 10**9)
        seconds = time.perf_counter() - started
        mp_in = side * side / 1e6
        echo(
            f"  {side}x{side} -> {result.image.width}x{result.image.height}: {seconds:.2f} s, "
            f"{seconds / mp_in:.1f} s per input MP, {seconds / (4 * mp_in):.1f} s per output MP, "
            f"peak RSS {_peak_rss_mb():.0f} MB (+{_peak_rss_mb() - before:.0f} MB)"
        )


def bench_real_esrgan(device: str, echo: Echo) -> None:
    """The real 4x ESRGAN (RRDBNet 64 filters, 23 blocks): parameters, FLOPs, GPU time."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN
    from torch.utils.flop_counter import FlopCounterMode

    model = ESRGAN(num_filters=64, num_blocks=23, scale=4).eval()
    parameters = sum(p.numel() for p in model.parameters())
    tile = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(tile)
    flops_per_mp = counter.get_total_flops() / (64 * 64) * 1e6
    estimate = flops_per_mp / (GPU_DENSE_TFLOPS * 1e12 * GPU_EFFICIENCY)
    echo(
        f"real 4x ESRGAN (RRDBNet 64x23): {parameters:,} parameters, "
        f"{flops_per_mp / 1e12:.1f} TFLOP per input megapixel; estimated "
        f"{estimate:.2f} s per input MP on an H100/H200 in fp16 "
        f"(at {GPU_EFFICIENCY:.0%} of {GPU_DENSE_TFLOPS:.0f} TFLOP/s)"
    )
    if device == "cuda" and torch.cuda.is_available():
        model = model.to("cuda", torch.float16)
        batch = torch.rand(1, 3, 512, 512, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            for _ in range(3):
                model(batch)
            torch.cuda.synchronize()
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                model(batch)
                torch.cuda.synchronize()
                runs.append(time.perf_counter() - started)
        seconds = statistics.median(runs) / (512 * 512 / 1e6)
        echo(f"  measured on {torch.cuda.get_device_name()}: {seconds:.2f} s per input MP (fp16)")


def bench_cutout(folder: Path, runs: int, echo: Echo) -> None:
    """Seconds per cut-out and white background at 12 MP with the tiny ONNX model."""
    matting = Matting(str(export_tiny_matting(folder / "tiny-matting.onnx")))
    matting.load()
    image = _photo(TWELVE_MP)
    times: list[float] = []
    white: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        mask = matting.mask(image)
        cutout(image, mask)
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        on_white(image, mask, square=True)
        white.append(time.perf_counter() - started)
    echo(
        f"cut-out at 12 MP (tiny ONNX model, CPU): {statistics.median(times):.2f} s per image "
        f"(mask + RGBA); white square on top: {statistics.median(white):.2f} s"
    )


def bench_provenance(runs: int, echo: Echo) -> None:
    """Signing and watermark time per 12 MP image."""
    chain, key = make_self_signed()
    provenance = Provenance(SigningCredentials(chain, key))
    image = _photo(TWELVE_MP)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    png = buffer.getvalue()
    marks, signs, stamps = [], [], []
    steps = [Step("c2pa.edited", "benchmark")]
    for _ in range(runs):
        started = time.perf_counter()
        embed_watermark(image)
        marks.append(time.perf_counter() - started)
        started = time.perf_counter()
        provenance.sign(png, steps, "bench.png")
        signs.append(time.perf_counter() - started)
        started = time.perf_counter()
        provenance.stamp(png, steps, "bench.png")
        stamps.append(time.perf_counter() - started)
    echo(
        f"provenance at 12 MP: watermark {statistics.median(marks):.2f} s, C2PA signing "
        f"{statistics.median(signs):.2f} s; the whole stamp (decode, watermark, PNG encode, "
        f"sign) {statistics.median(stamps):.2f} s"
    )


def bench_watermark_jpeg(photos: int, side: int, quality: int, echo: Echo) -> None:
    """Share of watermarked photos whose mark is still read after JPEG recompression."""
    found = 0
    for seed in range(photos):
        marked = embed_watermark(_photo((side, side * 3 // 4), seed))
        buffer = io.BytesIO()
        marked.save(buffer, "JPEG", quality=quality)
        with Image.open(io.BytesIO(buffer.getvalue())) as recompressed:
            found += has_watermark(recompressed)
    echo(
        f"watermark after JPEG quality {quality}: found in {found}/{photos} photos "
        f"({found / photos:.0%}; {side}x{side * 3 // 4} synthetic product photos)"
    )


def run_finishing_benchmark(
    echo: Echo,
    *,
    upscale_sides: list[int],
    runs: int = 3,
    photos: int = 50,
    photo_side: int = 1024,
    device: str = "cpu",
) -> None:
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as name:
        folder = Path(name)
        bench_upscale(folder, upscale_sides, echo)
        bench_real_esrgan(device, echo)
        bench_cutout(folder, runs, echo)
    bench_provenance(runs, echo)
    bench_watermark_jpeg(photos, photo_side, 85, echo)
