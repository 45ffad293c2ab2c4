"""The conversation service: every frontend's single entry point.

Frontends translate platform events into these calls and render the `Reply` they get back;
progress and results arrive later through `subscribe`. The service never imports a chat
library and never touches the model: it records versions and hands jobs to a `JobQueue`.

It is a facade over small parts, each testable on its own: `Edits` (photos, instructions,
regenerate) admitted by a `Gatekeeper`, `Commands` (undo, redo, reset, history, settings,
cancel, status, forget), `Regions` (/keep, /only, /regions), `Media` (uploads and pictures)
and the `Relay` of job events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bot.service.access import AccessControl, AccessPolicy
from bot.service.admin import Admin
from bot.service.admission import MAX_INSTRUCTION_CHARS, Admission, Gatekeeper
from bot.service.batches import DEFAULT_MAX_RECIPE_PHOTOS, Batches, Photo, PhotoOutcome
from bot.service.choices import Choices
from bot.service.commands import Commands
from bot.service.edits import Edits
from bot.service.finishing import Finishing
from bot.service.languages import Hint, Languages
from bot.service.media import DEFAULT_MAX_STORED_PIXELS, Media, Previews
from bot.service.messages import Key
from bot.service.recipes import RecipeBook
from bot.service.regions import Regions
from bot.service.relay import Relay
from bot.service.replies import (
    Reply,
    ReplyKind,
    UpdateListener,
    error_reply,
    replies_to_errors,
)
from bot.service.stamping import Stamper
from bot.work.jobs import JobQueue
from bot.work.masking import RegionMasker
from bot.work.metrics import Metrics
from bot.work.warmup import Warmup
from editor.base import Editor
from editor.finishing.provenance import Provenance
from editor.images import ImageLimits
from editor.params import EditParams
from editor.regions import KEEP, ONLY
from storage import recipes as recipe_rows
from storage.database import Database
from storage.images import ImageStore
from storage.types import Actor


class ConversationService:
    """Photo in, instructions in, versions out; one per process, shared by every frontend."""

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        queue: JobQueue,
        tokens: Editor,
        *,
        defaults: EditParams | None = None,
        admission: Admission | None = None,
        image_limits: ImageLimits | None = None,
        max_stored_pixels: int = DEFAULT_MAX_STORED_PIXELS,
        masker: RegionMasker | None = None,
        clock: Callable[[], float] = time.time,
        provenance: Provenance | None = None,
        access: AccessPolicy | None = None,
        metrics: Metrics | None = None,
        warmup: Warmup | None = None,
        models: tuple[str, ...] = (),
        no_image_guidance: frozenset[str] = frozenset(),
        develop: bool = True,
        max_recipe_photos: int = DEFAULT_MAX_RECIPE_PHOTOS,
    ) -> None:
        self.database = database
        self.images = images
        self.queue = queue
        self.tokens = tokens
        self.defaults = defaults or EditParams()
        self.admission = admission or Admission()
        self.image_limits = image_limits or ImageLimits()
        self.clock = clock
        self.previews = Previews()
        self.relay = Relay(database, self.previews)
        stamper = Stamper(database, provenance) if provenance is not None else None
        self.media = Media(
            database, images, self.image_limits, self.previews, max_stored_pixels, stamper
        )
        self.metrics = metrics or Metrics()
        self.warmup = warmup
        gate = Gatekeeper(queue, tokens, self.admission, clock, self.metrics)
        self.edits = Edits(database, queue, gate, self.media, self.relay, self.defaults, warmup)
        self.finishing = Finishing(database, queue, gate, self.media, self.relay, self.defaults)
        self.access = AccessControl(database, access or AccessPolicy(), self.metrics)
        """Frontends ask it before they download anything (bot/service/access.py)."""
        self.admin = Admin(database, self.access, clock)
        """The admin commands (bot/service/admin.py)."""
        self.commands = Commands(
            database, images, queue, self.previews, self.defaults, models, no_image_guidance
        )
        self.languages = Languages(database)
        self.regions = Regions(database, masker)
        self.choices = Choices(database, gate, self.edits)
        self.recipes = RecipeBook(database, develop=develop)
        self.batches = Batches(
            database, queue, gate, self.media, self.recipes, max_photos=max_recipe_photos
        )
        self.batches.publish = self.relay.publish
        self.relay.interceptors.append(self.batches.on_job_event)
        queue.subscribe(self.relay.on_job_event)

    # ----- subscriptions ---------------------------------------------------------------------

    def subscribe(self, platform: str, listener: UpdateListener) -> None:
        """Receive progress, results and failures for this platform's chats."""
        self.relay.subscribe(platform, listener)

    def unsubscribe(self, platform: str, listener: UpdateListener) -> None:
        """Stop receiving; results that finish meanwhile wait for `redeliver`."""
        self.relay.unsubscribe(platform, listener)

    async def redeliver(self, platform: str) -> int:
        """Re-send results that finished while nobody was there to deliver them (after a crash)."""
        return await self.relay.redeliver(platform) + await self.batches.redeliver(platform)

    async def mark_delivered(self, version_id: int) -> None:
        """A frontend calls this once the result (or failure) reached the chat."""
        await self.relay.mark_delivered(version_id)

    async def model_failed(self) -> int:
        """Tell every user with an edit waiting that the model could not start (their edits
        stay queued for the next start); how many were told."""
        return await self.relay.tell_waiting(Reply(key=Key.MODEL_FAILED, kind=ReplyKind.ERROR))

    # ----- photos and instructions -------------------------------------------------------------

    async def receive_image(
        self, actor: Actor, data: bytes, caption: str | None = None, request_key: str | None = None
    ) -> Reply:
        """A new photo starts a new tree; a caption is its first instruction."""
        return await self.edits.receive_image(actor, data, caption, request_key)

    async def instruct(
        self,
        actor: Actor,
        text: str,
        base_version_id: int | None = None,
        request_key: str | None = None,
    ) -> Reply:
        """Edit the latest result (or an explicit earlier version: a branch)."""
        return await self.edits.instruct(actor, text, base_version_id, request_key)

    async def regenerate(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Same instruction on the same parent with a new seed; the old result stays reachable."""
        return await self.edits.regenerate(actor, version_id)

    # ----- finishing (issue 18) ----------------------------------------------------------------

    async def upscale(
        self, actor: Actor, scale: str | None = None, version_id: int | None = None
    ) -> Reply:
        """2x or 4x super-resolution of the current version, as a new version."""
        return await self.finishing.upscale(actor, scale, version_id)

    async def cutout(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The subject on a transparent background (a PNG file), as a new version."""
        return await self.finishing.cutout(actor, version_id)

    async def white(
        self, actor: Actor, square: bool = False, version_id: int | None = None
    ) -> Reply:
        """The subject on pure white with a margin (a 1:1 canvas if `square`)."""
        return await self.finishing.white(actor, square, version_id)

    async def finishing_command(
        self, actor: Actor, text: str, version_id: int | None = None
    ) -> Reply | None:
        """ "/upscale 4x", "/cutout", "/white square" typed as text (web chat); None otherwise."""
        return await self.finishing.command(actor, text, version_id)

    # ----- choice in every turn ----------------------------------------------------------------

    async def variations(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Four candidates of the version's instruction on its parent, delivered together."""
        return await self.choices.variations(actor, version_id)

    async def stronger(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The same instruction and seed, applied one step more strongly."""
        return await self.choices.stronger(actor, version_id)

    async def subtler(self, actor: Actor, version_id: int | None = None) -> Reply:
        """The same instruction and seed, applied one step more gently."""
        return await self.choices.subtler(actor, version_id)

    async def pick(self, actor: Actor, version_id: int) -> Reply:
        """ "Use n": that candidate of its set becomes the current version."""
        return await self.choices.pick(actor, version_id)

    # ----- commands ----------------------------------------------------------------------------

    async def undo(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Show the version before the head (or before `version_id`); it stays, for redo."""
        return await self.commands.undo(actor, version_id)

    async def redo(self, actor: Actor) -> Reply:
        """Forward again, to the most recently visited child."""
        return await self.commands.redo(actor)

    async def reset(self, actor: Actor) -> Reply:
        """Start over from the original photo of the current chain (as a new root)."""
        return await self.commands.reset(actor)

    async def history(self, actor: Actor) -> Reply:
        """The chain root -> head, with instructions and parameters, plus edits still pending."""
        return await self.commands.history(actor)

    async def settings(self, actor: Actor) -> Reply:
        """The conversation's settings."""
        return await self.commands.settings(actor)

    async def update_setting(self, actor: Actor, name: str, value: Any) -> Reply:
        """Change one setting (validated) for the next edits."""
        return await self.commands.update_setting(actor, name, value)

    async def model_choices(self, actor: Actor) -> Reply:
        """/model without a name: the user's model and the ones to pick from."""
        return await self.commands.model_choices(actor)

    async def reset_settings(self, actor: Actor) -> Reply:
        """Back to the server defaults."""
        return await self.commands.reset_settings(actor)

    async def cancel(self, actor: Actor) -> Reply:
        """Cancel a running recipe batch's remaining steps, else the newest queued edit (and
        edits queued on top of it)."""
        return await self.batches.cancel(actor) or await self.commands.cancel(actor)

    async def status(self, actor: Actor) -> Reply:
        """Whether edits are waiting or running."""
        return await self.commands.status(actor)

    async def forget(self, actor: Actor) -> Reply:
        """Delete all of this user's versions, images and recipes on this platform."""
        async with self.database.write() as session:
            await recipe_rows.forget(session, actor.platform, actor.user_id)
        return await self.commands.forget(actor)

    # ----- languages ---------------------------------------------------------------------------

    async def locale(self, actor: Actor, hint: Hint = None) -> str:
        """The locale to answer in: /language's choice, else the app's (`hint`), else English."""
        return await self.languages.locale_for(actor, hint)

    async def choose_language(self, actor: Actor, code: str | None, hint: Hint = None) -> Reply:
        """`/language` lists the languages, `/language es` chooses, `/language auto` follows the app."""
        return await self.languages.choose(actor, code, hint)

    # ----- regions -----------------------------------------------------------------------------

    async def keep(self, actor: Actor, text: str | None) -> Reply:
        """`/keep <what>`: protect a named region from every following edit ("off" clears it)."""
        return await self.regions.command(actor, KEEP, text)

    async def only(self, actor: Actor, text: str | None) -> Reply:
        """`/only <what>`: confine following edits to a named region ("off" clears it)."""
        return await self.regions.command(actor, ONLY, text)

    async def show_regions(self, actor: Actor) -> Reply:
        """`/regions`: the regions set for the next edits."""
        return await self.regions.show(actor)

    # ----- recipes -----------------------------------------------------------------------------

    async def recipe(self, actor: Actor, words: Sequence[str]) -> Reply:
        """`/recipe save|show|delete|export|list ...` (and `/recipes`: `["list"]`)."""
        return await self.recipes.command(actor, words)

    async def apply_recipe(self, actor: Actor, name: str, photos: Sequence[Photo]) -> Reply:
        """Apply a saved recipe to a batch of photos: one new root and chain per photo."""
        return await self.batches.apply(actor, name, photos)

    async def import_recipe(self, actor: Actor, data: bytes) -> Reply:
        """A recipe file sent back: validated and saved under its name."""
        return await self.recipes.import_file(actor, data)

    async def batch_outcomes(self, actor: Actor, run_id: int) -> list[PhotoOutcome]:
        """How far each photo of a batch got, step by step (its owner only)."""
        return await self.batches.run_outcomes(actor, run_id)

    async def batch_zip(self, actor: Actor, run_id: int) -> tuple[str, bytes]:
        """A finished batch's results as full-resolution PNGs in one zip (file name, bytes)."""
        return await self.batches.zip_results(actor, run_id)

    # ----- images ------------------------------------------------------------------------------

    async def image(self, actor: Actor, version_id: int, *, full: bool = False) -> bytes:
        """A version's image for this actor only: lossless PNG if `full`, else a chat JPEG.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady.
        """
        return await self.media.image(actor, version_id, full=full)

    async def thumbnail(self, actor: Actor, version_id: int, long_side: int = 160) -> bytes:
        """A small JPEG of a version for history strips (same ownership checks as `image`)."""
        return await self.media.thumbnail(actor, version_id, long_side)

    async def preview(self, actor: Actor, version_id: int) -> bytes:
        """The latest progress preview (JPEG) of a running edit, for its owner only.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady.
        """
        return await self.media.preview(actor, version_id)


__all__ = [
    "MAX_INSTRUCTION_CHARS",
    "Actor",
    "Admission",
    "ConversationService",
    "Photo",
    "Reply",
    "error_reply",
    "replies_to_errors",
]
