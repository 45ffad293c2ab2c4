"""Platform-neutral replies: a catalogue key plus arguments, a kind frontends decide by, and
what a frontend may offer next."""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from bot.service.messages import Key, Phrase, render
from editor.errors import ImageTooLarge, UserError
from storage.database import Outage, brief, outage
from storage.errors import QuotaExceeded, RateLimited
from storage.types import Actor

P = ParamSpec("P")
log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """Buttons or commands a frontend may offer under a reply."""

    UNDO = "undo"
    REDO = "redo"
    REGENERATE = "regenerate"
    FULL_RESOLUTION = "full"
    CANCEL = "cancel"
    FORGET_CONFIRM = "forget_confirm"
    UPSCALE = "upscale"
    VARIATIONS = "variations"
    STRONGER = "stronger"
    SUBTLER = "subtler"
    USE = "use"
    """Pick one candidate of a set ("Use 3"); its button names that candidate's version."""


BUTTON_LABELS: Mapping[Action, Key] = {
    Action.UNDO: Key.BUTTON_UNDO,
    Action.REDO: Key.BUTTON_REDO,
    Action.REGENERATE: Key.BUTTON_REGENERATE,
    Action.FULL_RESOLUTION: Key.BUTTON_FULL,
    Action.CANCEL: Key.BUTTON_CANCEL,
    Action.FORGET_CONFIRM: Key.BUTTON_FORGET_CONFIRM,
    Action.UPSCALE: Key.BUTTON_UPSCALE,
    Action.VARIATIONS: Key.BUTTON_VARIATIONS,
    Action.STRONGER: Key.BUTTON_STRONGER,
    Action.SUBTLER: Key.BUTTON_SUBTLER,
    Action.USE: Key.BUTTON_USE,
}
"""The catalogue key of each action's button label."""


def label_key(action: str) -> Key:
    """The catalogue key of a button's label; an unknown action gets the generic text."""
    try:
        return BUTTON_LABELS[Action(action)]
    except ValueError:
        return Key.ERROR_GENERIC


class ReplyKind(enum.StrEnum):
    """What a reply is, so frontends choose how to show it without reading catalogue keys."""

    INFO = "info"
    """A plain answer in words (photo received, cancelled, status, duplicate update...)."""
    QUEUED = "queued"
    """Edits wait in line: just queued (`version_id` names it) or reported by status."""
    PROGRESS = "progress"
    """A running edit's step count; frontends update its status line."""
    PREVIEW = "preview"
    """A running edit has a new preview picture; chat platforms ignore it."""
    RESULT = "result"
    """A finished edit: its picture with its instruction and seed."""
    VERSION = "version"
    """The conversation moved to another version (undo, redo, reset): its picture."""
    HISTORY = "history"
    """The chain root -> head (`history`)."""
    SETTINGS = "settings"
    """The current settings (`settings`)."""
    REGION = "region"
    """A region was set (`/keep`, `/only`): `picture` previews its mask over the photo."""
    FAILED = "failed"
    """A queued edit failed or was skipped; the conversation stays usable."""
    VARIATIONS = "variations"
    """A finished set of variations: `candidates` to show together, each with a Use button."""
    ERROR = "error"
    """A refusal: nothing changed."""
    BATCH_STATUS = "batch_status"
    """A recipe batch's one status line ("7 of 12 photos done"): sent once, then edited in
    place; `args["run"]` names the batch."""
    BATCH_RESULT = "batch_result"
    """A recipe batch finished: `versions` are its results (grouped: albums, attachments, a
    grid) and `ConversationService.batch_zip` their full-resolution PNGs."""
    DOCUMENT = "document"
    """A file to send (`attachment`), e.g. an exported recipe."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of the path root -> head."""

    version_id: int
    instruction: str | None
    params: Mapping[str, Any] | None
    status: str
    is_head: bool
    score: float | None = None
    candidate: int | None = None
    """Set for the other candidates of a set on the path (siblings, reachable by branching):
    the candidate's number in its set."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One picture of a set of variations: its version, its number (1..N) and what it shows."""

    version_id: int
    number: int
    seed: int | None
    score: float | None = None
    done: bool = True


