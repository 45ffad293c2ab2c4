"""Regions in the scaled-out path: a `pix2chat worker` (GpuWorker, in this process, on real
PostgreSQL) masks an edit's /keep region on its parent in the model thread, applies it, and
records the mask in the result's transaction."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy import select

from bot.work.jobs import JobDone
from bot.work.remote import RemoteJobQueue
from editor.regions import KEEP, Region
from editor.testing.doubles import BoxSegmenter, NullEditor, box_pixels
from storage import regions
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.models import Version, VersionRegion
from tests.fixtures_queue import Events, add_edit, add_photo, running_worker


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


async def test_the_worker_keeps_the_region_and_records_its_mask(
    pg: Database, images: DatabaseImageStore
) -> None:
    root = await add_photo(pg, images, "alice")
    version_id = await add_edit(pg, "alice", "alice at night")
    async with pg.write() as session:
        await regions.record_for_edit(session, version_id, [Region(KEEP, "the logo")])
    segmenter = BoxSegmenter({"the logo": (0.25, 0.25, 0.75, 0.75)})
    events = Events()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        async with running_worker(pg, images, NullEditor(), segmenter=segmenter):
            await events.until(lambda: bool(events.outcomes(version_id)))
    assert isinstance(events.outcomes(version_id)[0], JobDone)
    assert segmenter.threads and all(t.startswith("pix2chat-model") for t in segmenter.threads)

    async with pg.read() as session:
        version = await session.get(Version, version_id)
        (row,) = (
            await session.scalars(
                select(VersionRegion).where(VersionRegion.version_id == version_id)
            )
        ).all()
    assert version is not None and version.image_sha and root.image_sha
    assert row.mask_sha is not None
    original, result = decode(images.get(root.image_sha)), decode(images.get(version.image_sha))
    left, top, right, bottom = box_pixels((0.25, 0.25, 0.75, 0.75), (64, 48))
    assert np.array_equal(result[top:bottom, left:right], original[top:bottom, left:right])
    assert np.any(result[:top] != original[:top])
    mask = decode(images.get(row.mask_sha))[..., 0] > 0
    assert mask[top:bottom, left:right].all() and mask.sum() == (right - left) * (bottom - top)
