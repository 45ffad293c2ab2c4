"""A finishing job through `pix2chat worker` (PostgreSQL queue, GpuWorker): it runs in the
worker's model thread with the worker's finisher, never in the editor, and is recorded as a
done version like an edit."""

from __future__ import annotations

import asyncio
import dataclasses
import io

from PIL import Image

from bot.work import pgqueue
from bot.work.jobs import Job, JobDone
from bot.work.remote import RemoteJobQueue
from bot.work.worker import GpuWorker
from editor.finishing.finisher import Finisher
from editor.finishing.spec import Finish
from editor.testing.doubles import NullEditor
from storage import tree
from storage.database import Database
from storage.images import DatabaseImageStore
from storage.models import Version
from tests.fixtures_queue import FAST, Events, add_photo
from tests.scaleout.harness import PARAMS, actor


async def test_the_worker_runs_an_upscale_job(
    pg: Database, images: DatabaseImageStore, tiny_finisher: Finisher
) -> None:
    await add_photo(pg, images, "alice")
    finish = Finish("upscale", scale=2)
    async with pg.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor("alice"))
        parent = await tree.head(session, conversation)
        assert parent is not None
        version = await tree.add_edit(
            session, conversation, parent, finish.label(), PARAMS, finish=finish
        )
        job = Job(version.id, "telegram:alice", parent.id, (64, 48), finish.label(), PARAMS, finish)
        await pgqueue.defer_in(session, job)
        version_id = version.id
    events = Events()
    editor = NullEditor()
    worker = GpuWorker(pg, images, editor, dataclasses.replace(FAST), finisher=tiny_finisher)
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        task = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:
            await events.until(lambda: bool(events.outcomes(version_id)))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert isinstance(events.outcomes(version_id)[0], JobDone)
    assert editor.calls == []  # the model never saw it
    async with pg.read() as session:
        done = await session.get(Version, version_id)
    assert done is not None and done.status == "done" and done.finishing() == finish
    assert (done.width, done.height) == (128, 96)
    assert done.image_sha is not None
    with Image.open(io.BytesIO(images.get(done.image_sha))) as result:
        assert result.size == (128, 96)
