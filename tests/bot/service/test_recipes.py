"""The recipe book through the service: save, list, show, delete, export, import."""

from __future__ import annotations

import json

from bot.service.replies import ReplyKind
from storage.recipe_format import MAX_RECIPE_BYTES, parse_recipe
from tests.bot.service.harness import ALICE, ALICE_DM, BOB, Harness


async def _two_edits(h: Harness) -> None:
    await h.upload(ALICE)
    await h.edit(ALICE, "make it night")
    await h.edit(ALICE, "add snow")


async def test_save_list_show_delete(h: Harness) -> None:
    await _two_edits(h)
    saved = await h.service.recipe(ALICE, ["save", "winter"])
    assert saved.key == "recipe.saved" and saved.args["count"] == 2, saved

    listed = await h.service.recipe(ALICE, ["list"])
    assert "winter: 2 steps" in listed.text()

    shown = await h.service.recipe(ALICE, ["show", "winter"])
    text = shown.text()
    assert "1. “make it night”" in text and "2. “add snow”" in text
    assert "seed" not in text  # not exact: replays get fresh seeds

    # the same user in another chat of the platform sees it; another user does not
    assert (await h.service.recipe(ALICE_DM, ["show", "winter"])).key == "recipe.show"
    other = await h.service.recipe(BOB, ["show", "winter"])
    assert other.kind is ReplyKind.ERROR and other.key == "error.recipe_not_found"

    deleted = await h.service.recipe(ALICE, ["delete", "winter"])
    assert deleted.key == "recipe.deleted"
    assert (await h.service.recipe(ALICE, ["list"])).key == "recipe.list_empty"
    again = await h.service.recipe(ALICE, ["delete", "winter"])
    assert again.key == "error.recipe_not_found"


async def test_exact_keeps_the_seeds_and_saving_again_replaces(h: Harness) -> None:
    await _two_edits(h)
    await h.service.recipe(ALICE, ["save", "winter"])
    replaced = await h.service.recipe(ALICE, ["save", "winter", "exact"])
    assert replaced.key == "recipe.replaced"
    exported = await h.service.recipe(ALICE, ["export", "winter"])
    assert exported.attachment is not None
    recipe = parse_recipe(exported.attachment.data)
    assert recipe.exact and all(step.params.seed is not None for step in recipe.steps)
    assert recipe.develop is True


async def test_nothing_to_save_from_an_unedited_photo(h: Harness) -> None:
    await h.upload(ALICE)
    reply = await h.service.recipe(ALICE, ["save", "plain"])
    assert reply.key == "error.recipe_nothing_to_save" and reply.kind is ReplyKind.ERROR
    nothing = await h.service.recipe(BOB, ["save", "plain"])
    assert nothing.key == "error.no_image"


async def test_bad_names_and_usage(h: Harness) -> None:
    await _two_edits(h)
    bad = await h.service.recipe(ALICE, ["save", "a/b"])
    assert bad.key == "error.recipe_name"
    assert (await h.service.recipe(ALICE, [])).key == "recipe.usage"
    assert (await h.service.recipe(ALICE, ["show"])).key == "recipe.usage"
    unknown = await h.service.recipe(ALICE, ["summer"])
    assert unknown.key == "error.recipe_not_found" and "summer" in unknown.text()
    await h.service.recipe(ALICE, ["save", "summer"])
    assert (await h.service.recipe(ALICE, ["summer"])).key == "recipe.needs_photos"


async def test_export_import_round_trip(h: Harness) -> None:
    await _two_edits(h)
    await h.service.recipe(ALICE, ["save", "winter", "exact"])
    exported = await h.service.recipe(ALICE, ["export", "winter"])
    assert exported.kind is ReplyKind.DOCUMENT and exported.attachment is not None
    assert exported.attachment.filename == "winter.recipe.json"

    imported = await h.service.import_recipe(BOB, exported.attachment.data)
    assert imported.key == "recipe.imported" and imported.args["count"] == 2
    again = await h.service.recipe(BOB, ["export", "winter"])
    assert again.attachment is not None
    assert json.loads(again.attachment.data) == json.loads(exported.attachment.data)


async def test_import_refuses_malformed_and_oversized_files(h: Harness) -> None:
    broken = await h.service.import_recipe(ALICE, b"{not json")
    assert broken.key == "error.recipe_invalid" and "not JSON" in broken.text()
    wrong = json.dumps(
        {
            "format": "pix2chat.recipe",
            "name": "x",
            "steps": [
                {
                    "instruction": "a",
                    "params": {
                        "num_inference_steps": 500,
                        "guidance_scale": 7,
                        "image_guidance_scale": 1.5,
                        "resolution": 512,
                    },
                }
            ],
        }
    )
    refused = await h.service.import_recipe(ALICE, wrong.encode())
    assert refused.key == "error.recipe_invalid"
    assert "steps.0.params.num_inference_steps" in refused.text()
    huge = await h.service.import_recipe(ALICE, b" " * (MAX_RECIPE_BYTES + 1))
    assert huge.key == "error.recipe_too_large"
    assert (await h.service.recipe(ALICE, ["list"])).key == "recipe.list_empty"


async def test_forget_deletes_recipes(h: Harness) -> None:
    await _two_edits(h)
    await h.service.recipe(ALICE, ["save", "winter"])
    await h.service.forget(ALICE)
    assert (await h.service.recipe(ALICE, ["list"])).key == "recipe.list_empty"
