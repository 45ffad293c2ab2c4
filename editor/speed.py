"""Speed options of the diffusers editor: what each one does, how it is switched, and its checks.

Every option is measured by `pix2chat bench model` and tested to give the same picture as the
plain path at the same seed (tests/editor/test_speed_options.py). The defaults are the ones
that never change a picture and cannot hurt: PyTorch's fused attention (SDPA) everywhere and
float16 on CUDA (`dtype="auto"`). The rest are opt-in because their gain depends on the GPU
and their cost is start-up time (compile) or memory (fused QKV keeps both weight copies):
docs/BENCHMARKS.md says what was measured where.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from editor.errors import OptionError

log = logging.getLogger(__name__)

Attention = Literal["sdpa", "classic"]
Compile = Literal["off", "unet", "unet+vae"]
CompileMode = Literal["default", "max-autotune"]
Preview = Literal["off", "taesd"]

DEFAULT_COMPILE_SIZES: tuple[tuple[int, int], ...] = ((512, 512), (512, 384), (384, 512))
"""Square and 4:3 photos in both orientations at the default 512 px resolution."""
DEFAULT_COMPILE_BATCH_SIZES: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True, slots=True)
class SpeedOptions:
    """How the editor runs the model; none of these change what a picture should look like.

    Attributes:
        attention: "sdpa" (PyTorch's fused scaled-dot-product attention: flash or
            memory-efficient kernels on CUDA) or "classic" (diffusers' explicit softmax
            attention, kept so the benchmark can show what SDPA gains).
        channels_last: NHWC memory format for the UNet and VAE, which cuDNN's fastest
            fp16 convolutions use.
        fuse_qkv: one matmul for the query, key and value projections of each self-attention
            (key and value for cross-attention) in the UNet and VAE. diffusers keeps the
            unfused weights as well: +56M parameters for the SD 1.5 UNet.
        compile: torch.compile the UNet ("unet") or the UNet and the VAE decoder ("unet+vae"),
            with static shapes, one graph per (image size, batch size) in `compile_sizes` x
            `compile_batch_sizes`, all compiled by `load` so users never wait for it.
        compile_mode: inductor's "default" or "max-autotune" (tries GEMM/conv kernels; much
            longer start-up).
        cuda_graphs: replay each compiled step as one CUDA graph (inductor's
            "reduce-overhead"), removing per-kernel launch cost. Needs `compile`; ignored
            (with a warning) off CUDA.
        compile_sizes: (width, height) image sizes to compile and warm up; batches of other
            sizes run the uncompiled modules rather than compiling on a user's request.
        compile_batch_sizes: batch sizes to compile; a batch is padded up to the next one
            (the padding samples' results are dropped) and larger batches are split.
        compile_backend: torch.compile backend; tests pass "eager" or a counting backend.
        preview: "taesd" decodes intermediate latents with a tiny autoencoder (TAESD) for
            progress previews; the final picture always comes from the full VAE.
        preview_model: hub id or folder of the `AutoencoderTiny` weights.
        preview_every: steps between previews.
    """

    attention: Attention = "sdpa"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: Compile = "off"
    compile_mode: CompileMode = "default"
    cuda_graphs: bool = False
    compile_sizes: tuple[tuple[int, int], ...] = DEFAULT_COMPILE_SIZES
    compile_batch_sizes: tuple[int, ...] = DEFAULT_COMPILE_BATCH_SIZES
    compile_backend: str | Callable[..., Any] = "inductor"
    preview: Preview = "off"
    preview_model: str = "madebyollin/taesd"
    preview_every: int = 5

    def __post_init__(self) -> None:
        if self.attention not in ("sdpa", "classic"):
            raise ValueError(f"attention must be 'sdpa' or 'classic', not {self.attention!r}")
        if self.compile not in ("off", "unet", "unet+vae"):
            raise ValueError(f"compile must be off, unet or unet+vae, not {self.compile!r}")
        if self.compile_mode not in ("default", "max-autotune"):
            raise ValueError(
                f"compile_mode must be default or max-autotune, not {self.compile_mode!r}"
            )
        if self.preview not in ("off", "taesd"):
            raise ValueError(f"preview must be 'off' or 'taesd', not {self.preview!r}")
        if self.fuse_qkv and self.attention != "sdpa":
            raise ValueError(
                "fuse_qkv uses diffusers' fused SDPA processor: it needs attention=sdpa"
            )
        if self.cuda_graphs and self.compile == "off":
            raise OptionError(
                "CUDA graphs come from torch.compile's reduce-overhead mode: compile the UNet "
                "(or the UNet and the VAE) together with cuda_graphs.",
                option="compile",
                value=self.compile,
                suggestion="unet",
            )
        if not self.compile_batch_sizes or min(self.compile_batch_sizes) < 1:
            raise ValueError("compile_batch_sizes must be positive batch sizes")
        for width, height in self.compile_sizes:
            if width % 8 or height % 8 or width < 8 or height < 8:
                raise ValueError(f"compile sizes must be multiples of 8, not {width}x{height}")
        if self.preview_every < 1:
            raise ValueError("preview_every must be at least 1")

    def inductor_mode(self, device: str) -> str | None:
        """torch.compile's `mode` for inductor; None for other backends (they take none)."""
        if self.compile_backend != "inductor":
            return None
        graphs = self.cuda_graphs and device == "cuda"
        if self.compile_mode == "max-autotune":
            return "max-autotune" if graphs else "max-autotune-no-cudagraphs"
        return "reduce-overhead" if graphs else "default"

    def summary(self, device: str | None = None) -> str:
        """One line for `pix2chat doctor` and the benchmark table."""
        parts: list[str] = [self.attention]
        if self.channels_last:
            parts.append("channels_last")
        if self.fuse_qkv:
            parts.append("fuse_qkv")
        if self.compile != "off":
            backend = self.compile_backend if isinstance(self.compile_backend, str) else "custom"
            mode = self.inductor_mode(device or "cuda") or backend
            parts.append(f"compile {self.compile} ({mode})")
        if self.cuda_graphs:
            parts.append(
                "cuda_graphs" if device in (None, "cuda") else f"cuda_graphs ignored on {device}"
            )
        if self.preview != "off":
            parts.append(f"preview {self.preview} every {self.preview_every}")
        return ", ".join(parts)


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """ "512x512,512x384" -> ((512, 512), (512, 384)); for settings and the CLI."""
    sizes = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        width, sep, height = part.lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise ValueError(f"sizes are WIDTHxHEIGHT, comma separated, not {part!r}")
        sizes.append((int(width), int(height)))
    return tuple(sizes)


def parse_ints(text: str) -> tuple[int, ...]:
    """ "1,2,4" -> (1, 2, 4)."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise ValueError(f"expected comma-separated integers, not {text!r}") from error


def free_memory(device: str) -> None:
    """Return cached blocks after an out-of-memory error, so a smaller batch can fit."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()
