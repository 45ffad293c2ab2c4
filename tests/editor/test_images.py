"""Upload validation, fitting and encoding; every sample file is generated here with Pillow."""

from __future__ import annotations

import functools
import io
import random
import struct
import time
import zlib
from typing import Any

import pillow_heif
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from editor import images
from editor.errors import (
    ImageAspectUnsupported,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    UnsupportedImageFormat,
    UserError,
)
from editor.images import (
    ACCEPTED_FORMATS,
    ImageLimits,
    encode_png,
    encode_preview_jpeg,
    fit_to_resolution,
    fitted_size,
    image_size,
    load_image,
)

LIMITS = ImageLimits()
COLOUR = (200, 40, 60)
RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """Save with Pillow; HEIF goes through pillow_heif so the test never relies on the opener."""
    buffer = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(image).save(buffer, quality=95)
    else:
        image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Incompressible RGB, so truncation really cuts into pixel data."""
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, data)


def assert_close(actual: Any, expected: tuple[int, ...], tolerance: int) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        f"{actual} is not within {tolerance} of {expected}"
    )


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def bomb_png(side: int) -> bytes:
    """A real, fully decodable 1-bit PNG of side x side zeros: tens of KB on disk."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then packed pixels
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def sample(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A solid COLOUR image in an accepted format, checked to really be that format."""
    image = Image.new("RGB", size, COLOUR)
    if fmt == "MPO":
        data = encode(image, "MPO", save_all=True, append_images=[Image.new("RGB", size, BLUE)])
    else:
        data = encode(image, fmt)
    if fmt == "HEIF":
        images._register_heif_opener()
    with Image.open(io.BytesIO(data)) as check:
        assert check.format == fmt
    return data


def error_of(data: bytes, limits: ImageLimits = LIMITS) -> ImageError:
    with pytest.raises(ImageError) as caught:
        load_image(data, limits)
    return caught.value


# -- accepted formats -----------------------------------------------------------------------

LOSSY = {"JPEG", "MPO", "WEBP", "HEIF"}
FORMATS = ["JPEG", "PNG", "WEBP", "HEIF", "BMP", "TIFF", "GIF", "MPO"]


def test_every_accepted_format_is_tested() -> None:
    assert set(FORMATS) == ACCEPTED_FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_accepted_format_loads_as_plain_rgb(fmt: str) -> None:
    image = load_image(sample(fmt), LIMITS)

    assert type(image) is Image.Image  # detached from the file, no plugin subclass
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert image.info == {}
    assert_close(image.getpixel((32, 24)), COLOUR, 10 if fmt in LOSSY else 0)


def test_exif_orientation_6_turns_the_photo_upright() -> None:
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 60, 20))  # top half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": stored top becomes the right side
    image = load_image(encode(stored, "JPEG", exif=exif, quality=95), LIMITS)

    assert image.size == (40, 60)
    assert_close(image.getpixel((35, 30)), RED, 12)
    assert_close(image.getpixel((5, 30)), BLUE, 12)


def test_exif_metadata_is_dropped() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    data = encode(Image.new("RGB", (32, 32), COLOUR), "JPEG", exif=exif)
    assert b"PhoneMaker" in data

    assert "exif" not in load_image(data, LIMITS).info
    assert b"PhoneMaker" not in encode_png(load_image(data, LIMITS))


# -- modes and transparency -----------------------------------------------------------------


def test_rgba_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (48, 32), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (24, 0, 48, 16))
    rgba.paste((0, 0, 0, 128), (24, 16, 48, 32))
    image = load_image(encode(rgba, "PNG"), LIMITS)

    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == WHITE
    assert image.getpixel((30, 5)) == RED
    assert_close(image.getpixel((30, 20)), (127, 127, 127), 1)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_on_white(fmt: str) -> None:
    palette_image = Image.new("P", (32, 32), 0)
    palette_image.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    palette_image.paste(1, (16, 0, 32, 32))
    image = load_image(encode(palette_image, fmt, transparency=0), LIMITS)

    assert image.getpixel((4, 4)) == WHITE  # index 0 is black but transparent
    assert image.getpixel((20, 4)) == (0, 255, 0)


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected", "tolerance"),
    [
        ("CMYK", (0, 255, 255, 0), "JPEG", RED, 12),
        ("CMYK", (0, 0, 0, 0), "TIFF", WHITE, 0),
        ("L", 100, "PNG", (100, 100, 100), 0),
        ("1", 1, "PNG", WHITE, 0),
        ("LA", (100, 0), "PNG", WHITE, 0),
        ("LA", (100, 255), "PNG", (100, 100, 100), 0),
        ("I;16", 0x8000, "PNG", (128, 128, 128), 0),  # Pillow's own convert would clip to 255
        ("I;16", 0x00FF, "TIFF", (0, 0, 0), 0),  # 16-bit data: 255/65535 is near black
        ("I", 40_000, "TIFF", (156, 156, 156), 0),
        ("I", 100, "TIFF", (100, 100, 100), 0),
        ("F", 100.0, "TIFF", (100, 100, 100), 0),
    ],
)
def test_any_mode_becomes_rgb(
    mode: str, value: Any, fmt: str, expected: tuple[int, int, int], tolerance: int
) -> None:
    data = encode(Image.new(mode, (32, 32), value), fmt)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == mode

    image = load_image(data, LIMITS)

    assert image.mode == "RGB"
    assert_close(image.getpixel((16, 16)), expected, tolerance)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF"])
def test_animated_or_multipage_uses_the_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2

    assert_close(load_image(data, LIMITS).getpixel((16, 16)), RED, 2)


# -- refused uploads --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_unreadable(fmt: str) -> None:
    data = encode(noise((64, 64)), fmt)

    assert type(error_of(data[: len(data) // 2])) is ImageError


def test_corrupt_png_checksum_is_unreadable() -> None:
    data = bytearray(encode(noise((64, 64)), "PNG"))
    data[data.index(b"IDAT") + 100] ^= 0xFF

    assert type(error_of(bytes(data))) is ImageError


@pytest.mark.parametrize(
    "data",
    [
        random.Random(1).randbytes(4096),
        b"Please make the sky purple.\n" * 10,
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b'<rect width="64" height="64" fill="red"/></svg>\n',
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    ],
    ids=["random", "text", "svg", "pdf"],
)
def test_non_images_are_an_unsupported_format(data: bytes) -> None:
    assert isinstance(error_of(data), UnsupportedImageFormat)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA"])
def test_readable_but_unaccepted_format_is_named(fmt: str) -> None:
    error = error_of(encode(Image.new("RGB", (32, 32), COLOUR), fmt))

    assert isinstance(error, UnsupportedImageFormat)
    assert error.args_for_message == {"format": fmt}


def test_empty_upload_is_unreadable() -> None:
    assert type(error_of(b"")) is ImageError


def test_too_many_bytes_is_refused_before_any_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_open(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Image.open called on an oversized upload")

    data = sample("PNG")
    monkeypatch.setattr(Image, "open", must_not_open)
    limits = ImageLimits(max_bytes=len(data) - 1)

    error = error_of(data, limits)

    assert isinstance(error, ImageTooLarge)
    assert error_of(b"x" * (LIMITS.max_bytes + 1)).args_for_message == {"max_mb": 20}


def test_exactly_max_bytes_is_accepted() -> None:
    data = sample("PNG")

    assert load_image(data, ImageLimits(max_bytes=len(data))).size == (64, 48)


@pytest.mark.parametrize(
    "side",
    [
        20_000,  # 400 MP: past Pillow's own DecompressionBombError threshold
        10_000,  # 100 MP: Pillow only warns; our own check must refuse
        7_000,  # 49 MP: Pillow is silent; only our 40 MP limit stands in the way
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_without_decoding(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bomb_png(side)
    assert len(data) < 100_000
    loads: list[object] = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self))
    assert "load" not in vars(PngImagePlugin.PngImageFile)  # the patch does reach PNGs

    started = time.perf_counter()
    error = error_of(data)

    assert isinstance(error, ImageTooLarge)
    assert error.args_for_message == {"max_megapixels": 40}
    assert loads == []
    assert time.perf_counter() - started < 0.5


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_raised_as_error_is_still_too_large() -> None:
    assert isinstance(error_of(bomb_png(10_000)), ImageTooLarge)


def test_pixel_limit_is_inclusive() -> None:
    data = sample("PNG")

    assert load_image(data, ImageLimits(max_pixels=64 * 48)).size == (64, 48)
    assert isinstance(error_of(data, ImageLimits(max_pixels=64 * 48 - 1)), ImageTooLarge)


def test_tiny_image_is_too_small() -> None:
    error = error_of(sample("PNG", (8, 8)))

    assert isinstance(error, ImageTooSmall)
    assert error.args_for_message == {"min_side": 16}
    assert load_image(sample("PNG", (16, 16)), LIMITS).size == (16, 16)


@pytest.mark.parametrize("size", [(1000, 50), (50, 1000), (513, 64)])
def test_extreme_aspect_is_refused(size: tuple[int, int]) -> None:
    error = error_of(sample("PNG", size))

    assert isinstance(error, ImageAspectUnsupported)
    assert error.key == "error.image_aspect"
    assert error.args_for_message == {"max_ratio": 8}


def test_aspect_of_exactly_eight_is_accepted() -> None:
    assert load_image(sample("PNG", (512, 64)), LIMITS).size == (512, 64)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF"])
def test_damaged_files_only_ever_raise_user_errors(fmt: str) -> None:
    """Flip bytes all over valid files: a result or an ImageError, never a raw Pillow error."""
    original = sample(fmt)
    rng = random.Random(fmt)
    for _ in range(25):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            image = load_image(bytes(damaged), LIMITS)
        except UserError as error:
            assert isinstance(error, ImageError)
        else:
            assert image.mode == "RGB"


# -- fitting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "long_side", "expected"),
    [
        ((640, 480), 512, (512, 384)),
        ((333, 777), 512, (216, 512)),
        ((4000, 3000), 768, (768, 576)),
        ((100, 100), 512, (512, 512)),
        ((1920, 1080), 640, (640, 360)),
        ((512, 64), 512, (512, 64)),
        ((64, 512), 256, (64, 256)),  # 8:1 at 256 would be 32 wide: held at 64
        ((640, 480), 500, (496, 376)),  # long side rounded down to a multiple of 8
    ],
)
def test_fit_to_resolution(
    size: tuple[int, int], long_side: int, expected: tuple[int, int]
) -> None:
    image = Image.new("RGB", size, COLOUR)

    fitted = fit_to_resolution(image, long_side)

    assert fitted.size == expected
    assert fitted is not image
    assert image.size == size  # the input is untouched
    assert all(side % 8 == 0 and side >= 64 for side in fitted.size)
    assert max(fitted.size) == long_side // 8 * 8
    long, short = max(size), min(size)
    exact_short = max(fitted.size) * short / long
    assert abs(min(fitted.size) - exact_short) <= 4 or min(fitted.size) == 64
    assert fitted.getpixel((10, 10)) == COLOUR


@pytest.mark.parametrize("seed", range(20))
def test_fitted_size_keeps_aspect_within_rounding(seed: int) -> None:
    rng = random.Random(seed)
    short = rng.randint(16, 4000)
    size = (short * rng.randint(100, 800) // 100, short)  # ratio 1..8
    for long_side in (256, 384, 512, 640, 768):
        width, height = fitted_size(size, long_side)
        assert width == long_side
        assert height % 8 == 0
        assert height >= 64
        assert abs(height - long_side * size[1] / size[0]) <= 4 or height == 64


def test_fit_to_matching_size_returns_a_copy() -> None:
    image = noise((512, 384))

    fitted = fit_to_resolution(image, 512)

    assert fitted is not image
    assert fitted.tobytes() == image.tobytes()


def test_fit_refuses_a_long_side_under_64() -> None:
    with pytest.raises(ValueError):
        fit_to_resolution(Image.new("RGB", (100, 100)), 32)


# -- encoding ---------------------------------------------------------------------------------


def test_encode_png_is_lossless() -> None:
    image = noise((96, 64), seed=7)

    data = encode_png(image)

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "RGB"
        assert decoded.tobytes() == image.tobytes()


def test_encode_preview_jpeg() -> None:
    data = encode_preview_jpeg(Image.new("RGB", (96, 64), COLOUR))

    assert data.startswith(b"\xff\xd8")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.size == (96, 64)
        assert_close(decoded.getpixel((48, 32)), COLOUR, 6)


def test_encode_preview_jpeg_flattens_alpha_on_white() -> None:
    data = encode_preview_jpeg(Image.new("RGBA", (32, 32), (0, 0, 0, 0)))

    with Image.open(io.BytesIO(data)) as decoded:
        assert_close(decoded.getpixel((16, 16)), WHITE, 2)


def test_encode_preview_jpeg_quality_changes_size_and_is_checked() -> None:
    image = noise((64, 64))

    assert len(encode_preview_jpeg(image, quality=30)) < len(encode_preview_jpeg(image))
    with pytest.raises(ValueError):
        encode_preview_jpeg(image, quality=0)


@pytest.mark.parametrize(
    ("fmt", "header_end"),
    [("PNG", lambda data: data.index(b"IDAT") + 4), ("JPEG", lambda data: data.index(b"\xff\xda"))],
)
def test_image_size_reads_the_header_only(fmt: str, header_end: Any) -> None:
    data = encode_png(noise((120, 80))) if fmt == "PNG" else encode_preview_jpeg(noise((120, 80)))

    assert image_size(data) == (120, 80)
    assert image_size(data[: header_end(data)]) == (120, 80)  # no pixel data at all


def test_image_size_of_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        image_size(b"not an image")
