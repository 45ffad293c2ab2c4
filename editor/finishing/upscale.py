"""Super-resolution through spandrel, tile by tile so memory stays bounded at any size.

spandrel recognises the architecture (ESRGAN/RRDBNet, SwinIR, HAT and others) from the keys of
a weights file; a local file or a hub id with a file name ("owner/repo:file.pth") is loaded
once, at first use, in the model thread. Each tile is upscaled with a margin of context that is
cropped away again, so tiles meet without seams.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from editor.finishing.errors import FinishingNotInstalled, UpscalerUnavailable

log = logging.getLogger(__name__)

TILE = 256
"""Input pixels per tile side: a 4x ESRGAN tile is then 1024 px, ~50 MB of activations."""
PAD = 16
"""Context pixels around each tile, cropped after upscaling (hides the tile borders)."""

TileModel = Callable[[np.ndarray], np.ndarray]
"""HxWx3 uint8 in, (sH)x(sW)x3 uint8 out, for the model's scale s."""


@dataclass(frozen=True, slots=True)
class Upscaled:
    """An upscaled image and whether the stored-pixel cap held it below the asked factor."""

    image: Image.Image
    capped: bool


def target_size(size: tuple[int, int], scale: int, max_pixels: int) -> tuple[tuple[int, int], bool]:
    """The output size for `scale`, held under `max_pixels` with its aspect; and if it was."""
    width, height = size
    factor = float(scale)
    if width * height * factor * factor > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        out = max(1, math.floor(width * factor)), max(1, math.floor(height * factor))
        while out[0] * out[1] > max_pixels:
            out = out[0] - 1, out[1] - 1
        return out, True
    return (width * scale, height * scale), False


def can_grow(size: tuple[int, int], max_pixels: int) -> bool:
    """Whether an upscale adds anything: at least 5 % more width under the cap."""
    (width, _), _capped = target_size(size, 2, max_pixels)
    return width >= size[0] * 1.05


def upscale_tiled(
    model: TileModel,
    model_scale: int,
    image: Image.Image,
    out_size: tuple[int, int],
    *,
    tile: int = TILE,
    pad: int = PAD,
) -> Image.Image:
    """Upscale `image` to `out_size` tile by tile (RGB; an alpha channel is resized apart).

    Each tile is cut with `pad` pixels of context, run through the model at its own scale,
    cropped back to the tile and resized to the tile's share of `out_size` when the model's
    scale differs from the one asked for. Peak memory: the output plus one tile.
    """
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    fx, fy = out_size[0] / width, out_size[1] / height
    out = np.empty((out_size[1], out_size[0], 3), dtype=np.uint8)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
            px1, py1 = min(width, x1 + pad), min(height, y1 + pad)
            up = model(rgb[py0:py1, px0:px1])
            s = model_scale
            core = up[(y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s]
            ox0, oy0 = round(x0 * fx), round(y0 * fy)
            ox1, oy1 = round(x1 * fx), round(y1 * fy)
            if core.shape[1] != ox1 - ox0 or core.shape[0] != oy1 - oy0:
                core = np.asarray(
                    Image.fromarray(core).resize((ox1 - ox0, oy1 - oy0), Image.Resampling.LANCZOS)
                )
            out[oy0:oy1, ox0:ox1] = core
    result = Image.fromarray(out)
    if alpha is not None:
        result.putalpha(alpha.resize(out_size, Image.Resampling.LANCZOS))
    return result


def resolve_weights(source: str) -> Path:
    """A local weights file, or "owner/repo:file" fetched through the hub cache."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if ":" in source and not path.exists():
        repo, filename = source.split(":", 1)
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, filename))
        except Exception as error:
            raise UpscalerUnavailable(source=source, detail=str(error)) from error
    raise UpscalerUnavailable(source=source, detail="no such file")


class Upscaler:
    """A spandrel super-resolution model, loaded at first use (in the model thread)."""

    def __init__(self, source: str | None, device: str = "cpu") -> None:
        self.source = source
        self.device = device
        self._descriptor: Any = None

    def load(self) -> None:
        """Detect and load the weights; a clear error naming the weights, never a traceback."""
        if self._descriptor is not None:
            return
        try:
            import torch
            from spandrel import ImageModelDescriptor, ModelLoader
        except ImportError as error:
            raise FinishingNotInstalled(missing=str(error)) from error
        if not self.source:
            raise UpscalerUnavailable(source="", detail="no upscaler model is configured")
        path = resolve_weights(self.source)
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            descriptor = ModelLoader(device=torch.device(self.device)).load_from_file(path)
        except Exception as error:
            log.error("upscaler weights %s could not be loaded: %s", path, error)
            raise UpscalerUnavailable(source=self.source, detail=str(error)) from error
        if not isinstance(descriptor, ImageModelDescriptor):
            raise UpscalerUnavailable(source=self.source, detail="not an image-to-image model")
        descriptor.model.eval()
        self._descriptor = descriptor
        log.info("upscaler %s loaded: %s %dx", path, descriptor.architecture.name, descriptor.scale)

    @property
    def scale(self) -> int:
        self.load()
        return int(self._descriptor.scale)

    def parameter_count(self) -> int:
        self.load()
        return sum(p.numel() for p in self._descriptor.model.parameters())

    def run_tile(self, tile: np.ndarray) -> np.ndarray:
        """One tile through the model: HxWx3 uint8 in, upscaled HxWx3 uint8 out."""
        import torch

        descriptor = self._descriptor
        tensor = torch.from_numpy(tile.copy()).permute(2, 0, 1)[None]
        tensor = tensor.to(self.device, torch.float32) / 255.0
        with torch.inference_mode():
            out = descriptor(tensor)
        out = (out[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
        return np.asarray(out.cpu().numpy())

    def upscale(
        self, image: Image.Image, scale: int, max_pixels: int, *, tile: int = TILE
    ) -> Upscaled:
        """`image` upscaled `scale` times, held under `max_pixels` (then `capped`)."""
        self.load()
        size, capped = target_size(image.size, scale, max_pixels)
        out = upscale_tiled(self.run_tile, self.scale, image, size, tile=tile)
        return Upscaled(out, capped)
