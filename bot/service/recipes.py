"""The recipe book: `/recipe save|show|delete|export`, `/recipes`, and importing a file.

A recipe is saved from the path root -> current version: each edit's instruction and
parameters (the seed only with `exact`), the regions in force and the develop setting. Applying
one to photos is `bot/service/batches.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.service.lookup import started_conversation
from bot.service.messages import Key, Phrase
from bot.service.replies import Attachment, Note, Reply, ReplyKind, replies_to_errors
from editor.regions import Region
from storage import recipes, regions, tree
from storage.database import Database
from storage.errors import NoImageYet
from storage.models import Version
from storage.recipe_format import (
    NothingToSave,
    Recipe,
    RecipeNotFound,
    RecipeStep,
    StepParams,
    check_name,
    parse_recipe,
)
from storage.recipe_format import Region as RecipeRegion
from storage.types import Actor

APPLY_WORDS = ("save", "show", "delete", "export", "list")


def recipe_from_path(
    name: str,
    path: Sequence[Version],
    *,
    exact: bool,
    develop: bool,
    regions_of: Mapping[int, Sequence[Region]] | None = None,
) -> Recipe:
    """The recipe of a chain root -> version: its finished edits, in order, each with the
    /keep and /only regions it was made with (`regions_of`, by version id)."""
    regions_of = regions_of or {}
    steps = []
    for version in path[1:]:
        if not version.is_done or version.params is None:
            continue
        params = version.edit_params()
        steps.append(
            RecipeStep(
                instruction=version.instruction or "",
                params=StepParams(
                    num_inference_steps=params.num_inference_steps,
                    guidance_scale=params.guidance_scale,
                    image_guidance_scale=params.image_guidance_scale,
                    resolution=params.resolution,
                    seed=params.seed if exact else None,
                ),
                regions=[
                    RecipeRegion(kind=region.kind, text=region.text)
                    for region in regions_of.get(version.id, ())
                ]
                or None,
            )
        )
    if not steps:
        raise NothingToSave()
    return Recipe(name=name, exact=exact, develop=develop, steps=steps)


def recipe_args(recipe: Recipe) -> dict[str, object]:
    return {
        "name": recipe.name,
        "count": len(recipe.steps),
        "exact": Phrase(Key.RECIPE_EXACT_SEEDS) if recipe.exact else "",
    }


def step_notes(recipe: Recipe) -> tuple[Note, ...]:
    """One line per step, with its parameters (and seed, regions where recorded)."""
    from bot.service.messages import render

    notes = []
    for number, step in enumerate(recipe.steps, start=1):
        extra = ""
        if step.params.seed is not None:
            extra += render(Key.RECIPE_STEP_SEED, {"seed": step.params.seed})
        for region in step.regions or ():
            extra += render(Key.RECIPE_STEP_REGION, region.model_dump())
        args = {
            "number": number,
            "instruction": step.instruction,
            "extra": extra,
            **step.params.model_dump(exclude={"seed"}),
        }
        notes.append(Note(Key.RECIPE_STEP_LINE, args))
    return tuple(notes)


class RecipeBook:
    """Saves, lists, shows, deletes, exports and imports a user's recipes."""

    def __init__(self, database: Database, *, develop: bool = True) -> None:
        self.database = database
        self.develop = develop

    @replies_to_errors
    async def command(self, actor: Actor, words: Sequence[str]) -> Reply:
        """`/recipe <words>` without photos: the book's subcommands, or how to apply."""
        if not words:
            return Reply(key=Key.RECIPE_USAGE)
        verb, rest = words[0].lower(), list(words[1:])
        if verb == "list":
            return await self.list(actor)
        if verb in APPLY_WORDS and rest:
            name = rest[0]
            if verb == "save":
                exact = any(word.lower() == "exact" for word in rest[1:])
                return await self.save(actor, name, exact=exact)
            if verb == "show":
                return await self.show(actor, name)
            if verb == "delete":
                return await self.delete(actor, name)
            return await self.export(actor, name)
        if verb in APPLY_WORDS:
            return Reply(key=Key.RECIPE_USAGE)
        name = check_name(words[0])
        await self.load(actor, name)  # an unknown name says so before asking for photos
        return Reply(key=Key.RECIPE_NEEDS_PHOTOS, args={"name": name})

    @replies_to_errors
    async def save(self, actor: Actor, name: str, *, exact: bool = False) -> Reply:
        """Save the path root -> current version under `name` (replacing one of that name)."""
        name = check_name(name)
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            head = await tree.head(session, conversation)
            if head is None:
                raise NoImageYet()
            path = await tree.path_to(session, head.id)
            made_with = await regions.of_versions(session, [version.id for version in path[1:]])
            recipe = recipe_from_path(
                name, path, exact=exact, develop=self.develop, regions_of=made_with
            )
            replaced = await recipes.save(session, actor.platform, actor.user_id, recipe)
        key = Key.RECIPE_REPLACED if replaced else Key.RECIPE_SAVED
        return Reply(key=key, args=recipe_args(recipe))

    @replies_to_errors
    async def list(self, actor: Actor) -> Reply:
        async with self.database.read() as session:
            found = await recipes.all_of(session, actor.platform, actor.user_id)
        if not found:
            return Reply(key=Key.RECIPE_LIST_EMPTY)
        notes = tuple(Note(Key.RECIPE_LIST_LINE, recipe_args(recipe)) for recipe in found)
        return Reply(key=Key.RECIPE_LIST, notes=notes)

    @replies_to_errors
    async def show(self, actor: Actor, name: str) -> Reply:
        recipe = await self.load(actor, name)
        return Reply(key=Key.RECIPE_SHOW, args=recipe_args(recipe), notes=step_notes(recipe))

    @replies_to_errors
    async def delete(self, actor: Actor, name: str) -> Reply:
        name = check_name(name)
        async with self.database.write() as session:
            if not await recipes.delete_named(session, actor.platform, actor.user_id, name):
                raise RecipeNotFound(name=name)
        return Reply(key=Key.RECIPE_DELETED, args={"name": name})

    @replies_to_errors
    async def export(self, actor: Actor, name: str) -> Reply:
        """The recipe as a JSON file the user can keep, share or send back."""
        recipe = await self.load(actor, name)
        return Reply(
            key=Key.RECIPE_EXPORTED,
            args={"name": recipe.name},
            kind=ReplyKind.DOCUMENT,
            attachment=Attachment(f"{recipe.name}.recipe.json", recipe.to_json().encode()),
        )

    @replies_to_errors
    async def import_file(self, actor: Actor, data: bytes) -> Reply:
        """A recipe file sent back: validated (size, format, ranges), then saved by its name."""
        recipe = parse_recipe(data)
        async with self.database.write() as session:
            await recipes.save(session, actor.platform, actor.user_id, recipe)
        return Reply(key=Key.RECIPE_IMPORTED, args=recipe_args(recipe))

    async def load(self, actor: Actor, name: str) -> Recipe:
        """A recipe of this user by name; RecipeNotFound (also for other users' recipes)."""
        name = check_name(name)
        async with self.database.read() as session:
            recipe = await recipes.get(session, actor.platform, actor.user_id, name)
        if recipe is None:
            raise RecipeNotFound(name=name)
        return recipe
