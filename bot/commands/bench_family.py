"""`pix2chat bench model --family <f>`: what a model family costs, without its weights.

On the full-size architecture (meta device, editor/families/architecture.py): parameters per
component, FLOPs per denoising step at the family's native size, and the GPU memory its
weights need under each memory option (editor/families/memory.py). Then seconds per edit of
the tiny random-weight pipeline of the family on this machine's CPU, through the production
editor: a check that the whole path runs, not a speed figure for real models.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import typer

from editor.base import Editor

TINY_SIDE = 64
TINY_STEPS = 2


def bench_family_command(family: str, runs: int = 3) -> None:
    """Print the figures of `family` (one of editor.families.registry's names)."""
    from editor.families.architecture import (
        DENOISER,
        components,
        flops_per_step,
        parameter_counts,
    )
    from editor.families.memory import MEMORY_OPTIONS, estimate_bytes
    from editor.families.registry import family_by_name

    spec = family_by_name(family)
    modules = components(spec.name)
    counts = parameter_counts(modules)
    typer.echo(f"family {spec.name} ({spec.pipeline_class}), full-size architecture")
    for name, count in counts.items():
        typer.echo(f"  {name:<16} {count / 1e9:8.3f} B parameters")
    typer.echo(f"  {'total':<16} {sum(counts.values()) / 1e9:8.3f} B parameters")
    side = spec.native_resolution
    flops = flops_per_step(spec.name, modules[DENOISER[spec.name]], side)
    typer.echo(f"  {flops / 1e12:.1f} TFLOPs per denoising step at {side}x{side}")
    typer.echo("GPU memory for the weights (activations add 1-3 GB at ~1 MP):")
    for option, meaning in MEMORY_OPTIONS.items():
        gb = estimate_bytes(counts, option) / 1024**3
        typer.echo(f"  {option:<10} {gb:6.1f} GB  {meaning}")
    seconds = tiny_seconds_per_edit(spec.name, runs)
    typer.echo(
        f"tiny random {spec.name}: {seconds:.2f} s per edit "
        f"({TINY_SIDE}x{TINY_SIDE}, {TINY_STEPS} steps, CPU, median of {runs})"
    )


def tiny_seconds_per_edit(family: str, runs: int) -> float:
    """Median seconds of one edit by the family's tiny pipeline, loaded like production."""
    from PIL import Image

    from editor.base import EditRequest
    from editor.families.editor import open_editor
    from editor.params import EditParams
    from editor.pix2pix import DiffusersEditor
    from editor.testing.tiny import build_tiny_pipeline
    from editor.testing.tiny_families import (
        build_tiny_flux_kontext,
        build_tiny_qwen_image_edit,
        build_tiny_sdxl_pix2pix,
    )

    builders = {
        "instruct-pix2pix": build_tiny_pipeline,
        "sdxl-instruct-pix2pix": build_tiny_sdxl_pix2pix,
        "flux-kontext": build_tiny_flux_kontext,
        "qwen-image-edit": build_tiny_qwen_image_edit,
    }
    with tempfile.TemporaryDirectory() as folder:
        model = str(builders[family](Path(folder) / family))
        editor: Editor = open_editor(
            model, device="cpu", pix2pix=lambda: DiffusersEditor(model, device="cpu")
        )
        editor.load()
        request = EditRequest(
            Image.new("RGB", (TINY_SIDE, TINY_SIDE), "gray"),
            "make it red",
            EditParams(num_inference_steps=TINY_STEPS, resolution=TINY_SIDE),
        )
        editor.edit_batch([request])  # warm-up
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            editor.edit_batch([request])
            times.append(time.perf_counter() - started)
    return statistics.median(times)