@dataclass(frozen=True, slots=True)
class Note:
    """A catalogue line added under a reply's own text (how an upload was kept, ...)."""

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a reply carries (an exported recipe)."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """What the service answers; frontends render `text()` and the image of `version_id`.

    Attributes:
        key: message-catalogue key; `args` fill it.
        kind: what the reply is; frontends branch on this, never on `key`.
        version_id: the version the reply is about (its image, its buttons' target).
        actions: what to offer next (buttons).
        history: for history replies, the path root -> head.
        settings: for settings replies, the current values.
        notes: lines `text()` adds after the reply's own (every frontend shows them).
        locale: the language this reply must be read in, whatever the event's (a reply to
            `/language es` is already in Spanish); None: the event's.
        picture: a JPEG the reply carries itself (a region's mask preview), not a version's.
        document: send the lossless file rather than a chat photo (a cut-out's transparency).
        candidates: for variations replies, the pictures to show together (pick buttons).
        versions: for batch results, the result of each photo, in order.
        attachment: for documents, the file.
    """

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)
    version_id: int | None = None
    kind: ReplyKind = ReplyKind.INFO
    actions: tuple[Action, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    settings: Mapping[str, Any] | None = None
    notes: tuple[Note, ...] = ()
    locale: str | None = None
    picture: bytes | None = None
    document: bool = False
    candidates: tuple[Candidate, ...] = ()
    versions: tuple[int, ...] = ()
    attachment: Attachment | None = None

    @property
    def show_image(self) -> bool:
        """Whether the frontend should show the picture of `version_id`."""
        return self.kind in (ReplyKind.RESULT, ReplyKind.VERSION)

    @property
    def is_error(self) -> bool:
        """A refusal or failure; the conversation stays usable."""
        return self.kind in (ReplyKind.ERROR, ReplyKind.FAILED)

    def text(self, locale: str | None = None) -> str:
        """The reply in `locale` (default: its own, else the locale of the event handled)."""
        locale = locale or self.locale
        lines = [render(self.key, self.args, locale)]
        lines += [render(note.key, note.args, locale) for note in self.notes]
        return "\n".join(lines)


UpdateListener = Callable[[Actor, Reply], Awaitable[None]]
"""Receives progress, results and failures for chats of one platform."""


def wait_phrase(seconds: float) -> Phrase:
    """A short duration, worded in the reader's language: "20 seconds", "3 minutes", "5 hours"."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return Phrase(Key.WAIT_SECONDS, {"count": seconds})
    minutes = round(seconds / 60)
    if minutes < 90:
        return Phrase(Key.WAIT_MINUTES, {"count": minutes})
    return Phrase(Key.WAIT_HOURS, {"count": round(minutes / 60)})


def error_reply(error: UserError) -> Reply:
    """The refusal a user error deserves, its arguments made readable (waits, limits)."""
    args = dict(error.args_for_message)
    if isinstance(error, RateLimited | QuotaExceeded):
        args["wait"] = wait_phrase(args.get("retry_after_s") or args.get("resets_in_s") or 1)
    if isinstance(error, ImageTooLarge):
        if "max_mb" in args:
            args["limit"] = f"{args['max_mb']} MB"
        elif "max_megapixels" in args:
            args["limit"] = f"{args['max_megapixels']} megapixels"
    return Reply(key=error.key, args=args, kind=ReplyKind.ERROR)


OUTAGE_KEYS: Mapping[Outage, Key] = {
    Outage.UNAVAILABLE: Key.ERROR_UNAVAILABLE,
    Outage.FULL: Key.ERROR_STORAGE_FULL,
}


def replies_to_errors(
    method: Callable[P, Awaitable[Reply]],
) -> Callable[P, Awaitable[Reply]]:
    """User errors become friendly error replies, so frontends never see a traceback.

    So does a passing storage outage (PostgreSQL restarting, SQLite locked, a full disk): its
    transaction was rolled back whole, so nothing is half-written, and the user may simply
    try again. Any other error is a bug and propagates.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Reply:
        try:
            return await method(*args, **kwargs)
        except UserError as error:
            return error_reply(error)
        except Exception as error:
            kind = outage(error)
            if kind is None:
                raise
            log.warning("%s: storage %s (%s)", method.__qualname__, kind, brief(error))
            return Reply(key=OUTAGE_KEYS[kind], kind=ReplyKind.ERROR)

    return wrapper
