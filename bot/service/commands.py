"""The conversation commands: navigation (undo, redo, reset, history), settings, the queue
(cancel, status) and privacy (forget). Each is one transaction and one reply."""

from __future__ import annotations

from typing import Any

from bot.service.lookup import started_conversation
from bot.service.media import Previews
from bot.service.messages import Key, Phrase
from bot.service.preferences import ALIASES, Preferences
from bot.service.replies import (
    Action,
    HistoryEntry,
    Note,
    Reply,
    ReplyKind,
    replies_to_errors,
)
from bot.work.jobs import JobQueue
from editor.errors import UserError
from editor.params import EditParams
from storage import lifecycle, limits, tree
from storage.database import Database
from storage.errors import EditAlreadyRunning, InvalidSetting, NoImageYet, NothingToCancel
from storage.images import ImageStore
from storage.models import Version
from storage.types import Actor


class ModelChoiceUnavailable(UserError):
    """This deployment serves one model (PIX2CHAT_MODELS is unset): there is none to pick."""

    key = Key.ERROR_ONE_MODEL


class NoImageGuidance(UserError):
    """The user's model (FLUX.1 Kontext) has no image guidance to set."""

    key = Key.ERROR_NO_IMAGE_GUIDANCE


class Commands:
    """Everything a user asks of the conversation besides photos and instructions."""

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        queue: JobQueue,
        previews: Previews,
        defaults: EditParams,
        models: tuple[str, ...] = (),
        no_image_guidance: frozenset[str] = frozenset(),
    ) -> None:
        self.database = database
        self.images = images
        self.queue = queue
        self.previews = previews
        self.defaults = defaults
        self.models = models
        """PIX2CHAT_MODELS names users may pick (empty: one model, nothing to pick)."""
        self.no_image_guidance = no_image_guidance
        """Models ("" for the only one) whose family has no image guidance: hidden for them."""

    # ----- navigation --------------------------------------------------------------------------

    @replies_to_errors
    async def undo(self, actor: Actor, version_id: int | None = None) -> Reply:
        """Show the version before the head, or before `version_id` (an older result's button).

        The undone version stays, ready for redo.
        """
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            if version_id is None:
                version = await tree.undo(session, conversation)
            else:
                undone = await tree.get_version(session, conversation, version_id)
                version = await tree.undo_from(session, conversation, undone)
        return _version_reply(Key.UNDO_DONE, version)

    @replies_to_errors
    async def redo(self, actor: Actor) -> Reply:
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            version = await tree.redo(session, conversation)
        key = Key.REDO_DONE if version.instruction else Key.REDO_DONE_PHOTO
        return _version_reply(key, version)

    @replies_to_errors
    async def reset(self, actor: Actor) -> Reply:
        """Start over from the original photo of the current chain (as a new root)."""
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            if conversation.head_id is None:
                raise NoImageYet()
            path = await tree.path_to(session, conversation.head_id)
            original = path[0]
            assert original.image_sha is not None and original.width and original.height
            root = await tree.add_root(
                session, conversation, original.image_sha, (original.width, original.height)
            )
        return _version_reply(Key.RESET_DONE, root)

    @replies_to_errors
    async def history(self, actor: Actor) -> Reply:
        """The chain root -> head, with instructions and parameters, plus edits still pending."""
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            if conversation is None or conversation.head_id is None:
                return Reply(key=Key.HISTORY_EMPTY)
            path, pending = await tree.history_steps(session, conversation)
            siblings = await tree.siblings_on_path(
                session,
                {v.set_id for v in path if v.set_id is not None},
                {v.id for v in [*path, *pending]},
            )
        entries = tuple(
            HistoryEntry(
                version_id=v.id,
                instruction=v.instruction,
                params=v.params,
                status=v.status.value,
                is_head=v.id == conversation.head_id,
                score=v.score,
            )
            for v in [*path, *pending]
        ) + tuple(
            HistoryEntry(
                version_id=v.id,
                instruction=v.instruction,
                params=v.params,
                status=v.status.value,
                is_head=False,
                score=v.score,
                candidate=v.set_index,
            )
            for v in siblings
            if v.status.value == "done"
        )
        return Reply(
            key=Key.HISTORY_SHOW,
            args={"count": len(path)},
            version_id=conversation.head_id,
            kind=ReplyKind.HISTORY,
            history=entries,
        )

    # ----- settings ----------------------------------------------------------------------------

    @replies_to_errors
    async def settings(self, actor: Actor) -> Reply:
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            stored = conversation.settings if conversation else {}
        prefs = Preferences.load(stored, self.defaults)
        hidden = prefs.model in self.no_image_guidance
        key = Key.SETTINGS_SHOW_NO_IMAGE_GUIDANCE if hidden else Key.SETTINGS_SHOW
        return _settings_reply(key, prefs, hidden)

    @replies_to_errors
    async def update_setting(self, actor: Actor, name: str, value: Any) -> Reply:
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            prefs = Preferences.load(conversation.settings, self.defaults).with_value(name, value)
            check_model_choice(prefs.model, self.defaults.model, self.models)
            hidden = prefs.model in self.no_image_guidance
            if hidden and _field(name) == "image_guidance_scale":
                raise NoImageGuidance(model=prefs.model or "this bot's model")
            await tree.update_settings(session, conversation, _changed(prefs, self.defaults))
        return _settings_reply(Key.SETTINGS_UPDATED, prefs, hidden, name=name, value=value)

    @replies_to_errors
    async def reset_settings(self, actor: Actor) -> Reply:
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor)
            await tree.update_settings(session, conversation, {})
        prefs = Preferences.load({}, self.defaults)
        hidden = prefs.model in self.no_image_guidance
        return _settings_reply(Key.SETTINGS_RESET, prefs, hidden)

    @replies_to_errors
    async def model_choices(self, actor: Actor) -> Reply:
        """The model this user edits with and the ones they may pick (/model)."""
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            stored = conversation.settings if conversation else {}
        current = Preferences.load(stored, self.defaults).model
        if not self.models:
            raise ModelChoiceUnavailable(model=current or "the default")
        return Reply(
            key=Key.MODEL_LIST,
            args={"model": current, "models": ", ".join(self.models)},
            kind=ReplyKind.SETTINGS,
            settings=Preferences.load(stored, self.defaults).to_dict(),
        )

    # ----- queue -------------------------------------------------------------------------------

    @replies_to_errors
    async def cancel(self, actor: Actor) -> Reply:
        """Cancel the newest queued edit (and edits queued on top of it)."""
        async with self.database.write() as session:
            conversation = await started_conversation(session, actor)
            cancelled = await lifecycle.cancel_latest(session, conversation)
            if not cancelled:
                if await tree.pending(session, conversation):
                    raise EditAlreadyRunning()
                raise NothingToCancel()
            for _ in cancelled:
                await limits.refund(session, actor.platform, actor.user_id)
        self.queue.discard({v.id for v in cancelled})
        self.previews.drop(v.id for v in cancelled)
        return Reply(key=Key.CANCEL_DONE, args={"count": len(cancelled)})

    @replies_to_errors
    async def status(self, actor: Actor) -> Reply:
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor)
            pending = await tree.pending(session, conversation) if conversation else []
        if not pending:
            return Reply(key=Key.STATUS_IDLE)
        positions = [p for p in [await self.queue.position(v.id) for v in pending] if p is not None]
        if 0 in positions:
            return Reply(key=Key.STATUS_RUNNING, args={"count": len(pending)})
        return Reply(
            key=Key.STATUS_PENDING,
            args={"count": len(pending), "position": min(positions, default=1)},
            kind=ReplyKind.QUEUED,
            actions=(Action.CANCEL,),
        )

    # ----- privacy -----------------------------------------------------------------------------

    @replies_to_errors
    async def forget(self, actor: Actor) -> Reply:
        """Delete all of this user's versions and images on this platform (every chat)."""
        async with self.database.write() as session:
            conversations = await tree.conversations_of_user(session, actor.platform, actor.user_id)
            doomed = [v.id for c in conversations for v in await tree.pending(session, c)]
            unreferenced = await tree.forget(session, actor.platform, actor.user_id)
        if not conversations:
            return Reply(key=Key.FORGET_NOTHING)
        self.queue.discard(set(doomed))
        self.previews.drop(doomed)
        for sha in unreferenced:
            self.images.delete(sha)
        return Reply(key=Key.FORGET_DONE, args={"count": len(unreferenced)})


