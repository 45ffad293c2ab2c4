"""What a finishing operation is, as stored in a version's parameters (`params["finish"]`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Operation = Literal["upscale", "cutout", "white"]
OPERATIONS: tuple[str, ...] = ("upscale", "cutout", "white")
SCALES: tuple[int, ...] = (2, 4)


@dataclass(frozen=True, slots=True)
class Finish:
    """One finishing operation on a version's full-resolution image.

    Attributes:
        operation: upscale, cutout (subject on transparency) or white (subject on #FFFFFF).
        scale: the upscale factor asked for (2 or 4).
        square: white only: a 1:1 canvas.
        max_pixels: the stored-pixel cap the result is held under (upscale).
    """

    operation: Operation
    scale: int = 2
    square: bool = False
    max_pixels: int = 24_000_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finish:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def label(self) -> str:
        """The command that asked for it; what the history shows as its instruction."""
        if self.operation == "upscale":
            return f"/upscale {self.scale}x"
        if self.operation == "white":
            return "/white square" if self.square else "/white"
        return "/cutout"


def finish_from_params(params: dict[str, Any] | None) -> Finish | None:
    """The finishing operation stored in a version's parameters, None for an edit or a photo."""
    if not params or not isinstance(params.get("finish"), dict):
        return None
    return Finish.from_dict(params["finish"])
