"""The recipe document: a named list of edit steps, as saved, listed, exported and imported.

One format for the database, the chat's JSON export and `pix2chat recipe apply`, validated
with pydantic whatever its source (a user's file is untrusted): unknown fields, out-of-range
parameters, too many steps or too many bytes are refused with a reason the user can act on.

A step records what decided its pixels: the instruction, the generation parameters (diffusers'
names), the seed only for an `exact` recipe, and the regions in force (/keep, /only) as an
optional list that replay passes through untouched.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from editor.errors import UserError
from editor.params import (
    GUIDANCE_RANGE,
    IMAGE_GUIDANCE_RANGE,
    MAX_SEED,
    RESOLUTIONS,
    STEPS_RANGE,
    EditParams,
)

FORMAT = "pix2chat.recipe"
FORMAT_VERSION = 1
MAX_RECIPE_BYTES = 64 * 1024
"""An exported recipe is a few hundred bytes; anything far bigger is not one."""
MAX_STEPS = 20
MAX_NAME_CHARS = 40
MAX_INSTRUCTION_CHARS = 1000
MAX_REGIONS = 10
NAME_PATTERN = re.compile(r"^[\w][\w.-]*$")


class RecipeError(UserError):
    """Something is wrong with a recipe."""

    key = "error.recipe_invalid"


class RecipeNotFound(RecipeError):
    """No recipe of that name (recipes are per user and platform)."""

    key = "error.recipe_not_found"


class RecipeEmpty(RecipeError):
    """Nothing to replay: the recipe (or the path it would be saved from) has no edits."""

    key = "error.recipe_empty"


class NothingToSave(RecipeError):
    """The current version is an unedited photo: there are no steps to save."""

    key = "error.recipe_nothing_to_save"


class RecipeInvalid(RecipeError):
    """A recipe file that is not a valid recipe; `reason` says where."""

    key = "error.recipe_invalid"


class RecipeTooLarge(RecipeError):
    """A recipe file over MAX_RECIPE_BYTES."""

    key = "error.recipe_too_large"


class RecipeNameInvalid(RecipeError):
    """Names are one word: letters, digits, '_', '-', '.'; at most MAX_NAME_CHARS."""

    key = "error.recipe_name"


class Region(BaseModel):
    """A region in force at a step: keep this unchanged, or change only this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["keep", "only"]
    text: Annotated[str, Field(min_length=1, max_length=200)]


class StepParams(BaseModel):
    """The generation parameters of a step; `seed` only in exact recipes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_inference_steps: Annotated[int, Field(ge=STEPS_RANGE[0], le=STEPS_RANGE[1])]
    guidance_scale: Annotated[float, Field(ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1])]
    image_guidance_scale: Annotated[
        float, Field(ge=IMAGE_GUIDANCE_RANGE[0], le=IMAGE_GUIDANCE_RANGE[1])
    ]
    resolution: int
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None

    @field_validator("resolution")
    @classmethod
    def _known_resolution(cls, value: int) -> int:
        if value not in RESOLUTIONS:
            raise ValueError(f"must be one of {', '.join(map(str, RESOLUTIONS))}")
        return value

    def edit_params(self, seed: int) -> EditParams:
        """The parameters of one replay: the recorded seed if any, else `seed` (fresh)."""
        return EditParams(
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            image_guidance_scale=self.image_guidance_scale,
            seed=self.seed if self.seed is not None else seed,
            resolution=self.resolution,
        )


class RecipeStep(BaseModel):
    """One edit of a recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: Annotated[str, Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS)]
    params: StepParams
    regions: Annotated[list[Region], Field(max_length=MAX_REGIONS)] | None = None
    """The regions in force at this step (/keep, /only); None where none were set.

    Replay records them on the step's new edit (`replay_regions`), which masks them again on
    the new photo when it runs."""

    def replay_regions(self) -> list[dict[str, str]] | None:
        """The regions of this step's replayed edit, as plain JSON values."""
        if self.regions is None:
            return None
        return [region.model_dump() for region in self.regions]


class Recipe(BaseModel):
    """A named list of steps, with what was in force when it was saved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["pix2chat.recipe"] = "pix2chat.recipe"
    version: Literal[1] = 1
    name: str
    exact: bool = False
    """Saved with its seeds: a replay reproduces the original results."""
    develop: bool | None = None
    """PIX2CHAT_DEVELOP when it was saved (the server's own setting applies to a replay)."""
    steps: Annotated[list[RecipeStep], Field(max_length=MAX_STEPS)]

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return data


def check_name(name: str) -> str:
    """A recipe name, or RecipeNameInvalid."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not NAME_PATTERN.match(name):
        raise RecipeNameInvalid(name=name[:MAX_NAME_CHARS], max_chars=MAX_NAME_CHARS)
    return name


def parse_recipe(data: bytes | str) -> Recipe:
    """A recipe from untrusted JSON (a file a user sent, a file on disk).

    Raises:
        RecipeTooLarge: over MAX_RECIPE_BYTES (checked before parsing).
        RecipeInvalid: not JSON, or not a recipe; `reason` names the first problem.
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeTooLarge(max_kb=MAX_RECIPE_BYTES // 1024)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise RecipeInvalid(reason=f"not JSON ({error})") from None
    return recipe_from_dict(document)


def recipe_from_dict(document: Any) -> Recipe:
    """A recipe from a parsed document (the database's, or a file's); RecipeInvalid if not one."""
    if not isinstance(document, dict):
        raise RecipeInvalid(reason="not a JSON object")
    try:
        return Recipe.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "recipe"
        raise RecipeInvalid(reason=f"{where}: {first['msg']}") from None
    except RecipeNameInvalid:
        raise RecipeInvalid(reason="name: not a valid recipe name") from None
