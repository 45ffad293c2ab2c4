"""Why a finishing operation could not run; each names the catalogue message its user gets.

The model layer knows nothing of settings: the catalogue texts of these keys name the setting
that chose the model (bot/service/messages.py) and the extra to install.
"""

from __future__ import annotations

from editor.errors import UserError

EXTRA = "finishing"
"""The optional dependency group that holds spandrel, rembg, c2pa-python and the watermark."""


class FinishingNotInstalled(UserError):
    """spandrel, rembg or c2pa-python is missing: the finishing extra is not installed."""

    key = "error.finishing_not_installed"


class UpscalerUnavailable(UserError):
    """The upscaler weights are missing, unreadable or not an image super-resolution model."""

    key = "error.upscaler_unavailable"


class MattingUnavailable(UserError):
    """The matting model is missing, unreadable or cannot be fetched."""

    key = "error.matting_unavailable"


class NoSubjectFound(UserError):
    """The matting mask is empty: nothing stands out from the background."""

    key = "error.no_subject"


class UpscaleAtCap(UserError):
    """The image is already at the stored-pixel cap: upscaling cannot add pixels."""

    key = "error.upscale_at_cap"
