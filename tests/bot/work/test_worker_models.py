"""One procrastinate queue per model: `pix2chat worker --model` workers take only their model's
edits, the frontend still finds and cancels jobs on every queue, and fairness stays per user."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bot.app import make_editor, worker_options
from bot.config import Settings
from bot.work import pgqueue
from bot.work.remote import RemoteJobQueue
from editor.errors import ModelLoadError
from editor.families.editor import FamilyEditor
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage.database import Database
from storage.images import DatabaseImageStore
from tests.fixtures_queue import Events, add_edit, add_photo, jobs, running_worker
from tests.scaleout.harness import PARAMS


def _params(model: str) -> EditParams:
    return dataclasses.replace(PARAMS, model=model)


async def test_two_workers_on_two_model_queues_each_run_their_models_edits(
    pg: Database, images: DatabaseImageStore
) -> None:
    for user in ("alice", "bob", "carol"):
        await add_photo(pg, images, user)
    ip2p = [
        await add_edit(pg, "alice", "alice paints", params=_params("ip2p")),
        await add_edit(pg, "carol", "carol paints", params=_params("ip2p")),
    ]
    kontext = [await add_edit(pg, "bob", "bob paints", params=_params("kontext"))]
    queued = await jobs(pg)
    assert [row[0] for row in queued] == ["todo"] * 3
    events = Events()
    small, big = NullEditor(), NullEditor()
    async with RemoteJobQueue(pg) as queue:
        queue.subscribe(events)
        assert await queue.position(kontext[0]) == 1  # alone in its model's line
        async with (
            running_worker(pg, images, small, queues=(pgqueue.queue_for("ip2p"),)),
            running_worker(pg, images, big, queues=(pgqueue.queue_for("kontext"),)),
        ):
            await events.until(lambda: all(events.outcomes(v) for v in ip2p + kontext))

    assert {r.params.model for call in small.calls for r in call} == {"ip2p"}
    assert {r.params.model for call in big.calls for r in call} == {"kontext"}
    assert sorted(r.instruction for call in small.calls for r in call) == [
        "alice paints",
        "carol paints",
    ]


async def test_a_job_on_a_model_queue_nobody_serves_can_be_cancelled(
    pg: Database, images: DatabaseImageStore
) -> None:
    await add_photo(pg, images, "alice")
    waiting = await add_edit(pg, "alice", "night", params=_params("qwen"))
    async with RemoteJobQueue(pg) as queue:
        assert await queue.position(waiting) == 1
        queue.discard({waiting})
        for _ in range(100):
            if not await jobs(pg):
                break
            await asyncio.sleep(0.05)
    assert await jobs(pg) == []


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, device="cpu", **values)  # type: ignore[call-arg]


def test_worker_model_serves_one_queue_and_loads_one_model(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path
) -> None:
    models = f"ip2p={tiny_model_dir},kontext={tiny_kontext_dir}"
    one = _settings(tmp_path, models=models, worker_model="kontext")
    assert worker_options(one).queues == ("pix2chat_edits.kontext",)
    assert isinstance(make_editor(one), FamilyEditor)
    every = _settings(tmp_path, models=models)
    assert worker_options(every).queues == ("pix2chat_edits.ip2p", "pix2chat_edits.kontext")
    assert worker_options(_settings(tmp_path)).queues == ("pix2chat_edits",)

    with pytest.raises(ModelLoadError, match="kontext"):
        make_editor(_settings(tmp_path, models=models, worker_model="qwen"))
    with pytest.raises(ModelLoadError, match="PIX2CHAT_MODELS is unset"):
        make_editor(_settings(tmp_path, worker_model="kontext"))
