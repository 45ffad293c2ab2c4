"""Pictures in and out: uploads stored losslessly at their own size (up to a cap), versions
served to their owner only (a lossless PNG, or a chat copy small enough for every chat), and
the latest progress preview of each running edit."""

from __future__ import annotations

import asyncio
import io
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from bot.service.lookup import started_conversation
from bot.service.stamping import Stamper
from bot.work.jobs import JobPreview
from editor.images import ImageLimits, encode_png, encode_preview_jpeg, load_image
from storage import tree
from storage.database import Database
from storage.errors import VersionNotReady
from storage.images import ImageStore
from storage.types import Actor

DEFAULT_MAX_STORED_PIXELS = 24_000_000
"""Uploads are kept losslessly at their own size up to this many pixels (PIX2CHAT_MAX_STORED_PIXELS);
edits are developed onto them at that size, so it bounds every later decode and PNG too."""
CHAT_LONG_SIDE = 2560
"""Long side of the chat copy: under Telegram's photo limits (width + height <= 10,000,
10 MB), small enough for Discord and the web page; Full resolution sends the stored PNG."""
MAX_PREVIEWS = 256
"""Running edits whose latest preview is kept in memory (a few tens of kB each)."""


class Previews:
    """The latest preview of each running edit, bounded (oldest dropped first).

    The relay keeps them as job events arrive and drops them with the result; commands drop
    them when edits are cancelled or forgotten; `Media.preview` serves them.
    """

    def __init__(self, limit: int = MAX_PREVIEWS) -> None:
        self.limit = limit
        self._latest: dict[int, JobPreview] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, version_id: int) -> JobPreview | None:
        return self._latest.get(version_id)

    def keep(self, event: JobPreview) -> None:
        self._latest.pop(event.version_id, None)
        self._latest[event.version_id] = event
        while len(self._latest) > self.limit:
            del self._latest[next(iter(self._latest))]

    def drop(self, version_ids: Iterable[int]) -> None:
        for version_id in version_ids:
            self._latest.pop(version_id, None)


@dataclass(frozen=True, slots=True)
class StoredUpload:
    """An upload as stored: its digest and size, and its own size if it had to be downscaled."""

    sha: str
    size: tuple[int, int]
    original_size: tuple[int, int] | None = None

    @property
    def downscaled(self) -> bool:
        return self.original_size is not None


MAX_THUMBNAILS = 512
"""Thumbnails kept in memory (a few KiB each)."""


class Media:
    """Stores uploads and serves version pictures, with the ownership checks of the service."""

    def __init__(
        self,
        database: Database,
        images: ImageStore,
        limits: ImageLimits,
        previews: Previews,
        max_stored_pixels: int = DEFAULT_MAX_STORED_PIXELS,
        stamper: Stamper | None = None,
    ) -> None:
        self.database = database
        self.stamper = stamper
        self.images = images
        self.limits = limits
        self.previews = previews
        self.max_stored_pixels = max_stored_pixels
        self._thumbnails: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def store_upload(self, data: bytes) -> StoredUpload:
        """Validate, normalise and store an upload losslessly (runs in a worker thread).

        Kept at its own size; above `max_stored_pixels` it is downscaled once, aspect kept.
        """
        image = load_image(data, self.limits)
        original = image.size
        size = stored_size(original, self.max_stored_pixels)
        if size == original:
            return StoredUpload(self.images.put(encode_png(image)), size)
        # reducing_gap pre-shrinks cheaply; the LANCZOS pass keeps the quality.
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return StoredUpload(self.images.put(encode_png(image)), size, original)

    async def image(self, actor: Actor, version_id: int, *, full: bool = False) -> bytes:
        """A version's image for this actor only: lossless PNG if `full`, else a chat JPEG.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady.
        """
        data = await asyncio.to_thread(self.images.get, await self._ready_sha(actor, version_id))
        if full:
            if self.stamper is not None:  # provenance: manifest and watermark
                return await self.stamper.stamp(version_id, data)
            return data
        return await asyncio.to_thread(chat_jpeg, data)

    async def _ready_sha(self, actor: Actor, version_id: int) -> str:
        """The image digest of a finished version of this actor's (the ownership check)."""
        async with self.database.read() as session:
            conversation = await started_conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
        if not version.is_done or version.image_sha is None:
            raise VersionNotReady(version_id=version_id)
        return version.image_sha

    async def thumbnail(self, actor: Actor, version_id: int, long_side: int = 160) -> bytes:
        """A small JPEG of a version for history strips, with the same ownership checks as
        `image` (VersionNotFound for other users' versions, VersionNotReady while pending).

        Kept by digest (an image never changes under its sha256): a history strip asks for the
        same thumbnails again and again, and a full-size original takes up to a second to
        decode.
        """
        key = (await self._ready_sha(actor, version_id), long_side)
        if key in self._thumbnails:
            self._thumbnails.move_to_end(key)
            return self._thumbnails[key]
        data = await asyncio.to_thread(self.images.get, key[0])
        small = await asyncio.to_thread(thumbnail_jpeg, data, long_side)
        self._thumbnails[key] = small
        if len(self._thumbnails) > MAX_THUMBNAILS:
            self._thumbnails.popitem(last=False)
        return small

    async def preview(self, actor: Actor, version_id: int) -> bytes:
        """The latest progress preview (JPEG) of a running edit, for its owner only.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady when the
        edit has no preview (not started, finished, or the worker makes none).
        """
        async with self.database.read() as session:
            conversation = await started_conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
        latest = self.previews.get(version.id)
        if latest is None or not version.is_pending:
            raise VersionNotReady(version_id=version_id)
        return latest.jpeg


def stored_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """`size` if it has at most `max_pixels`, else the largest size under it with its aspect."""
    width, height = size
    if width * height <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / (width * height))
    fitted = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while fitted[0] * fitted[1] > max_pixels:  # float rounding, at most a step or two
        fitted = fitted[0] - (width >= height), fitted[1] - (height > width)
    return fitted


def chat_jpeg(data: bytes, long_side: int = CHAT_LONG_SIDE) -> bytes:
    """The chat copy of a stored PNG: a JPEG whose long side is at most `long_side`."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = (
            on_light_background(image)
            if image.mode in ("RGBA", "LA", "PA")
            else image.convert("RGB")
        )
    if max(rgb.size) > long_side:
        scale = long_side / max(rgb.size)
        size = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return encode_preview_jpeg(rgb)


CHECKER = ((255, 255, 255), (232, 232, 232))
CHECKER_CELL = 16


def on_light_background(image: Image.Image) -> Image.Image:
    """A picture with transparency (a cut-out) on a light checkerboard, as RGB.

    Dropping the alpha would show whatever colours lie under the transparent pixels (often
    black); the checkerboard shows the cut-out as one, on a light background.
    """
    rgba = image.convert("RGBA")
    board = Image.new("RGB", rgba.size, CHECKER[0])
    cell = Image.new("RGB", (CHECKER_CELL, CHECKER_CELL), CHECKER[1])
    for y in range(0, rgba.height, CHECKER_CELL):
        for x in range((y // CHECKER_CELL) % 2 * CHECKER_CELL, rgba.width, 2 * CHECKER_CELL):
            board.paste(cell, (x, y))
    board.paste(rgba, mask=rgba.getchannel("A"))
    return board


def thumbnail_jpeg(data: bytes, long_side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        small = (
            on_light_background(image)
            if image.mode in ("RGBA", "LA", "PA")
            else image.convert("RGB")
        )
        small.thumbnail((long_side, long_side))
        return encode_preview_jpeg(small, quality=80)
