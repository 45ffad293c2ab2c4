"""`pix2chat bench model`: what one GPU worker delivers, timed the way production runs it.

Each configuration (speed options x resolution x batch size) is edited once to warm up (and,
with compile, after `load` compiled every shape), then timed end to end through
`DiffusersEditor.edit_batch`, the call the scheduler makes. One more, instrumented edit breaks
the time down: each denoising step (one UNet call on 3 x batch samples: text, image and
unconditional guidance), VAE encode, VAE decode and the text encoder, each synchronised so the
parts of that edit add up to its total. FLOPs come from PyTorch's
FlopCounterMode on a shapes-only (`meta`) copy of the UNet, so they cost nothing to count and
are exact for the architecture; achieved TFLOP/s is set against the device's published dense
fp16/bf16 peak (or, on a CPU, a matmul peak measured on the spot).

By default the model is the full-size InstructPix2Pix architecture with random weights
(editor/architecture.py): speed does not depend on weight values.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bot.commands.bench_service import product_photo
from editor.base import EditRequest
from editor.params import EditParams
from editor.speed import SpeedOptions

Echo = Callable[[str], None]

FULL_SIZE = "sd15-random"
"""`--model` value for the full-size random-weight architecture (the default)."""
TINY = "tiny-random"
"""`--model` value for the tiny test pipeline (seconds on a CPU; for checking the command)."""

# Published dense (no sparsity) fp16/bf16 tensor-core peaks, TFLOP/s, most specific name first.
# H200 has the H100 SXM's compute. The "achievable" H100 figure is ~790.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
    ("T4", 65.0),
)

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
    return SpeedOptions(**values)


def device_peak_tflops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(peak TFLOP/s, where the figure comes from) for this device and dtype."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if dtype not in (torch.float16, torch.bfloat16):
            return None, f"{name}: no fp32 peak in the table"
        for key, peak in PEAK_TFLOPS:
            if key in name:
                return peak, f"{name}: published dense fp16/bf16 peak"
        return None, f"{name}: not in the peak table"
    if device.type == "cpu":
        return _measured_matmul_tflops(
            dtype
        ), f"{_cpu_name()}: best {dtype} matmul rate measured now"
    return None, f"{device.type}: no peak known"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _measured_matmul_tflops(dtype: torch.dtype, size: int = 1024, windows: int = 5) -> float:
    """Best of a few short windows: on a shared machine the best one is closest to the peak."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(windows):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.2:
            torch.mm(a, b)
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - started) / 1e12)
    return best


def unet_flops_per_sample(unet_config: dict[str, Any], resolution: int) -> int:
    """FLOPs of one UNet call on one sample at `resolution`, counted on a shapes-only copy."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        side = resolution // 8
        sample = torch.empty(1, unet.config.in_channels, side, side)
        context = torch.empty(1, 77, unet.config.cross_attention_dim)
        timestep = torch.tensor(500.0)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, timestep, encoder_hidden_states=context, return_dict=False)
    return int(counter.get_total_flops())


class _Memory:
    """Peak memory of a block: CUDA's allocator peak, or the growth of peak RSS on Linux."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "GPU max_memory_allocated" if device.type == "cuda" else "peak RSS increase"

    @contextmanager
    def measure(self) -> Iterator[list[float]]:
        peak: list[float] = []
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield peak
            torch.cuda.synchronize(self.device)
            peak.append(torch.cuda.max_memory_allocated(self.device) / 2**20)
            return
        before = _proc_status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            before = None
        yield peak
        after = _proc_status_kib("VmHWM")
        if before is not None and after is not None:
            peak.append(max(0, after - before) / 1024)


def _proc_status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(device: torch.device, runs: int, work: Callable[[], object]) -> float:
    """Median seconds of `runs` calls after one untimed call."""
    work()
    times = []
    for _ in range(runs):
        _sync(device)
        started = time.perf_counter()
        work()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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
            pipe = editor._pipe
            assert pipe is not None
            device, dtype = pipe.device, pipe.unet.dtype
            if report is None:
                report = Report(_environment(config, pipe, device, dtype))
                _print_header(report, echo)
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
                    echo(_format_row(row))
            del editor, pipe
            if speed.compile != "off":
                torch._dynamo.reset()  # drops compiled graphs (and CUDA graph pools) with them
            _release(device)
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


