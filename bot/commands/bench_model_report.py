"""Figures of `pix2chat bench model`: one row per configuration, the table and the JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bot.commands.bench_model_timing import Memory, cpu_name, device_peak_tflops

Echo = Callable[[str], None]


@dataclass(slots=True)
class Row:
    """One measured configuration; times in seconds unless the name says ms."""

    options: str
    resolution: int
    batch_size: int
    steps: int
    batch_seconds: float = float("nan")
    seconds_per_edit: float = float("nan")
    edits_per_second: float = float("nan")
    unet_step_ms: float = float("nan")
    vae_encode_ms: float = float("nan")
    vae_decode_ms: float = float("nan")
    text_encoder_ms: float = float("nan")
    instrumented_seconds: float = float("nan")
    other_ms: float = float("nan")
    projected_seconds_per_edit_20_steps: float = float("nan")
    peak_memory_mib: float = float("nan")
    estimated_memory_mib: float = float("nan")
    unet_tflop_per_step: float = float("nan")
    unet_tflops: float = float("nan")
    end_to_end_tflops: float = float("nan")
    percent_of_peak: float = float("nan")
    oom_splits: int = 0
    previews_per_edit: float = 0.0
    finite_output: bool = True
    error: str | None = None


@dataclass(slots=True)
class Report:
    environment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {"environment": self.environment, "rows": [asdict(row) for row in self.rows]},
            indent=2,
            allow_nan=True,
        )


def environment(
    model: str, steps: int, runs: int, pipe: Any, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """What was measured where: device, peak, weights, library versions."""
    import diffusers
    import transformers

    peak, peak_source = device_peak_tflops(device, dtype)
    weights = sum(
        p.numel() * p.element_size()
        for module in (pipe.unet, pipe.vae, pipe.text_encoder)
        for p in module.parameters()
    )
    return {
        "model": model,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        ),
        "cpu_threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps,
        "runs": runs,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "weights_mib": weights / 2**20,
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "memory_measure": Memory(device).kind,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def print_header(report: Report, echo: Echo) -> None:
    env = report.environment
    peak = f"{env['peak_tflops']:.2f} TFLOP/s" if env["peak_tflops"] else "n/a"
    echo(
        f"== pix2chat bench model: {env['model']} ({env['unet_parameters']:,} UNet parameters, "
        f"weights {env['weights_mib']:,.0f} MiB) on {env['device']} ({env['device_name']}; "
        f"{env['cpu_threads']} torch CPU threads), {env['dtype']}, {env['steps']} steps, "
        f"median of {env['runs']} =="
    )
    echo(f"peak: {peak} ({env['peak_source']}); memory: {env['memory_measure']}")
    echo(
        f"torch {env['torch']} (CUDA {env['cuda']}), diffusers {env['diffusers']}, "
        f"transformers {env['transformers']}, Python {env['python']}"
    )
    echo(
        "res  batch  s/edit  edits/s  batch s  UNet step ms  VAE enc ms  VAE dec ms  text ms  other ms"
        "  @20 steps s/edit  peak MiB  est. MiB  TFLOP/step  UNet TFLOP/s  % peak  e2e TFLOP/s"
    )


def format_row(row: Row) -> str:
    if row.error:
        return f"{row.resolution:>4} {row.batch_size:>5}  failed: {row.error}"
    pct = "n/a" if row.percent_of_peak != row.percent_of_peak else f"{row.percent_of_peak:5.1f}"
    notes = []
    if row.oom_splits:
        notes.append(f"split {row.oom_splits}x on OOM")
    if row.previews_per_edit:
        notes.append(f"{row.previews_per_edit:.0f} previews/edit")
    if not row.finite_output:
        notes.append("blank output")
    return (
        f"{row.resolution:>4} {row.batch_size:>5} {row.seconds_per_edit:7.3f} "
        f"{row.edits_per_second:8.2f} {row.batch_seconds:8.3f} {row.unet_step_ms:13.1f} "
        f"{row.vae_encode_ms:11.1f} {row.vae_decode_ms:11.1f} {row.text_encoder_ms:8.1f} "
        f"{row.other_ms:9.1f} "
        f"{row.projected_seconds_per_edit_20_steps:17.3f} {row.peak_memory_mib:9.0f} "
        f"{row.estimated_memory_mib:9.0f} "
        f"{row.unet_tflop_per_step:11.3f} {row.unet_tflops:13.2f} {pct:>7} "
        f"{row.end_to_end_tflops:12.2f}" + (f"  ({'; '.join(notes)})" if notes else "")
    )


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json() + "\n", "utf-8")
