"""The recipe document: validation of untrusted JSON, and the regions pass-through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage.recipe_format import (
    MAX_RECIPE_BYTES,
    MAX_STEPS,
    Recipe,
    RecipeInvalid,
    RecipeNameInvalid,
    RecipeTooLarge,
    check_name,
    parse_recipe,
)

PARAMS = {
    "num_inference_steps": 20,
    "guidance_scale": 7.5,
    "image_guidance_scale": 1.5,
    "resolution": 512,
}


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "pix2chat.recipe",
        "version": 1,
        "name": "summer",
        "steps": [{"instruction": "put it on a beach", "params": dict(PARAMS)}],
    }
    base.update(changes)
    return base


def test_a_round_trip_keeps_every_field() -> None:
    step = {
        "instruction": "make it golden hour",
        "params": {**PARAMS, "seed": 42},
        "regions": [{"kind": "keep", "text": "the logo"}, {"kind": "only", "text": "sky"}],
    }
    recipe = parse_recipe(json.dumps(document(exact=True, develop=False, steps=[step])))
    again = parse_recipe(recipe.to_json())
    assert again == recipe
    assert again.exact and again.develop is False
    assert json.loads(recipe.to_json())["steps"][0] == step


def test_regions_pass_through_as_plain_values() -> None:
    """What a replay hands to the edit request: the regions exactly as recorded."""
    regions = [{"kind": "keep", "text": "the logo"}]
    with_regions = parse_recipe(
        json.dumps(document(steps=[{"instruction": "a", "params": PARAMS, "regions": regions}]))
    )
    assert with_regions.steps[0].replay_regions() == regions
    without = parse_recipe(json.dumps(document()))
    assert without.steps[0].replay_regions() is None
    assert "regions" not in json.loads(without.to_json())["steps"][0]


def test_seeds_replay_fresh_unless_recorded() -> None:
    plain = parse_recipe(json.dumps(document())).steps[0].params
    assert plain.edit_params(seed=7).seed == 7
    exact = (
        parse_recipe(
            json.dumps(document(steps=[{"instruction": "a", "params": {**PARAMS, "seed": 3}}]))
        )
        .steps[0]
        .params
    )
    assert exact.edit_params(seed=7).seed == 3


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"format": "something.else"}, "format"),
        ({"version": 2}, "version"),
        ({"surprise": 1}, "surprise"),
        ({"steps": "no"}, "steps"),
        ({"steps": [{"instruction": "", "params": PARAMS}]}, "steps.0.instruction"),
        ({"steps": [{"instruction": "a", "params": {**PARAMS, "resolution": 500}}]}, "resolution"),
        ({"steps": [{"instruction": "a", "params": {**PARAMS, "guidance_scale": 99}}]}, "guidance"),
        ({"steps": [{"instruction": "a", "params": {**PARAMS, "seed": -1}}]}, "seed"),
        (
            {"steps": [{"instruction": "a", "params": PARAMS, "regions": [{"kind": "blur"}]}]},
            "regions",
        ),
        ({"steps": [{"instruction": "a", "params": PARAMS}] * (MAX_STEPS + 1)}, "steps"),
        ({"name": "two words"}, "name"),
    ],
)
def test_malformed_recipes_are_refused_with_where(changes: dict[str, Any], where: str) -> None:
    with pytest.raises(RecipeInvalid) as refused:
        parse_recipe(json.dumps(document(**changes)))
    assert where in refused.value.args_for_message["reason"]


def test_not_json_not_an_object_and_too_large() -> None:
    with pytest.raises(RecipeInvalid):
        parse_recipe(b"\xff\xfe")
    with pytest.raises(RecipeInvalid):
        parse_recipe("[1, 2]")
    with pytest.raises(RecipeTooLarge):
        parse_recipe(b" " * (MAX_RECIPE_BYTES + 1))


def test_names() -> None:
    assert check_name(" summer-24.v2 ") == "summer-24.v2"
    for bad in ("", "a b", "../x", "x" * 41):
        with pytest.raises(RecipeNameInvalid):
            check_name(bad)
    assert Recipe(name="ok", steps=[]).steps == []
