"""Generation parameters, named as diffusers names them so a stored version reproduces exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RESOLUTIONS: tuple[int, ...] = (256, 384, 512, 640, 768)
STEPS_RANGE: tuple[int, int] = (1, 100)
GUIDANCE_RANGE: tuple[float, float] = (1.0, 20.0)
IMAGE_GUIDANCE_RANGE: tuple[float, float] = (1.0, 5.0)
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, slots=True)
class EditParams:
    """Everything besides the image and the instruction that decides an edit's pixels.

    Attributes:
        num_inference_steps: denoising steps.
        guidance_scale: text guidance; higher applies the instruction more strongly.
        image_guidance_scale: image guidance; higher stays closer to the input.
        seed: seed of the per-sample torch generator.
        resolution: long side in pixels the input is fitted to (both sides multiples of 8).
        model: name of the model that edits (one of the configured models); "" is the deployment's only or
            default model. Recorded with every version, left out of the stored dict when "".
    """

    num_inference_steps: int = 20
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    seed: int = 0
    resolution: int = 512
    model: str = ""

    def batch_key(self) -> tuple[int, float, float]:
        """Jobs with equal keys (and equal image size) can share one pipeline call."""
        return (self.num_inference_steps, self.guidance_scale, self.image_guidance_scale)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.model:
            del data["model"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditParams:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
