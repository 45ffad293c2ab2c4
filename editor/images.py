"""Image preparation shared by every frontend: validate uploads, fit them to the model, encode.

Uploads are hostile input: every check that can run before decoding does, and no raw Pillow
exception leaves `load_image` (each becomes an `ImageError` subclass the frontend can explain).
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from typing import cast

from PIL import Image, ImageFile, ImageOps

from editor.errors import (
    ImageAspectUnsupported,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    UnsupportedImageFormat,
)

logger = logging.getLogger(__name__)

ACCEPTED_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "PNG", "WEBP", "HEIF", "BMP", "TIFF", "GIF", "MPO"}
)
"""Pillow format names we decode; MPO is what iPhones and cameras call multi-picture JPEGs."""

MIN_FITTED_SIDE = 64
"""Smallest side `fit_to_resolution` returns: below it InstructPix2Pix output is mush."""

MAX_ASPECT_RATIO = 8
"""Long side over short side; at 512 px a longer ratio leaves a short side under 64 px."""

_WHITE = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an upload may cost us before and after decoding.

    Attributes:
        max_bytes: largest encoded upload; checked before anything is parsed.
        max_pixels: largest width * height; checked from the header, before decoding.
        min_side: smallest width or height worth editing.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16


def load_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Validate and decode an upload into a plain RGB image.

    The result is the first frame, upright (EXIF orientation applied), transparency flattened
    onto white, with no metadata left (EXIF, GPS and ICC are dropped).

    Raises:
        ImageError: empty, truncated or corrupt data (subclasses below say more).
        ImageTooLarge: too many bytes or pixels, including decompression bombs.
        UnsupportedImageFormat: not an image, or a format outside `ACCEPTED_FORMATS`.
        ImageTooSmall: a side under `limits.min_side`.
        ImageAspectUnsupported: long side more than `MAX_ASPECT_RATIO` times the short one.
    """
    _check_byte_size(data, limits)
    _register_heif_opener()
    with _open_header(data, limits) as source:
        _check_format(source)
        _check_dimensions(source.size, limits)
        image = _decode_first_frame(source, limits)
    _check_aspect(image.size)
    image.info.clear()
    return image


def fitted_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Size `fit_to_resolution` gives, so batches can be grouped without resizing anything.

    The long side becomes `long_side` rounded down to a multiple of 8 (never more pixels than
    asked for); the short side is the nearest multiple of 8 to the exact ratio, at least
    `MIN_FITTED_SIDE`.
    """
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    if long_side < MIN_FITTED_SIDE:
        raise ValueError(f"long_side must be at least {MIN_FITTED_SIDE}, got {long_side}")
    target = long_side // 8 * 8
    long, short = max(width, height), min(width, height)
    # Exact integer round-half-up of target * short / long to a multiple of 8.
    fitted_short = (target * short + 4 * long) // (8 * long) * 8
    fitted_short = min(target, max(MIN_FITTED_SIDE, fitted_short))
    return (target, fitted_short) if width >= height else (fitted_short, target)


def fit_to_resolution(image: Image.Image, long_side: int) -> Image.Image:
    """Scale so the long side equals long_side (up or down), both sides multiples of 8.

    The UNet works on 1/8-size latents, so both sides must divide by 8; the aspect is kept as
    close as that rounding allows. Assumes `load_image` already refused extreme aspects.
    Always returns a new image.
    """
    size = fitted_size(image.size, long_side)
    if size == image.size:
        return image.copy()
    # reducing_gap pre-shrinks huge photos cheaply; the LANCZOS pass keeps the quality.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_png(image: Image.Image) -> bytes:
    """Lossless encoding for storage; low compression because encode time is on the reply path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def encode_preview_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """What chat shows: small and universally displayable (alpha, if any, flattened on white)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    rgb = image if image.mode == "RGB" else _to_rgb(image)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a stored PNG or JPEG, from its header alone (no pixel decoding).

    Raises:
        ValueError: the data is not a readable PNG or JPEG header.
    """
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            return image.size
    except (OSError, SyntaxError) as exc:
        raise ValueError("not a PNG or JPEG image") from exc


@functools.cache
def _register_heif_opener() -> None:
    """Teach Pillow HEIC/HEIF once, on first use, so importing this module stays side-effect free."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def _check_byte_size(data: bytes, limits: ImageLimits) -> None:
    """Refuse by length alone, before any parser sees the bytes."""
    if not data:
        raise ImageError()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(max_mb=_tidy(limits.max_bytes / (1024 * 1024)))


def _open_header(data: bytes, limits: ImageLimits) -> ImageFile.ImageFile:
    """Parse only the header: format and size are known, no pixels are decoded yet."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError as exc:
        raise UnsupportedImageFormat() from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(limits) from exc
    except Exception as exc:  # a recognised format with a broken header; plugins raise anything
        raise ImageError() from exc


def _check_format(source: ImageFile.ImageFile) -> None:
    """Refuse formats Pillow can read but we do not promise to (PPM, ICO, TGA, AVIF...)."""
    if source.format not in ACCEPTED_FORMATS:
        raise UnsupportedImageFormat(format=source.format)


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    """Refuse by header size, so a small file claiming a huge canvas is never decoded."""
    width, height = size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(limits)
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(min_side=limits.min_side)


def _check_aspect(size: tuple[int, int]) -> None:
    """Refuse strips whose fitted short side would fall under `MIN_FITTED_SIDE`."""
    if max(size) > MAX_ASPECT_RATIO * min(size):
        raise ImageAspectUnsupported(max_ratio=MAX_ASPECT_RATIO)


def _decode_first_frame(source: ImageFile.ImageFile, limits: ImageLimits) -> Image.Image:
    """Decode the current (first) frame, turn it upright and make it RGB."""
    try:
        source.load()
        return _to_rgb(_upright(source))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(limits) from exc
    except Exception as exc:  # truncated or corrupt data; Pillow plugins raise a zoo of types
        raise ImageError() from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a photo with unreadable EXIF is still worth editing as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        logger.warning("ignoring unreadable EXIF orientation", exc_info=True)
        return image.copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparency (alpha band or palette/colour key) composited on white."""
    if image.mode.startswith(("I", "F")):
        image = _to_8bit_grey(image)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flattened = Image.new("RGB", rgba.size, _WHITE)
        flattened.paste(rgba, mask=rgba.getchannel("A"))
        return flattened
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float grey to 0..255 (Pillow's own conversion just clips).

    I;16 data keeps its high byte; other data already within 0..255 keeps its values, within
    0..65535 is read as 16-bit, and anything else (negative, huge) is stretched from its range.
    """
    sixteen_bit = image.mode.startswith("I;16")
    if image.mode != "F":
        image = image.convert("I")
    low, high = cast("tuple[float, float]", image.getextrema())  # one band: (min, max)
    if low >= 0 and high <= 255 and not sixteen_bit:
        scale, offset = 1.0, 0.0
    elif low >= 0 and high <= 65535:
        scale, offset = 1 / 256, 0.0
    else:
        scale = 255 / max(high - low, 1)
        offset = -low * scale
    grey = image.point(lambda value: value * scale + offset).convert("L")
    # A colour key in 16-bit units means nothing after scaling; drop it rather than misapply it.
    grey.info.pop("transparency", None)
    return grey


def _too_many_pixels(limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(max_megapixels=_tidy(limits.max_pixels / 1_000_000))


def _tidy(value: float) -> int | float:
    """A limit as people read it: 20, not 20.0; 0.5, not 0.476837158203125."""
    return int(value) if value == int(value) else round(value, 1)
