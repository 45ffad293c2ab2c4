"""`pix2chat bench recipe`: a recipe on a catalogue through `pix2chat recipe apply`'s own code
path (photos/s), and how long another user's single edit waits while it runs, against an
idle bot (p50, max).

Each editor runs in a fresh data folder (SQLite, file images) with the production object graph
(`bot.app.build`): the embedded scheduler with its fair line, the develop step, the service.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.app import build
from bot.commands.bench_service import product_photo
from bot.commands.recipe import CATALOGUE_ADMISSION, Catalogue, apply_catalogue, output_names
from bot.config import Settings
from bot.service.conversation import ConversationService
from bot.service.replies import Reply, ReplyKind
from editor.base import Editor
from storage.recipe_format import Recipe, RecipeStep, StepParams
from storage.types import Actor

Echo = Callable[[str], None]
INSTRUCTIONS = ("put it on a beach", "make it golden hour", "add a soft shadow")
OTHER = Actor("bench", "other-chat", "other-user")


def _recipe(steps: int, denoising_steps: int, resolution: int) -> Recipe:
    params = StepParams(
        num_inference_steps=denoising_steps,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        resolution=resolution,
    )
    return Recipe(
        name="bench",
        steps=[
            RecipeStep(instruction=INSTRUCTIONS[i % len(INSTRUCTIONS)], params=params)
            for i in range(steps)
        ],
    )


def _photos(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"product-{index:03d}.jpg"
        product_photo(size, seed=index).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


class _Waits:
    """Times the other user's single edits from request to result."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self._done: dict[int, asyncio.Future[None]] = {}
        service.subscribe(OTHER.platform, self._on_reply)

    async def _on_reply(self, _actor: Actor, reply: Reply) -> None:
        if reply.kind in (ReplyKind.RESULT, ReplyKind.FAILED) and reply.version_id is not None:
            future = self._done.setdefault(
                reply.version_id, asyncio.get_running_loop().create_future()
            )
            if not future.done():
                future.set_result(None)

    async def one(self) -> float:
        started = time.perf_counter()
        reply = await self.service.instruct(OTHER, "make it blue")
        assert reply.version_id is not None and not reply.is_error, reply
        future = self._done.setdefault(reply.version_id, asyncio.get_running_loop().create_future())
        await asyncio.wait_for(future, 600)
        return time.perf_counter() - started


def _summary(waits: Sequence[float]) -> str:
    if not waits:
        return "no samples"
    return (
        f"p50 {statistics.median(waits) * 1000:8.1f} ms   max {max(waits) * 1000:8.1f} ms   "
        f"(n={len(waits)})"
    )


async def _bench_editor(
    label: str,
    editor: Editor,
    folder: Path,
    photos: Sequence[Path],
    recipe: Recipe,
    samples: int,
    echo: Echo,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=folder / "data", max_wait_ms=0, worker="embedded"
    )
    names = output_names(photos)
    outputs = {str(photo): name for photo, name in names.items()}
    async with build(settings, editor, admission=CATALOGUE_ADMISSION) as components:
        service = components.service
        waits = _Waits(service)
        await service.receive_image(OTHER, photos[0].read_bytes())

        started = time.perf_counter()
        alone = await apply_catalogue(
            service,
            Actor("cli", str(folder / "out-alone"), "bench"),
            recipe,
            photos,
            Catalogue(folder / "out-alone", outputs),
        )
        seconds = time.perf_counter() - started
        assert alone.done == len(photos), alone
        echo(
            f"{label:5} recipe apply   {len(photos)} photos x {len(recipe.steps)} steps in "
            f"{seconds:7.2f} s = {len(photos) / seconds:7.2f} photos/s"
        )

        idle = [await waits.one() for _ in range(samples)]
        busy: list[float] = []
        run = asyncio.create_task(
            apply_catalogue(
                service,
                Actor("cli", str(folder / "out-busy"), "bench"),
                recipe,
                photos,
                Catalogue(folder / "out-busy", outputs),
            )
        )
        while not run.done():
            busy.append(await waits.one())
        await run
        echo(f"{label:5} other user's single edit, idle bot       {_summary(idle)}")
        echo(f"{label:5} other user's single edit, recipe running {_summary(busy)}")


def run_recipe_benchmark(
    photos: int,
    steps: int,
    editors: Sequence[str],
    samples: int,
    size: int,
    denoising_steps: int,
    step_delay_ms: int,
    echo: Echo,
) -> None:
    """Print the figures for each editor ("null": no model, "tiny": the tiny random pipeline)."""
    from editor.testing.doubles import NullEditor, StepDelay

    resolution = 256
    recipe = _recipe(steps, denoising_steps, resolution)
    echo(
        f"recipe: {steps} steps of {denoising_steps} denoising steps at {resolution} px; "
        f"{photos} photos of {size}x{size}; null editor step delay {step_delay_ms} ms"
    )
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-recipe-") as scratch:
        folder = Path(scratch)
        paths = _photos(folder / "photos", photos, size)
        for label in editors:
            editor: Editor
            if label == "null":
                editor = NullEditor()
                if step_delay_ms:
                    editor = StepDelay(editor, step_delay_ms / 1000)
            elif label == "tiny":
                from editor.pix2pix import DiffusersEditor
                from editor.testing.tiny import build_tiny_pipeline

                editor = DiffusersEditor(str(build_tiny_pipeline(folder / "tiny")), device="cpu")
            else:
                raise ValueError(f"unknown editor {label!r}: null or tiny")
            asyncio.run(_bench_editor(label, editor, folder / label, paths, recipe, samples, echo))
