"""Masks of named regions ("the logo", "the background") from a text-prompted segmenter.

`/keep` and `/only` name a region in words; CLIPSeg (transformers' CLIPSegForImageSegmentation)
turns the words and the photo into a per-pixel probability at its own small resolution (352 px
for the released checkpoints). `region_mask` upsamples that to the photo's size and thresholds
it into a binary "L" mask (0/255), the form the develop step applies and storage keeps as PNG.

The model is loaded on first use (`ClipSegSegmenter.load`, called by `masks`), in whichever
thread calls it: the bot calls it in its model thread. Knows nothing of settings; its load
errors name the option as "segmenter_model" (or "device") (the editor's usual `option`
convention: the caller maps it to where the value came from).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from editor.errors import ModelLoadError

DEFAULT_THRESHOLD = 0.4
"""Probability above which a pixel belongs to the region (CLIPSeg's maps are soft and rarely
reach 0.9 even on the object; 0.4 is the usual cut in its examples)."""

NOTHING_SHARE = 0.002
"""A mask covering less than this share of the photo found nothing (a few stray pixels)."""
EVERYTHING_SHARE = 0.98
"""A mask covering more than this share is the whole photo: no region to keep or confine."""


class Segmenter(Protocol):
    """Text-prompted segmentation: one binary mask per text, at the image's own size."""

    def load(self) -> None:
        """Load the weights (idempotent); `masks` calls it on first use."""

    def masks(
        self, image: Image.Image, texts: Sequence[str], size: tuple[int, int] | None = None
    ) -> list[Image.Image]:
        """One "L" mask (0 outside, 255 inside) per text, each `size` (default `image.size`).

        `size` lets the caller segment a small copy (the working image) and get masks at the
        full-resolution photo's size.
        """


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a photo a mask covers, and whether that names a usable region."""

    share: float

    @property
    def is_nothing(self) -> bool:
        return self.share < NOTHING_SHARE

    @property
    def is_everything(self) -> bool:
        return self.share > EVERYTHING_SHARE


def coverage(mask: Image.Image) -> Coverage:
    """The share of the mask's pixels that are set."""
    values = np.asarray(mask, dtype=np.uint8)
    return Coverage(float(np.count_nonzero(values)) / max(values.size, 1))


def region_mask(
    probability: NDArray[Any], size: tuple[int, int], threshold: float = DEFAULT_THRESHOLD
) -> Image.Image:
    """A low-resolution probability map (H x W, 0..1) as a binary mask of `size` (w, h).

    Upsampled bilinearly before thresholding, so the edge follows the smooth map instead of
    the model's coarse pixel grid.
    """
    values = np.ascontiguousarray(probability, dtype=np.float32)
    resized = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
    mask = (resized > threshold).astype(np.uint8)
    mask *= 255  # in place: no 8-byte-per-pixel temporary at 24 MP
    return Image.fromarray(mask, mode="L")


class ClipSegSegmenter:
    """CLIPSeg from a hub id or a local folder, loaded lazily, on the CPU or a GPU.

    Args:
        model: hub id (`CIDAS/clipseg-rd64-refined`) or folder holding the model and processor.
        device: "auto" (the fastest present, as for the editor), "cpu", "cuda" or "mps".
        threshold: probability cut, see `DEFAULT_THRESHOLD`.
    """

    def __init__(
        self, model: str, *, device: str = "cpu", threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        self.model_name = model
        self.device = device
        self.threshold = threshold
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the processor and model once.

        Raises:
            ModelLoadError: the model cannot be found or read (names the `model` option).
        """
        with self._lock:
            if self._model is not None:
                return
            from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

            try:
                processor = CLIPSegProcessor.from_pretrained(self.model_name)
                model = CLIPSegForImageSegmentation.from_pretrained(self.model_name)
            except (OSError, ValueError) as error:
                raise ModelLoadError(
                    f"Cannot load the segmentation model {self.model_name!r}: {error}",
                    option="segmenter_model",
                    value=self.model_name,
                ) from error
            from editor.loading import select_device

            try:
                device = select_device(self.device)
                model.to(device)  # type: ignore[arg-type]  # transformers types `to` oddly
            except (RuntimeError, AssertionError) as error:
                raise ModelLoadError(
                    f"Cannot move the segmentation model to {self.device!r}: {error}",
                    option="device",
                    value=self.device,
                ) from error
            model.eval()
            self._processor, self._model = processor, model
            self._device = device

    def probabilities(self, image: Image.Image, texts: Sequence[str]) -> NDArray[Any]:
        """(len(texts), H, W) probabilities at the model's resolution, one batch for all texts."""
        import torch

        self.load()
        rgb = image.convert("RGB")
        inputs = self._processor(
            text=list(texts),
            images=[rgb] * len(texts),
            padding=True,
            truncation=True,
            return_tensors="pt",
        ).to(self._device)
        with torch.inference_mode():
            logits = self._model(**inputs).logits
        # CLIPSeg squeezes a batch of one to (H, W); restore the batch axis.
        logits = logits.reshape(len(texts), *logits.shape[-2:])
        return torch.sigmoid(logits.float()).cpu().numpy()

    def masks(
        self, image: Image.Image, texts: Sequence[str], size: tuple[int, int] | None = None
    ) -> list[Image.Image]:
        if not texts:
            return []
        maps = self.probabilities(image, texts)
        return [region_mask(values, size or image.size, self.threshold) for values in maps]


DIM = 0.3
"""Brightness left outside the region in a mask preview."""


def mask_overlay(image: Image.Image, mask: Image.Image, dim: float = DIM) -> Image.Image:
    """`image` with everything outside `mask` dimmed: what a region covers, at a glance."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    inside = np.asarray(mask.convert("L").resize(image.size), dtype=np.uint8)[..., None] > 0
    dimmed = (rgb.astype(np.float32) * dim + 0.5).astype(np.uint8)
    return Image.fromarray(np.where(inside, rgb, dimmed))
