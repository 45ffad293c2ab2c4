"""Runs one finishing operation on a full-resolution image (in the model thread)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from editor.finishing.matting import Matting, cutout, on_white
from editor.finishing.spec import Finish
from editor.finishing.upscale import Upscaler


@dataclass(frozen=True, slots=True)
class Finished:
    """The result image (RGBA for a cut-out) and whether the pixel cap held it back."""

    image: Image.Image
    capped: bool = False


class Finisher:
    """The upscaler and the matting model, each loaded at its first use.

    Loading lazily keeps start-up fast and lets a bot without the finishing extra (or with a
    missing weights file) serve edits; the first finishing job says what is wrong instead.
    """

    def __init__(self, upscaler: Upscaler, matting: Matting) -> None:
        self.upscaler = upscaler
        self.matting = matting

    def run(self, finish: Finish, image: Image.Image) -> Finished:
        if finish.operation == "upscale":
            upscaled = self.upscaler.upscale(image, finish.scale, finish.max_pixels)
            return Finished(upscaled.image, upscaled.capped)
        mask = self.matting.mask(image)
        if finish.operation == "cutout":
            return Finished(cutout(image, mask))
        return Finished(on_white(image, mask, square=finish.square))
