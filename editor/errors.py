"""Problems the model layer reports.

User-facing ones derive from `UserError`: each subclass names a message-catalogue key; its
arguments fill the message. Frontends never show a traceback: the conversation service turns
these into replies. Operator-facing ones (`ModelLoadError`, `OptionError`) say what to fix in
the editor's arguments.
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


class EmptyInstruction(UserError):
    """The instruction has no words."""

    key = "error.empty_instruction"


class InstructionTooLong(UserError):
    """The instruction is longer than the text encoder reads."""

    key = "error.instruction_too_long"


class EditFailed(UserError):
    """The model failed on this edit (out of memory, bad numerics...)."""

    key = "error.edit_failed"


class ImageAspectUnsupported(ImageError):
    """The photo is too long and thin: fitted to the model, its short side would be unusable."""

    key = "error.image_aspect"


# -- Operator-facing: the model or its options cannot be used ---------------------------------


class ModelLoadError(Exception):
    """The model could not be loaded (wrong id/path, offline, missing files).

    The message names the thing (the model folder, the LoRA adapter, the device); `option`
    names the editor argument that chose it ("model", "lora", "device", "preview_model",
    "compile"...) with its `value`, and `suggestion` a value that avoids the problem, if one
    does. The model layer knows nothing of where its arguments come from: a caller that does
    (the bot's settings) adds that hint.
    """

    def __init__(
        self,
        message: str,
        *,
        option: str | None = None,
        value: object = None,
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message)
        self.option = option
        self.value = value
        self.suggestion = suggestion


class OptionError(ValueError):
    """Editor options that cannot be used together; `option`, `value`, `suggestion` as above."""

    def __init__(
        self, message: str, *, option: str, value: object = None, suggestion: str | None = None
    ) -> None:
        super().__init__(message)
        self.option = option
        self.value = value
        self.suggestion = suggestion