def check_model_choice(model: str, default: str, models: tuple[str, ...]) -> None:
    """A user may pick one of the configured models; with one model there is nothing to pick."""
    if model == default:
        return
    if not models:
        raise ModelChoiceUnavailable(model="the default")
    if model not in models:
        raise InvalidSetting(name="model", allowed=f"one of {', '.join(models)}")


def _version_reply(key: Key, version: Version) -> Reply:
    """The conversation moved to `version`: show it, with what can be done from there."""
    return Reply(
        key=key,
        args={"instruction": version.instruction or ""},
        version_id=version.id,
        kind=ReplyKind.VERSION,
        actions=(Action.UNDO, Action.REDO, Action.REGENERATE, Action.FULL_RESOLUTION)
        if version.parent_id
        else (Action.REDO,),
    )


def _field(name: str) -> str | None:
    return ALIASES.get(name.strip().lower().replace(" ", "_"))


def _settings_reply(
    key: Key, prefs: Preferences, hide_image_guidance: bool = False, **extra: Any
) -> Reply:
    """The settings; without image guidance where the user's model has none."""
    values = prefs.to_dict()
    if hide_image_guidance:
        values.pop("image_guidance_scale")
    seed_text = (
        Phrase(Key.SETTINGS_SEED_RANDOM)
        if prefs.seed_mode == "random"
        else Phrase(Key.SETTINGS_SEED_FIXED, {"seed": prefs.seed})
    )
    notes = (
        (Note(Key.SETTINGS_CANDIDATES, {"candidates": prefs.candidates}),)
        if prefs.candidates > 1
        else ()
    )
    return Reply(
        key=key,
        args={**prefs.to_dict(), "seed_text": seed_text, **extra},
        kind=ReplyKind.SETTINGS,
        settings=values,
        notes=notes,
    )


def _changed(prefs: Preferences, defaults: EditParams) -> dict[str, Any]:
    """Only what differs from the server defaults is stored, so new defaults reach old users."""
    base = Preferences.load({}, defaults).to_dict()
    return {k: v for k, v in prefs.to_dict().items() if base.get(k) != v}
