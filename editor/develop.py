"""Developing a model result onto its full-resolution parent (placeholder; replaced by the
develop helper's implementation at merge).

The model works at the working resolution; `develop` carries its output back onto the parent
so the stored version keeps the parent's exact size. This placeholder has no change mask: any
change is a global one (the output resized to the parent's size), no change gives the parent.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops


@dataclass(frozen=True, slots=True)
class DevelopOptions:
    """How a change is found and carried over (unused by this placeholder).

    Attributes:
        threshold: perceptual colour distance (CIELAB delta E) that counts as changed.
        morphology_radius: clean-up radius of the change mask, px at working resolution.
        feather_radius: width of the mask's soft edge, px at working resolution.
        global_share: share of the picture above which a change is global.
    """

    threshold: float = 6.0
    morphology_radius: int = 2
    feather_radius: int = 4
    global_share: float = 0.6


@dataclass(frozen=True, slots=True)
class Developed:
    """A developed result: `image` (RGB) and `mask` ("L") have exactly the parent's size."""

    image: Image.Image
    mask: Image.Image
    mode: str


def develop(
    parent: Image.Image,
    model_input: Image.Image,
    model_output: Image.Image,
    options: DevelopOptions = DevelopOptions(),
) -> Developed:
    """parent: the full-resolution RGB parent; model_input: exactly what the model was given
    (the parent fitted to the working resolution); model_output: the model's RGB result, same
    size as model_input. Pure function, no I/O."""
    if model_output.size != model_input.size:
        raise ValueError(f"model output {model_output.size} != model input {model_input.size}")
    parent = parent.convert("RGB")
    output = model_output.convert("RGB")
    if ImageChops.difference(model_input.convert("RGB"), output).getbbox() is None:
        return Developed(parent.copy(), Image.new("L", parent.size, 0), "none")
    image = output.resize(parent.size, Image.Resampling.LANCZOS)
    return Developed(image, Image.new("L", parent.size, 255), "global")
