"""Masks a named region on a stored photo when a user sets it (`/keep`, `/only`).

The reply to `/keep the logo` shows what "the logo" covers and refuses words that cover
nothing or everything, so the segmenter runs before anything is stored. It runs in the model
thread like every model call: the embedded scheduler's, or, in a frontend process whose edits
run on `pix2chat worker`s (PIX2CHAT_WORKER=remote), a model thread of its own holding only
the segmenter. Either way the segmenter is loaded on first use, not at start-up.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from bot.work.batching import ModelThread
from editor.images import encode_preview_jpeg
from editor.segment import Coverage, Segmenter, coverage, mask_overlay
from storage.images import ImageStore

PREVIEW_SIDE = 1024
"""Long side of the mask preview (a chat picture; the photo itself may be 24 MP)."""
PREVIEW_QUALITY = 85


@dataclass(frozen=True, slots=True)
class RegionPreview:
    """How much of the photo a region covers, and the JPEG that shows it."""

    coverage: Coverage
    jpeg: bytes


class RegionMasker:
    """Segments stored photos for region previews, one call at a time in `model`."""

    def __init__(self, segmenter: Segmenter, model: ModelThread, images: ImageStore) -> None:
        self.segmenter = segmenter
        self.model = model
        self.images = images

    async def preview(self, image_sha: str, text: str) -> RegionPreview:
        """Mask `text` on the stored image and render the preview (in the model thread)."""
        return await self.model.run(self._preview, image_sha, text)

    def _preview(self, image_sha: str, text: str) -> RegionPreview:
        with Image.open(io.BytesIO(self.images.get(image_sha))) as stored:
            photo = stored.convert("RGB")
        photo.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
        (mask,) = self.segmenter.masks(photo, [text])
        return RegionPreview(
            coverage(mask), encode_preview_jpeg(mask_overlay(photo, mask), PREVIEW_QUALITY)
        )
