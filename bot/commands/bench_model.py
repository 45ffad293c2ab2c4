"""`pix2chat bench model`: what one GPU worker delivers, timed the way production runs it.

Each configuration (speed options x resolution x batch size) is edited once to warm up (and,
with compile, after `load` compiled every shape), then timed end to end through
`DiffusersEditor.edit_batch`, the call the scheduler makes. One more, instrumented edit breaks
the time down: each denoising step (one UNet call on 3 x batch samples: text, image and
unconditional guidance), VAE encode, VAE decode and the text encoder, each synchronised so the
parts of that edit add up to its total. The instruments (FLOPs, memory, device peaks) are in
bot/commands/bench_model_timing.py; the table and the JSON in bot/commands/bench_model_report.py.

By default the model is the full-size InstructPix2Pix architecture with random weights
(editor/architecture.py): speed does not depend on weight values.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from bot.app import with_setting_hint
from bot.commands.bench_model_report import (
    Echo,
    Report,
    Row,
    environment,
    format_row,
    print_header,
    write_json,
)
from bot.commands.bench_model_timing import (
    Memory,
    breakdown,
    estimated_memory,
    release,
    sync,
    timed,
    unet_flops_per_sample,
)
from bot.commands.bench_service import product_photo
from bot.commands.options import positive_ints
from editor.base import EditRequest
from editor.errors import OptionError
from editor.params import EditParams
from editor.speed import SpeedOptions

if TYPE_CHECKING:
    from editor.pix2pix import DiffusersEditor


FULL_SIZE = "sd15-random"
"""`--model` value for the full-size random-weight architecture (the default)."""
TINY = "tiny-random"
"""`--model` value for the tiny test pipeline (seconds on a CPU; for checking the command)."""


OPTION_TOKENS: dict[str, dict[str, Any]] = {
    "default": {},
    "classic": {"attention": "classic"},
    "channels_last": {"channels_last": True},
    "fuse_qkv": {"fuse_qkv": True},
    "compile": {"compile": "unet"},
    "compile_vae": {"compile": "unet+vae"},
    "max_autotune": {"compile_mode": "max-autotune"},
    "cuda_graphs": {"cuda_graphs": True},
    "preview": {"preview": "taesd"},
}
"""`--options` words; a set is words joined by '+', e.g. `channels_last+fuse_qkv+compile`."""


@dataclass(frozen=True, slots=True)
class ModelBenchConfig:
    """What `pix2chat bench model` measures."""

    model: str = FULL_SIZE
    device: str = "auto"
    dtype: str = "auto"
    resolutions: tuple[int, ...] = (512, 768)
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    steps: int = 20
    runs: int = 3
    option_sets: tuple[str, ...] = ("default",)
    preview_model: str | None = None


def parse_option_set(text: str) -> SpeedOptions:
    """'channels_last+fuse_qkv+compile' -> SpeedOptions; unknown words name the valid ones."""
    values: dict[str, Any] = {}
    for word in text.replace(",", "+").split("+"):
        word = word.strip()
        if not word:
            continue
        if word not in OPTION_TOKENS:
            raise ValueError(f"unknown option {word!r}; use {', '.join(OPTION_TOKENS)}")
        values.update(OPTION_TOKENS[word])
    try:
        return SpeedOptions(**values)
    except OptionError as error:
        raise ValueError(with_setting_hint(error)) from error


def run_model_benchmark(config: ModelBenchConfig, echo: Echo = print) -> Report:
    """Measure every (options, resolution, batch size) of `config`; print a table as it goes."""
    option_sets = [(label, parse_option_set(label)) for label in config.option_sets]
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-model-") as tmp:
        folder = Path(tmp)
        report: Report | None = None
        for label, speed in option_sets:
            speed = _with_compile_shapes(speed, config)
            if speed.preview != "off":
                speed = replace(speed, preview_model=_preview_model(config, folder))
            editor = _make_editor(config, speed, folder)
            started = time.perf_counter()
            editor.load()
            load_s = time.perf_counter() - started
            pipe = editor.pipeline
            device, dtype = pipe.device, pipe.unet.dtype
            if report is None:
                report = Report(
                    environment(config.model, config.steps, config.runs, pipe, device, dtype)
                )
                print_header(report, echo)
            echo(f"-- options: {label} ({editor.describe()['speed']}); load {load_s:.1f} s")
            flops: dict[int, int] = {}
            for resolution in config.resolutions:
                if resolution not in flops:
                    flops[resolution] = unet_flops_per_sample(dict(pipe.unet.config), resolution)
                for batch_size in config.batch_sizes:
                    row = _measure(
                        editor, label, resolution, batch_size, config, flops[resolution], report
                    )
                    report.rows.append(row)
                    echo(format_row(row))
            del editor, pipe
            if speed.compile != "off":
                torch._dynamo.reset()  # drops compiled graphs (and CUDA graph pools) with them
            release(device)
        assert report is not None
        return report


def _with_compile_shapes(speed: SpeedOptions, config: ModelBenchConfig) -> SpeedOptions:
    """Compile exactly the shapes the benchmark runs, so `load` warms them all up."""
    if speed.compile == "off":
        return speed
    return replace(
        speed,
        compile_sizes=tuple((r // 8 * 8, r // 8 * 8) for r in config.resolutions),
        compile_batch_sizes=config.batch_sizes,
    )


def _preview_model(config: ModelBenchConfig, folder: Path) -> str:
    """TAESD weights: the one given, else a random one of the right architecture."""
    if config.preview_model:
        return config.preview_model
    from editor.testing.tiny import build_tiny_preview_decoder

    if config.model == TINY:
        return str(build_tiny_preview_decoder(folder / "tiny-taesd"))
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    AutoencoderTiny().save_pretrained(folder / "taesd-random")  # TAESD's default config
    return str(folder / "taesd-random")


def _make_editor(config: ModelBenchConfig, speed: SpeedOptions, folder: Path) -> DiffusersEditor:
    from editor.loading import resolve_dtype, select_device
    from editor.pix2pix import DiffusersEditor

    if config.model == TINY:
        from editor.testing.tiny import build_tiny_pipeline

        tiny = folder / "tiny"
        if not tiny.exists():
            build_tiny_pipeline(tiny)
        return DiffusersEditor(str(tiny), device=config.device, dtype=config.dtype, speed=speed)
    if config.model == FULL_SIZE:
        from editor.architecture import build_full_size_pipeline

        device = select_device(config.device)
        pipeline = build_full_size_pipeline(device, resolve_dtype(config.dtype, device))
        return DiffusersEditor(
            FULL_SIZE, device=device, dtype=config.dtype, speed=speed, pipeline=pipeline
        )
    return DiffusersEditor(config.model, device=config.device, dtype=config.dtype, speed=speed)


def _measure(
    editor: DiffusersEditor,
    label: str,
    resolution: int,
    batch_size: int,
    config: ModelBenchConfig,
    flops_per_sample: int,
    report: Report,
) -> Row:
    pipe = editor.pipeline
    device, dtype = pipe.device, pipe.unet.dtype
    side = resolution // 8 * 8
    row = Row(label, side, batch_size, config.steps)
    requests = [
        EditRequest(
            product_photo(side, seed=i),
            "make it night",
            EditParams(num_inference_steps=config.steps, seed=i, resolution=side),
        )
        for i in range(batch_size)
    ]
    memory = Memory(device)
    splits_before = editor.oom_splits
    results: list[Image.Image] = []
    previews: list[int] = []

    def on_preview(step: int, total: int, images: Mapping[int, Image.Image]) -> None:
        previews.append(len(images))

    hook = on_preview if editor.speed.preview != "off" else None
    try:
        with memory.measure() as peak:
            batch_s = timed(
                device,
                config.runs,
                lambda: results.extend(editor.edit_batch(requests, preview=hook)),
            )
        with breakdown(editor, device) as parts:
            started = time.perf_counter()
            editor.edit_batch(requests)
            sync(device)
            instrumented_s = time.perf_counter() - started
    except Exception as error:  # one configuration failing (OOM at batch 1) must not end the run
        row.error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        release(device)
        return row
    row.oom_splits = editor.oom_splits - splits_before
    row.previews_per_edit = sum(previews) / (config.runs + 1) / batch_size
    row.finite_output = all(image.getextrema() != ((0, 0),) * 3 for image in results[-batch_size:])
    row.batch_seconds = batch_s
    row.seconds_per_edit = batch_s / batch_size
    row.edits_per_second = batch_size / batch_s
    unet_s = statistics.median(parts["unet"])
    encode_s, decode_s = sum(parts["vae_encode"]), sum(parts["vae_decode"])
    row.unet_step_ms = unet_s * 1000
    row.vae_encode_ms = encode_s * 1000
    row.vae_decode_ms = decode_s * 1000
    row.text_encoder_ms = sum(parts["text"]) * 1000
    row.instrumented_seconds = instrumented_s
    row.other_ms = (instrumented_s - sum(sum(times) for times in parts.values())) * 1000
    row.projected_seconds_per_edit_20_steps = (batch_s + (20 - config.steps) * unet_s) / batch_size
    row.peak_memory_mib = peak[0] if peak else float("nan")
    row.estimated_memory_mib = estimated_memory(pipe, side, batch_size, dtype) / 2**20
    step_flops = 3 * batch_size * flops_per_sample
    row.unet_tflop_per_step = step_flops / 1e12
    row.unet_tflops = step_flops / unet_s / 1e12
    row.end_to_end_tflops = config.steps * step_flops / batch_s / 1e12
    peak_tflops = report.environment.get("peak_tflops")
    if peak_tflops:
        row.percent_of_peak = 100 * row.unet_tflops / peak_tflops
    return row


def describe_options() -> str:
    return ", ".join(OPTION_TOKENS)


def bench_model_command(
    config: ModelBenchConfig, json_out: Path | None = None, echo: Echo = print
) -> int:
    """`pix2chat bench model` once its arguments are parsed: the exit status (1: no model)."""
    import typer

    from editor.errors import ModelLoadError

    try:
        report = run_model_benchmark(config, echo=echo)
    except ModelLoadError as error:  # the model comes from --model and --device, not settings
        typer.secho(str(error), fg="red", err=True)
        return 1
    if json_out is not None:
        write_json(report, json_out)
        echo(f"wrote {json_out}")
    return 0


def parse_config(
    *,
    model: str,
    device: str,
    dtype: str,
    resolutions: str,
    batch_sizes: str,
    steps: int,
    runs: int,
    option_sets: tuple[str, ...],
    preview_model: str | None,
) -> ModelBenchConfig:
    """The command line's comma lists and option sets, checked; ValueError says what is wrong."""
    from editor.loading import DTYPES

    for option_set in option_sets:
        parse_option_set(option_set)
    config = ModelBenchConfig(
        model=model,
        device=device,
        dtype=dtype,
        resolutions=positive_ints(resolutions),
        batch_sizes=positive_ints(batch_sizes),
        steps=steps,
        runs=runs,
        option_sets=option_sets,
        preview_model=preview_model,
    )
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"--dtype must be auto or one of {', '.join(DTYPES)}, not {dtype!r}")
    return config