def _make_editor(config: ModelBenchConfig, speed: SpeedOptions, folder: Path) -> Any:
    from editor.pix2pix import DiffusersEditor, resolve_dtype, select_device

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
    editor: Any,
    label: str,
    resolution: int,
    batch_size: int,
    config: ModelBenchConfig,
    flops_per_sample: int,
    report: Report,
) -> Row:
    pipe = editor._pipe
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
    memory = _Memory(device)
    splits_before = editor.oom_splits
    results: list[Image.Image] = []
    previews: list[int] = []

    def on_preview(step: int, _total: int, images: Any) -> None:
        previews.append(len(images))

    hook = on_preview if editor.speed.preview != "off" else None
    try:
        with memory.measure() as peak:
            batch_s = _timed(
                device,
                config.runs,
                lambda: results.extend(editor.edit_batch(requests, preview=hook)),
            )
        with _breakdown(editor, device) as parts:
            started = time.perf_counter()
            editor.edit_batch(requests)
            _sync(device)
            instrumented_s = time.perf_counter() - started
    except Exception as error:  # one configuration failing (OOM at batch 1) must not end the run
        row.error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        _release(device)
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


def estimated_memory(pipe: Any, side: int, batch_size: int, dtype: torch.dtype) -> int:
    """Bytes a CUDA run of this batch should peak at (editor/memory.py), from shapes alone."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel

    from editor.memory import estimate_memory

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(pipe.unet.config)
        vae = AutoencoderKL.from_config(pipe.vae.config)
        text_encoder = CLIPTextModel(pipe.text_encoder.config)
    for module in (unet, vae, text_encoder):
        torch.nn.Module.to(module, dtype)  # not diffusers' override, which warns about upcasting
    return estimate_memory(unet, vae, text_encoder, side, side, batch_size, dtype).total


@contextmanager
def _breakdown(editor: Any, device: torch.device) -> Iterator[dict[str, list[float]]]:
    """Seconds of each UNet call, VAE encode/decode and text encoding inside one real edit.

    Each part is synchronised before and after, so its time is its own; that also stops the
    CPU from queueing the next kernels early, which is why the end-to-end figures come from
    separate, uninstrumented runs. Compiled UNets are timed around the compiled module (hooks
    on the inner module would change what dynamo traced and force a recompile).
    """
    pipe = editor._pipe
    parts: dict[str, list[float]] = {"unet": [], "vae_encode": [], "vae_decode": [], "text": []}
    started: dict[str, float] = {}
    handles: list[Any] = []

    def hook(module: torch.nn.Module, label: str) -> None:
        def before(*_: Any) -> None:
            _sync(device)
            started[label] = time.perf_counter()

        def after(*_: Any) -> None:
            _sync(device)
            parts[label].append(time.perf_counter() - started[label])

        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))

    compiled = editor._compiled.get("unet")
    hook(compiled if compiled is not None else pipe.unet, "unet")
    hook(pipe.text_encoder, "text")
    for name, label in (("encode", "vae_encode"), ("decode", "vae_decode")):
        method = getattr(pipe.vae, name)

        def timed(*args: Any, _method: Any = method, _label: str = label, **kwargs: Any) -> Any:
            _sync(device)
            begun = time.perf_counter()
            result = _method(*args, **kwargs)
            _sync(device)
            parts[_label].append(time.perf_counter() - begun)
            return result

        setattr(pipe.vae, name, timed)
    try:
        yield parts
    finally:
        for handle in handles:
            handle.remove()
        del pipe.vae.encode, pipe.vae.decode  # the class's methods show through again


def _release(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _environment(
    config: ModelBenchConfig, pipe: Any, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    import diffusers
    import transformers

    peak, peak_source = device_peak_tflops(device, dtype)
    weights = sum(
        p.numel() * p.element_size()
        for module in (pipe.unet, pipe.vae, pipe.text_encoder)
        for p in module.parameters()
    )
    return {
        "model": config.model,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
        ),
        "cpu_threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "steps": config.steps,
        "runs": config.runs,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "weights_mib": weights / 2**20,
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "memory_measure": _Memory(device).kind,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def _print_header(report: Report, echo: Echo) -> None:
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


def _format_row(row: Row) -> str:
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


def parse_list(text: str) -> tuple[int, ...]:
    """'512,768' -> (512, 768), for the CLI."""
    from editor.speed import parse_ints

    values = parse_ints(text)
    if not values or min(values) < 1:
        raise ValueError(f"expected positive comma-separated integers, not {text!r}")
    return values


def describe_options() -> str:
    return ", ".join(OPTION_TOKENS)
