"""Per-conversation generation settings: the research UI's five knobs, validated."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from bot.service.messages import Key, Phrase
from editor.errors import UserError
from editor.params import (
    GUIDANCE_RANGE,
    IMAGE_GUIDANCE_RANGE,
    MAX_SEED,
    RESOLUTIONS,
    STEPS_RANGE,
    EditParams,
)
from storage.errors import InvalidSetting

SeedMode = Literal["random", "fixed"]


class UnknownSetting(UserError):
    """No setting has that name."""

    key = Key.ERROR_UNKNOWN_SETTING


# Friendly names users type or tap -> field names (diffusers' own where they exist)
ALIASES: dict[str, str] = {
    "steps": "num_inference_steps",
    "num_inference_steps": "num_inference_steps",
    "text_guidance": "guidance_scale",
    "guidance": "guidance_scale",
    "guidance_scale": "guidance_scale",
    "image_guidance": "image_guidance_scale",
    "image_guidance_scale": "image_guidance_scale",
    "seed_mode": "seed_mode",
    "seed": "seed",
    "resolution": "resolution",
    "candidates": "candidates",
    "best_of": "candidates",
    "model": "model",
}

MAX_CANDIDATES = 4
"""Best-of-N runs at most this many candidates per instruction (one micro-batch)."""
MODEL_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a user chose; unset fields fall back to the server defaults."""

    num_inference_steps: int
    guidance_scale: float
    image_guidance_scale: float
    resolution: int
    seed_mode: SeedMode = "random"
    seed: int = 0
    candidates: int = 1
    """Best-of-N: candidates per instruction; the best-scored one is kept (1 = off)."""
    model: str = ""  # a PIX2CHAT_MODELS name; "" = the deployment's only model

    @classmethod
    def load(cls, stored: Mapping[str, Any], defaults: EditParams) -> Preferences:
        """Stored choices over defaults; values that no longer validate are dropped."""
        prefs = cls(
            num_inference_steps=defaults.num_inference_steps,
            guidance_scale=defaults.guidance_scale,
            image_guidance_scale=defaults.image_guidance_scale,
            resolution=defaults.resolution,
            model=defaults.model,
        )
        for name, value in stored.items():
            try:
                prefs = prefs.with_value(name, value)
            except UserError:
                continue
        return prefs

    def with_value(self, name: str, value: Any) -> Preferences:
        """A copy with one setting changed; InvalidSetting/UnknownSetting explain bad input."""
        field_name = ALIASES.get(name.strip().lower().replace(" ", "_"))
        if field_name is None:
            raise UnknownSetting(
                name=name, names=", ".join(sorted(set(ALIASES) - set(ALIASES.values())))
            )
        return replace(self, **{field_name: _validate(field_name, value)})

    def to_dict(self) -> dict[str, Any]:
        """The choices; `model` only where the deployment has several to pick from."""
        data = asdict(self)
        if not self.model:
            del data["model"]
        return data

    def params(self, seed: int | None = None) -> EditParams:
        """Parameters for the next edit: a fresh seed unless the user fixed one."""
        if seed is None:
            seed = self.seed if self.seed_mode == "fixed" else new_seed()
        return EditParams(
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            image_guidance_scale=self.image_guidance_scale,
            seed=seed,
            resolution=self.resolution,
            model=self.model,
        )


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def _number(name: str, value: Any, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or not low <= number <= high:
        key = Key.ALLOWED_WHOLE_NUMBER if kind is int else Key.ALLOWED_NUMBER
        raise InvalidSetting(
            name=name, allowed=Phrase(key, {"low": f"{low:g}", "high": f"{high:g}"})
        )
    return number


def _validate(field_name: str, value: Any) -> Any:
    if field_name == "num_inference_steps":
        return _number("steps", value, int, *STEPS_RANGE)
    if field_name == "guidance_scale":
        return round(_number("text guidance", value, float, *GUIDANCE_RANGE), 2)
    if field_name == "image_guidance_scale":
        return round(_number("image guidance", value, float, *IMAGE_GUIDANCE_RANGE), 2)
    if field_name == "seed":
        return _number("seed", value, int, 0, MAX_SEED)
    if field_name == "resolution":
        allowed = ", ".join(str(r) for r in RESOLUTIONS)
        resolution = _number("resolution", value, int, min(RESOLUTIONS), max(RESOLUTIONS))
        if resolution not in RESOLUTIONS:
            raise InvalidSetting(
                name="resolution", allowed=Phrase(Key.ALLOWED_ONE_OF, {"choices": allowed})
            )
        return resolution
    if field_name == "candidates":
        return _number("candidates", value, int, 1, MAX_CANDIDATES)
    if field_name == "model":
        name = str(value).strip().lower()
        if not name or len(name) > 64 or not set(name) <= MODEL_NAME_CHARACTERS:
            raise InvalidSetting(name="model", allowed="a model name from /model")
        return name
    if field_name == "seed_mode":
        if str(value).lower() not in ("random", "fixed"):
            raise InvalidSetting(name="seed mode", allowed=Phrase(Key.OPTION_SEED_MODE))
        return str(value).lower()
    raise AssertionError(field_name)
