"""Applying a recipe to a batch of photos: admission, the queued chains, one status line for
the batch, the grouped results, the zip, and /cancel.

Each photo becomes a new root of the user's tree with one queued edit per step, chained (step
k edits step k-1's result), so every result can be undone, regenerated or branched like any
other. All steps are admitted at once in one transaction: each counts against the daily quota
(the reply says how many photos fit), the batch takes one rate-limit token and is not held to
the per-user pending cap. The scheduler runs them as this user's jobs, one at a time, so the
fair line interleaves them with other users' edits.

Job events of batch versions are taken from the relay (`on_job_event` returns True): the chat
gets one status line ("7 of 12 photos done") and, when every photo is finished, one grouped
result, instead of a message per step.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from bot.service.admission import Gatekeeper, job_for
from bot.service.media import Media
from bot.service.messages import Key, render
from bot.service.preferences import new_seed
from bot.service.recipes import RecipeBook
from bot.service.replies import Action, Note, Reply, ReplyKind, replies_to_errors
from bot.work.jobs import Job, JobDone, JobEvent, JobFailed, JobQueue
from editor.errors import ImageError
from editor.regions import Region
from storage import lifecycle, limits, recipes, regions, tree
from storage.database import Database
from storage.errors import QueueFull, VersionNotFound
from storage.models import Conversation, RecipeRun, Version, VersionStatus
from storage.recipe_format import RecipeEmpty
from storage.types import Actor

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
DEFAULT_MAX_RECIPE_PHOTOS = 20
"""Photos one chat batch takes (PIX2CHAT_MAX_RECIPE_PHOTOS)."""

Publish = Callable[[Actor, Reply], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Photo:
    """One photo of a batch: a label for reports (a file name, "photo 3") and its bytes."""

    label: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One step of one photo: for reports (the CLI's CSV)."""

    number: int
    version_id: int
    seed: int | None
    status: str
    error_key: str | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class PhotoOutcome:
    """How far one photo of a run got."""

    label: str
    result_id: int | None
    """The last step's version, when every step is done."""
    failed_step: int | None = None
    """1-based step that failed or was cancelled."""
    error_key: str | None = None
    instruction: str = ""
    steps: tuple[StepOutcome, ...] = ()

    @property
    def finished(self) -> bool:
        return self.result_id is not None or self.failed_step is not None


@dataclass
class _Tracked:
    run_id: int
    actor: Actor
    name: str
    photos: int
    done: int = 0


def outcomes(items: Sequence[dict[str, Any]], found: dict[int, Version]) -> list[PhotoOutcome]:
    """Each admitted photo's state, read from its step versions."""
    return [_outcome(item, found) for item in items]


def _outcome(item: dict[str, Any], found: dict[int, Version]) -> PhotoOutcome:
    chain = [found.get(version_id) for version_id in item["versions"]]
    steps = tuple(
        _step(number, version_id, version)
        for number, (version_id, version) in enumerate(
            zip(item["versions"], chain, strict=True), start=1
        )
    )
    for number, version in enumerate(chain, start=1):
        if version is None or version.status in (VersionStatus.FAILED, VersionStatus.CANCELLED):
            cancelled = version is not None and version.status is VersionStatus.CANCELLED
            return PhotoOutcome(
                item["photo"],
                None,
                number,
                CANCELLED if cancelled else (version.error_key if version is not None else None),
                (version.instruction or "") if version is not None else "",
                steps,
            )
    last = chain[-1] if chain else None
    if last is not None and last.is_done:
        return PhotoOutcome(item["photo"], last.id, steps=steps)
    return PhotoOutcome(item["photo"], None, steps=steps)


def _step(number: int, version_id: int, version: Version | None) -> StepOutcome:
    if version is None:
        return StepOutcome(number, version_id, None, "forgotten", None, None)
    seconds = None
    if version.started_at is not None and version.finished_at is not None:
        seconds = (version.finished_at - version.started_at).total_seconds()
    return StepOutcome(
        number,
        version_id,
        (version.params or {}).get("seed"),
        str(version.status),
        version.error_key,
        seconds,
    )


