"""User-facing problems.

Each subclass names a message-catalogue key; its arguments fill the message. Frontends never
show a traceback: the conversation service turns these into replies.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Something the user can fix or wait out."""

    key: str = "error.generic"

    def __init__(self, **args: Any) -> None:
        super().__init__(self.__doc__ or self.key)
        self.args_for_message: dict[str, Any] = args


class ImageError(UserError):
    """The file could not be used as a photo."""

    key = "error.image_unreadable"


class UnsupportedImageFormat(ImageError):
    """The file is not an image format pix2chat accepts."""

    key = "error.image_format"


class ImageTooLarge(ImageError):
    """The file or its pixel count is over the limit (also catches decompression bombs)."""

    key = "error.image_too_large"


class ImageTooSmall(ImageError):
    """The image is too small to edit."""

    key = "error.image_too_small"


class NoImageYet(UserError):
    """An instruction arrived before any photo."""

    key = "error.no_image"


class EmptyInstruction(UserError):
    """The instruction has no words."""

    key = "error.empty_instruction"


class InstructionTooLong(UserError):
    """The instruction is longer than the text encoder reads."""

    key = "error.instruction_too_long"


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


class EditFailed(UserError):
    """The model failed on this edit (out of memory, bad numerics...)."""

    key = "error.edit_failed"


class ImageAspectUnsupported(ImageError):
    """The photo is too long and thin: fitted to the model, its short side would be unusable."""

    key = "error.image_aspect"
