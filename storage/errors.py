"""Problems with a conversation that the user can fix or wait out: its history, its limits,
its settings and the shared queue. Image and instruction problems live in editor/errors.py;
all share `UserError`, so frontends turn any of them into a catalogue message."""

from __future__ import annotations

from editor.errors import UserError


class NoImageYet(UserError):
    """An instruction arrived before any photo."""

    key = "error.no_image"


class NothingToUndo(UserError):
    """The head is a root: there is nothing before it."""

    key = "error.nothing_to_undo"


class NothingToRedo(UserError):
    """The head has no child to go back down to."""

    key = "error.nothing_to_redo"


class NothingToRegenerate(UserError):
    """The head is an uploaded photo, not the result of an instruction."""

    key = "error.nothing_to_regenerate"


class NothingToCancel(UserError):
    """There is no queued edit to cancel."""

    key = "error.nothing_to_cancel"


class EditAlreadyRunning(NothingToCancel):
    """The only pending edit is already running; it cannot be stopped."""

    key = "error.nothing_to_cancel_running"


class VersionNotFound(UserError):
    """The version does not exist or belongs to someone else (indistinguishable on purpose)."""

    key = "error.version_not_found"


class VersionNotReady(UserError):
    """The version has no image yet (queued, running, failed or cancelled)."""

    key = "error.version_not_ready"


class InvalidSetting(UserError):
    """A setting name or value is out of range."""

    key = "error.invalid_setting"


class RateLimited(UserError):
    """Too many edits in a short time; retry_after_s says when the next one is allowed."""

    key = "error.rate_limited"


class QuotaExceeded(UserError):
    """The daily edit quota is used up; resets_in_s says when it refills."""

    key = "error.quota_exceeded"


class TooManyPending(UserError):
    """The user already has the maximum number of edits waiting."""

    key = "error.too_many_pending"


class QueueFull(UserError):
    """The shared queue is full; everyone has to wait a little."""

    key = "error.queue_full"


# ----- choice in every turn: variations, stronger / subtler, best-of-N --------------------------


class QuotaTooSmall(QuotaExceeded):
    """What was asked costs more edits (`cost`) than are `left` today."""

    key = "error.quota_too_small"


class SetNotCurrent(UserError):
    """A pick on a candidate set that was undone, reset or replaced meanwhile."""

    key = "error.set_not_current"


class NotACandidate(UserError):
    """A pick names a version that is not one of a set's candidates."""

    key = "error.not_a_candidate"


class AtStrongest(UserError):
    """Stronger asked when both guidance scales are already at their strongest."""

    key = "error.at_strongest"


class AtSubtlest(UserError):
    """Subtler asked when both guidance scales are already at their subtlest."""

    key = "error.at_subtlest"


class NothingToVary(UserError):
    """Variations, Stronger or Subtler on a finishing result (an upscale or a cut-out): it has
    no instruction to run again."""

    key = "error.nothing_to_vary"