class Batches:
    """Applies recipes to photo batches and reports on them as one."""

    def __init__(
        self,
        database: Database,
        queue: JobQueue,
        gate: Gatekeeper,
        media: Media,
        book: RecipeBook,
        *,
        max_photos: int = DEFAULT_MAX_RECIPE_PHOTOS,
    ) -> None:
        self.database = database
        self.queue = queue
        self.gate = gate
        self.media = media
        self.book = book
        self.max_photos = max_photos
        self.publish: Publish | None = None
        self._runs: dict[int, _Tracked] = {}
        self._run_of: dict[int, int] = {}  # version id -> run id
        self._loaded = False
        self._load_lock = asyncio.Lock()

    # ----- applying --------------------------------------------------------------------------

    @replies_to_errors
    async def apply(self, actor: Actor, name: str, photos: Sequence[Photo]) -> Reply:
        """Queue every step of the recipe on every photo that fits; the batch's status reply.

        Photos over `max_photos` and over what today's quota allows are left out (the notes
        say so); a file that is not an image is skipped and named.
        """
        recipe = await self.book.load(actor, name)
        if not recipe.steps:
            raise RecipeEmpty(name=recipe.name)
        instructions = [self.gate.clean_instruction(step.instruction) for step in recipe.steps]
        notes: list[Note] = []
        if len(photos) > self.max_photos:
            notes.append(Note(Key.RECIPE_TOO_MANY, {"max": self.max_photos}))
            photos = photos[: self.max_photos]
        stored = []
        for photo in photos:
            try:
                upload = await asyncio.to_thread(self.media.store_upload, photo.data)
            except ImageError as error:
                reason = render(error.key, _readable(error.args_for_message))
                notes.append(Note(Key.RECIPE_NOT_IMAGE, {"photo": photo.label, "reason": reason}))
                continue
            stored.append((photo.label, upload))
        if not stored:
            return Reply(key=Key.ERROR_RECIPE_NO_PHOTOS, kind=ReplyKind.ERROR, notes=tuple(notes))
        steps = len(recipe.steps)
        policy = self.gate.admission.rate
        now = self.gate.clock()
        jobs: list[Job] = []
        async with self.database.write() as session:
            left = await limits.remaining(session, actor.platform, actor.user_id, policy, now)
            if left is not None:
                fit = left // steps
                if fit == 0:
                    raise limits.quota_exceeded(policy, now)
                notes.insert(
                    0, Note(Key.RECIPE_QUOTA_FITS, {"steps": steps, "left": left, "fit": fit})
                )
                if fit < len(stored):
                    notes.insert(1, Note(Key.RECIPE_QUOTA_SHORT, {"fit": fit}))
                    stored = stored[:fit]
            edits = steps * len(stored)
            if await self.queue.depth() >= self.gate.admission.queue_cap:
                raise QueueFull()  # admitted as a whole, like one edit
            await limits.consume(session, actor.platform, actor.user_id, policy, now)
            await limits.charge(session, actor.platform, actor.user_id, policy, now, edits - 1)
            conversation = await tree.get_or_create_conversation(session, actor)
            items = []
            for label, upload in stored:
                root = await tree.add_root(session, conversation, upload.sha, upload.size)
                parent, chain = root, []
                for step, instruction in zip(recipe.steps, instructions, strict=True):
                    params = step.params.edit_params(new_seed())
                    version = await tree.add_edit(
                        session, conversation, parent, instruction, params
                    )
                    # Masked again on this photo when the step runs (editor.segment).
                    replayed = [
                        Region(region["kind"], region["text"])  # type: ignore[arg-type]
                        for region in step.replay_regions() or ()
                    ]
                    await regions.record_for_edit(session, version.id, replayed)
                    job = job_for(actor, version, parent)
                    await self.queue.defer_in(session, job)
                    jobs.append(job)
                    chain.append(version.id)
                    parent = version
                items.append({"photo": label, "root": root.id, "versions": chain})
            run = await recipes.add_run(session, conversation, recipe.name, items)
            run_id = run.id
        self._track(run_id, actor, recipe.name, items)
        for job in jobs:
            await self.queue.submit(job)
        return Reply(
            key=Key.RECIPE_STARTED,
            args={
                "run": run_id,
                "name": recipe.name,
                "photos": len(items),
                "steps": steps,
                "edits": edits,
                "done": 0,
            },
            kind=ReplyKind.BATCH_STATUS,
            actions=(Action.CANCEL,),
            notes=tuple(notes),
        )

    # ----- events ----------------------------------------------------------------------------

    async def on_job_event(self, event: JobEvent) -> bool:
        """The relay's interceptor: True when the event belongs to a batch (handled here)."""
        await self._ensure_loaded()
        run_id = self._run_of.get(event.version_id)
        if run_id is None:
            return False
        if isinstance(event, JobFailed) and not event.refunded:
            tracked = self._runs[run_id]
            async with self.database.write() as session:
                await limits.refund(session, tracked.actor.platform, tracked.actor.user_id)
        if isinstance(event, JobDone | JobFailed):
            await self._report(run_id)
        return True

    async def redeliver(self, platform: str) -> int:
        """Publish batches that finished while nobody was there (after a restart)."""
        await self._ensure_loaded()
        count = 0
        for run_id, tracked in list(self._runs.items()):
            if tracked.actor.platform == platform and await self._report(run_id, status=False):
                count += 1
        return count

    async def _report(self, run_id: int, *, status: bool = True) -> bool:
        """Publish the batch's progress, or its results once every photo is finished."""
        tracked = self._runs.get(run_id)
        if tracked is None:
            return False
        async with self.database.read() as session:
            run = await session.get(RecipeRun, run_id)
            if run is None:
                self._untrack(run_id)
                return False
            items = run.items["photos"]
            found = await recipes.versions(session, [v for i in items for v in i["versions"]])
        states = outcomes(items, found)
        done = sum(state.finished for state in states)
        if done < len(states):
            if status and done != tracked.done:
                tracked.done = done
                await self._publish(
                    tracked.actor,
                    Reply(
                        key=Key.RECIPE_PROGRESS,
                        args={
                            "run": run_id,
                            "name": tracked.name,
                            "photos": len(states),
                            "done": done,
                        },
                        kind=ReplyKind.BATCH_STATUS,
                        actions=(Action.CANCEL,),
                    ),
                )
            return False
        async with self.database.write() as session:
            first = await recipes.finish_run(session, run_id)
            if first:
                for version_id in found:
                    await lifecycle.mark_delivered(session, version_id)
        self._untrack(run_id)
        if first:
            await self._publish(tracked.actor, finished_reply(run_id, tracked.name, states))
        return first

    async def _publish(self, actor: Actor, reply: Reply) -> None:
        if self.publish is not None:
            await self.publish(actor, reply)

    # ----- cancel, zip -----------------------------------------------------------------------

    async def cancel(self, actor: Actor) -> Reply | None:
        """/cancel while a batch of this chat runs: its remaining steps; None if none runs."""
        await self._ensure_loaded()
        active = [t for t in self._runs.values() if t.actor == actor]
        if not active:
            return None
        total = 0
        for tracked in active:
            async with self.database.write() as session:
                run = await session.get(RecipeRun, tracked.run_id)
                if run is None:
                    continue
                ids = [v for item in run.items["photos"] for v in item["versions"]]
                cancelled = await lifecycle.cancel_queued(session, ids)
                for _ in cancelled:
                    await limits.refund(session, actor.platform, actor.user_id)
            self.queue.discard({v.id for v in cancelled})
            total += len(cancelled)
            await self._report(tracked.run_id)
        return Reply(key=Key.RECIPE_CANCELLED, args={"name": active[0].name, "count": total})

    async def run_outcomes(self, actor: Actor, run_id: int) -> list[PhotoOutcome]:
        """How far each photo of a batch got (its owner only; VersionNotFound otherwise)."""
        _name, states = await self._owned_run(actor, run_id)
        return states

    async def _owned_run(self, actor: Actor, run_id: int) -> tuple[str, list[PhotoOutcome]]:
        async with self.database.read() as session:
            run = await session.get(RecipeRun, run_id)
            conversation = (
                await session.get(Conversation, run.conversation_id) if run is not None else None
            )
            if run is None or conversation is None or _actor(conversation) != actor:
                raise VersionNotFound(version_id=run_id)
            items = run.items["photos"]
            found = await recipes.versions(session, [v for i in items for v in i["versions"]])
            return run.recipe_name, outcomes(items, found)

    async def zip_results(self, actor: Actor, run_id: int) -> tuple[str, bytes]:
        """The finished photos of a batch as full-resolution PNGs in one zip (its owner only).

        Raises VersionNotFound for another user's batch or one with no results.
        """
        name, every = await self._owned_run(actor, run_id)
        states = [state for state in every if state.result_id is not None]
        if not states:
            raise VersionNotFound(version_id=run_id)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for number, state in enumerate(states, start=1):
                assert state.result_id is not None
                png = await self.media.image(actor, state.result_id, full=True)
                archive.writestr(f"{number:02d}-{safe_stem(state.label)}.png", png)
        return f"{name}-results.zip", buffer.getvalue()

    # ----- tracking --------------------------------------------------------------------------

    def _track(self, run_id: int, actor: Actor, name: str, items: Sequence[dict[str, Any]]) -> None:
        self._runs[run_id] = _Tracked(run_id, actor, name, len(items))
        for item in items:
            for version_id in item["versions"]:
                self._run_of[version_id] = run_id

    def _untrack(self, run_id: int) -> None:
        self._runs.pop(run_id, None)
        for version_id in [v for v, r in self._run_of.items() if r == run_id]:
            del self._run_of[version_id]

    async def _ensure_loaded(self) -> None:
        """Batches still running after a restart are tracked again (loaded once)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            async with self.database.read() as session:
                rows = await recipes.unfinished_runs(session)
            for run, conversation in rows:
                if run.id not in self._runs:
                    self._track(run.id, _actor(conversation), run.recipe_name, run.items["photos"])
            self._loaded = True


def finished_reply(run_id: int, name: str, states: Sequence[PhotoOutcome]) -> Reply:
    """The batch's grouped result: every finished photo, and which ones failed where."""
    notes = []
    for state in states:
        if state.error_key == CANCELLED:
            notes.append(
                Note(Key.RECIPE_PHOTO_CANCELLED, {"photo": state.label, "step": state.failed_step})
            )
        elif state.failed_step is not None:
            reason = render(
                state.error_key or Key.ERROR_EDIT_FAILED, {"instruction": state.instruction}
            )
            notes.append(
                Note(
                    Key.RECIPE_PHOTO_FAILED,
                    {
                        "photo": state.label,
                        "step": state.failed_step,
                        "instruction": state.instruction,
                        "reason": reason,
                    },
                )
            )
    results = tuple(s.result_id for s in states if s.result_id is not None)
    return Reply(
        key=Key.RECIPE_FINISHED,
        args={"run": run_id, "name": name, "photos": len(states), "succeeded": len(results)},
        kind=ReplyKind.BATCH_RESULT,
        versions=results,
        notes=tuple(notes),
    )


def safe_stem(label: str) -> str:
    """A file-name-safe stem of a photo's label."""
    stem = PurePath(label).stem or "photo"
    return re.sub(r"[^\w.-]+", "_", stem)[:60] or "photo"


def _actor(conversation: Conversation) -> Actor:
    return Actor(conversation.platform, conversation.chat_id, conversation.user_id)


def _readable(args: dict[str, Any]) -> dict[str, Any]:
    args = dict(args)
    if "max_mb" in args:
        args["limit"] = f"{args['max_mb']} MB"
    elif "max_megapixels" in args:
        args["limit"] = f"{args['max_megapixels']} megapixels"
    return args
