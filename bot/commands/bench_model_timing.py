"""Measuring instruments of `pix2chat bench model`: clocks, memory, FLOPs and device peaks.

Each part of an instrumented edit is synchronised before and after, so the parts add up to the
edit. FLOPs come from PyTorch's FlopCounterMode on a shapes-only (`meta`) copy of the UNet, so
they cost nothing to count and are exact for the architecture; achieved TFLOP/s is set against
the device's published dense fp16/bf16 peak (or, on a CPU, a matmul peak measured on the spot).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from editor.pix2pix import DiffusersEditor


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
        ), f"{cpu_name()}: best {dtype} matmul rate measured now"
    return None, f"{device.type}: no peak known"


def cpu_name() -> str:
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


class Memory:
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(device: torch.device, runs: int, work: Callable[[], object]) -> float:
    """Median seconds of `runs` calls after one untimed call."""
    work()
    times = []
    for _ in range(runs):
        sync(device)
        started = time.perf_counter()
        work()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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
def breakdown(editor: DiffusersEditor, device: torch.device) -> Iterator[dict[str, list[float]]]:
    """Seconds of each UNet call, VAE encode/decode and text encoding inside one real edit.

    Each part is synchronised before and after, so its time is its own; that also stops the
    CPU from queueing the next kernels early, which is why the end-to-end figures come from
    separate, uninstrumented runs. Compiled UNets are timed around the compiled module (hooks
    on the inner module would change what dynamo traced and force a recompile).
    """
    pipe = editor.pipeline
    parts: dict[str, list[float]] = {"unet": [], "vae_encode": [], "vae_decode": [], "text": []}
    started: dict[str, float] = {}
    handles: list[Any] = []

    def hook(module: torch.nn.Module, label: str) -> None:
        def before(*_: Any) -> None:
            sync(device)
            started[label] = time.perf_counter()

        def after(*_: Any) -> None:
            sync(device)
            parts[label].append(time.perf_counter() - started[label])

        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))

    compiled = editor.compiled_unet
    hook(compiled if compiled is not None else pipe.unet, "unet")
    hook(pipe.text_encoder, "text")
    for name, label in (("encode", "vae_encode"), ("decode", "vae_decode")):
        method = getattr(pipe.vae, name)

        def timed_method(
            *args: Any, _method: Any = method, _label: str = label, **kwargs: Any
        ) -> Any:
            sync(device)
            begun = time.perf_counter()
            result = _method(*args, **kwargs)
            sync(device)
            parts[_label].append(time.perf_counter() - begun)
            return result

        setattr(pipe.vae, name, timed_method)
    try:
        yield parts
    finally:
        for handle in handles:
            handle.remove()
        del pipe.vae.encode, pipe.vae.decode  # the class's methods show through again


def release(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
