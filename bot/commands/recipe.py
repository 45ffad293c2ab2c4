"""`pix2chat recipe apply`: one recipe on a catalogue of photos, through the bot's own service,
scheduler and editor (embedded, or the shared queue with PIX2CHAT_WORKER=remote).

Every photo goes through the same batch application as in a chat (a root and a chain of
queued steps per photo, the fair scheduler, the develop step), in chunks of
PIX2CHAT_MAX_RECIPE_PHOTOS. Each finished photo is written at once as a full-resolution PNG
(atomically) and its steps as rows of OUT/report.csv, so a killed run resumes: photos whose
PNG exists are skipped, and the steps a kill left queued are cancelled first.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import getpass
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import typer

from bot.config import Settings
from bot.service.batches import Photo, PhotoOutcome
from bot.service.conversation import Admission, ConversationService
from bot.service.messages import Key, render
from bot.service.replies import Reply, ReplyKind
from editor.base import Editor
from storage.limits import LimitPolicy
from storage.recipe_format import Recipe, RecipeError, parse_recipe
from storage.types import Actor

PLATFORM = "cli"
REPORT = "report.csv"
FIELDS = ("photo", "step", "seed", "status", "error", "seconds")
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".bmp", ".gif"}
)
CATALOGUE_ADMISSION = Admission(
    max_pending_per_user=10**9, queue_cap=10**9, rate=LimitPolicy(10**9, 10**9, 0)
)
"""The operator's own tool: no chat rate limit or daily quota (the queue's fairness stays)."""
POLL_S = 1.0
"""Outcomes are read again at least this often, whatever events arrive."""


class BadInput(Exception):
    """The command line names something unusable; the message says what."""


def collect(paths: Sequence[Path]) -> list[Path]:
    """The photos named: files as given, folders' image files (recursively, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise BadInput(f"No such file or folder: {path}")
    if not found:
        raise BadInput("No photos found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(found))


def output_names(photos: Sequence[Path]) -> dict[Path, str]:
    """A unique result file name per photo: its stem, then -2, -3 ... on clashes."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for photo in photos:
        stem, number = photo.stem or "photo", 1
        name = f"{stem}.png"
        while name.lower() in taken:
            number += 1
            name = f"{stem}-{number}.png"
        taken.add(name.lower())
        names[photo] = name
    return names


@dataclass
class Catalogue:
    """The output folder: result PNGs and the CSV report, both written atomically."""

    out: Path
    outputs: dict[str, str]
    """Result file name by photo (its path as given)."""
    rows: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise BadInput(f"{self.out} is a file, not a folder")
        self.out.mkdir(parents=True, exist_ok=True)
        report = self.out / REPORT
        if report.exists():
            with report.open(newline="", encoding="utf-8") as handle:
                # Rows of photos finished earlier stay; the others are written again.
                self.rows = [r for r in csv.DictReader(handle) if self.is_done(r["photo"])]

    def is_done(self, photo: str) -> bool:
        name = self.outputs.get(photo)
        return name is not None and (self.out / name).is_file()

    def write_result(self, photo: str, png: bytes) -> None:
        _atomic_write(self.out / self.outputs[photo], png)

    def record(self, rows: Sequence[dict[str, str]]) -> None:
        self.rows += rows
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        _atomic_write(self.out / REPORT, buffer.getvalue().encode())


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    """Finished in an earlier run."""


def _rows(outcome: PhotoOutcome) -> list[dict[str, str]]:
    rows = []
    for step in outcome.steps:
        error = render(step.error_key, {"instruction": ""}) if step.error_key else ""
        rows.append(
            {
                "photo": outcome.label,
                "step": str(step.number),
                "seed": "" if step.seed is None else str(step.seed),
                "status": step.status,
                "error": error,
                "seconds": "" if step.seconds is None else f"{step.seconds:.3f}",
            }
        )
    return rows


def _refused(label: str, reason: str) -> dict[str, str]:
    return {
        "photo": label,
        "step": "",
        "seed": "",
        "status": "skipped",
        "error": reason,
        "seconds": "",
    }


async def apply_catalogue(
    service: ConversationService,
    actor: Actor,
    recipe: Recipe,
    photos: Sequence[Path],
    catalogue: Catalogue,
    on_photo: Callable[[str], None] = lambda _label: None,
) -> Summary:
    """Apply `recipe` to every photo not finished in `catalogue` yet; write each as it ends."""
    summary = Summary()
    await service.batches.cancel(actor)  # what a killed run left queued
    imported = await service.import_recipe(actor, recipe.to_json().encode())
    if imported.is_error:
        raise BadInput(imported.text())
    todo = [photo for photo in photos if not catalogue.is_done(str(photo))]
    summary.skipped = len(photos) - len(todo)
    changed = asyncio.Event()

    async def listen(who: Actor, reply: Reply) -> None:
        if who == actor and reply.kind in (ReplyKind.BATCH_STATUS, ReplyKind.BATCH_RESULT):
            changed.set()

    service.subscribe(PLATFORM, listen)
    try:
        runs: dict[int, set[str]] = {}  # run -> labels not yet written
        chunk = service.batches.max_photos
        for start in range(0, len(todo), chunk):
            batch = []
            for path in todo[start : start + chunk]:
                try:
                    batch.append(Photo(str(path), path.read_bytes()))
                except OSError as error:
                    catalogue.record([_refused(str(path), error.strerror or str(error))])
                    summary.failed += 1
                    on_photo(str(path))
            if not batch:
                continue
            reply = await service.apply_recipe(actor, recipe.name, batch)
            for note in reply.notes:
                if note.key == Key.RECIPE_NOT_IMAGE:
                    catalogue.record([_refused(note.args["photo"], note.args["reason"])])
                    summary.failed += 1
                    on_photo(note.args["photo"])
            if reply.kind is not ReplyKind.BATCH_STATUS:
                if reply.key != Key.ERROR_RECIPE_NO_PHOTOS:
                    raise BadInput(reply.text())
                continue
            refused = {n.args["photo"] for n in reply.notes if n.key == Key.RECIPE_NOT_IMAGE}
            runs[reply.args["run"]] = {p.label for p in batch} - refused
        while runs:
            for run_id, waiting in list(runs.items()):
                for outcome in await service.batch_outcomes(actor, run_id):
                    if outcome.label not in waiting or not outcome.finished:
                        continue
                    if outcome.result_id is not None:
                        png = await service.image(actor, outcome.result_id, full=True)
                        catalogue.write_result(outcome.label, png)
                        summary.done += 1
                    else:
                        summary.failed += 1
                    catalogue.record(_rows(outcome))
                    waiting.discard(outcome.label)
                    on_photo(outcome.label)
                if not waiting:
                    del runs[run_id]
            if runs:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), POLL_S)
    finally:
        service.unsubscribe(PLATFORM, listen)
    return summary


def catalogue_actor(out: Path) -> Actor:
    """Whose edits these are: the operator, with one conversation per output folder."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return Actor(PLATFORM, str(out.resolve()), user)


async def _run(
    settings: Settings, editor: Editor | None, recipe: Recipe, photos: list[Path], out: Path
) -> Summary:
    from bot.app import build

    names = output_names(photos)
    catalogue = Catalogue(out, {str(photo): name for photo, name in names.items()})
    async with build(settings, editor, admission=CATALOGUE_ADMISSION) as components:
        with typer.progressbar(
            length=len(photos), label=f"Applying {recipe.name}", file=sys.stderr
        ) as bar:
            bar.update(sum(catalogue.is_done(str(photo)) for photo in photos))
            return await apply_catalogue(
                components.service,
                catalogue_actor(out),
                recipe,
                photos,
                catalogue,
                on_photo=lambda _label: bar.update(1),
            )


def apply_command(
    settings: Settings,
    recipe_file: Path,
    paths: Sequence[Path],
    out: Path,
    *,
    null_editor: bool = False,
    step_delay_ms: int = 0,
) -> int:
    """`pix2chat recipe apply`: the exit status (0: every photo done, 1: some failed, 2: bad
    input). `null_editor` and `step_delay_ms` are hidden options for tests and benchmarks."""
    from bot.app import ConfigurationError, with_setting_hint
    from editor.errors import ModelLoadError

    try:
        recipe = parse_recipe(recipe_file.read_bytes())
        photos = collect(paths)
    except RecipeError as error:
        typer.secho(
            f"{recipe_file}: {render(error.key, error.args_for_message)}", fg="red", err=True
        )
        return 2
    except (BadInput, OSError) as error:
        typer.secho(str(error), fg="red", err=True)
        return 2
    editor: Editor | None = None
    if null_editor:
        from editor.testing.doubles import NullEditor, StepDelay

        editor = NullEditor()
        if step_delay_ms:
            editor = StepDelay(editor, step_delay_ms / 1000)
    try:
        summary = asyncio.run(_run(settings, editor, recipe, photos, out))
    except BadInput as error:
        typer.secho(str(error), fg="red", err=True)
        return 2
    except ConfigurationError as error:
        typer.secho(str(error), fg="red", err=True)
        return 2
    except ModelLoadError as error:
        typer.secho(with_setting_hint(error), fg="red", err=True)
        return 1
    typer.echo(
        f"{summary.done} photo(s) done, {summary.failed} failed, {summary.skipped} already "
        f"done earlier; results and {REPORT} in {out}"
    )
    return 1 if summary.failed else 0
