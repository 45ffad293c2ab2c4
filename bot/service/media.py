"""Pictures in and out: uploads stored losslessly, versions served to their owner only, and
the latest progress preview of each running edit."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable

from PIL import Image

from bot.service.lookup import started_conversation
from bot.work.jobs import JobPreview
from editor.images import (
    ImageLimits,
    encode_png,
    encode_preview_jpeg,
    fit_to_resolution,
    load_image,
)
from editor.params import RESOLUTIONS
from storage import tree
from storage.database import Database
from storage.errors import VersionNotReady
from storage.images import ImageStore
from storage.types import Actor

STORED_LONG_SIDE = 2 * max(RESOLUTIONS)
"""Uploads are kept losslessly but no larger than twice the largest edit resolution."""
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


class Media:
    """Stores uploads and serves version pictures, with the ownership checks of the service."""

    def __init__(
        self, database: Database, images: ImageStore, limits: ImageLimits, previews: Previews
    ) -> None:
        self.database = database
        self.images = images
        self.limits = limits
        self.previews = previews

    def store_upload(self, data: bytes) -> tuple[str, tuple[int, int]]:
        """Validate, normalise and store an upload losslessly (runs in a worker thread)."""
        image = load_image(data, self.limits)
        if max(image.size) > STORED_LONG_SIDE:
            image = fit_to_resolution(image, STORED_LONG_SIDE)
        return self.images.put(encode_png(image)), image.size

    async def image(self, actor: Actor, version_id: int, *, full: bool = False) -> bytes:
        """A version's image for this actor only: lossless PNG if `full`, else a chat JPEG.

        Raises VersionNotFound (also for other users' versions) or VersionNotReady.
        """
        async with self.database.read() as session:
            conversation = await started_conversation(session, actor)
            version = await tree.get_version(session, conversation, version_id)
        if not version.is_done or version.image_sha is None:
            raise VersionNotReady(version_id=version_id)
        data = await asyncio.to_thread(self.images.get, version.image_sha)
        if full:
            return data
        return await asyncio.to_thread(chat_jpeg, data)

    async def thumbnail(self, actor: Actor, version_id: int, long_side: int = 160) -> bytes:
        """A small JPEG of a version for history strips, with the same ownership checks as
        `image` (VersionNotFound for other users' versions, VersionNotReady while pending)."""
        data = await self.image(actor, version_id, full=True)
        return await asyncio.to_thread(thumbnail_jpeg, data, long_side)

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


def chat_jpeg(data: bytes) -> bytes:
    """The chat copy of a stored PNG."""
    with Image.open(io.BytesIO(data)) as image:
        return encode_preview_jpeg(image.convert("RGB"))


def thumbnail_jpeg(data: bytes, long_side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((long_side, long_side))
        return encode_preview_jpeg(small, quality=80)
