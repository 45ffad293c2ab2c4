"""One photo through the production object graph, with the real (tiny) diffusers pipeline.

`bot.app.build` wires what `pix2chat run` runs: Alembic migrations on a SQLite file, the
file image store, the embedded scheduler and `DiffusersEditor` on the CPU. The test talks to
the service the way a frontend does and checks what a user would get, then restarts on the
same data folder.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.app import Components, build
from bot.config import Settings
from bot.service.replies import HistoryEntry, Reply
from editor.base import EditRequest
from editor.images import fit_to_resolution
from editor.params import EditParams
from storage.models import Version
from storage.types import Actor
from tests.bot.service.harness import Recorder

pytestmark = pytest.mark.slow

ALICE = Actor("telegram", "chat-1", "alice")
STEPS = 3
RESOLUTION = 256
UPLOAD_SIZE = (320, 240)
TIMEOUT_S = 60.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def recorder_for_tiny_model() -> Recorder:
    """The service-test recorder, patient enough for real diffusion steps on a CPU."""
    return Recorder(timeout_s=TIMEOUT_S)


async def done_for_alice(recorder: Recorder, version_id: int) -> Reply:
    """The edit.done reply of `version_id`, which must have gone to Alice."""
    reply = await recorder.done(version_id)
    assert recorder.results(version_id)[-1][0] == ALICE
    return reply


def upload_photo() -> bytes:
    """A 320x240 JPEG with structure (gradients) and texture (noise) for the VAE to encode."""
    gradient = Image.linear_gradient("L").resize(UPLOAD_SIZE)
    mirrored = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    noise = np.random.default_rng(0).integers(0, 256, UPLOAD_SIZE[::-1], dtype=np.uint8)
    image = Image.merge("RGB", (gradient, mirrored, Image.fromarray(noise, "L")))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


async def stored_png(components: Components, version_id: int) -> tuple[bytes, Image.Image]:
    """A version's lossless image as the service hands it out, checked to be a real PNG."""
    data = await components.service.image(ALICE, version_id, full=True)
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return data, image.convert("RGB")


async def version(components: Components, version_id: int) -> Version:
    async with components.database.read() as session:
        row = await session.get(Version, version_id)
    assert row is not None
    return row


async def history(components: Components) -> tuple[int, tuple[HistoryEntry, ...]]:
    """Head id and the path root -> head."""
    reply = await components.service.history(ALICE)
    assert reply.key == "history.show", reply
    assert reply.version_id is not None
    return reply.version_id, reply.history


async def instruct(components: Components, recorder: Recorder, text: str) -> int:
    reply = await components.service.instruct(ALICE, text)
    assert not reply.is_error, reply
    assert reply.version_id is not None
    await done_for_alice(recorder, reply.version_id)
    return reply.version_id


@pytest.fixture
def settings(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Production settings but for the tiny model, the CPU, few steps and a temporary folder."""
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for name in [n for n in os.environ if n.startswith("PIX2CHAT_")]:
        monkeypatch.delenv(name)
    return Settings(
        model=str(tiny_model_dir),
        device="cpu",
        data_dir=tmp_path / "data",
        default_steps=STEPS,
        default_resolution=RESOLUTION,
        max_wait_ms=0,
    )


async def test_photo_edits_history_and_restart(settings: Settings) -> None:
    recorder = recorder_for_tiny_model()
    async with build(settings) as components:
        components.service.subscribe(ALICE.platform, recorder)
        assert (settings.data_dir / "pix2chat.db").is_file()

        # 1. A photo with a caption: the caption is the first instruction.
        reply = await components.service.receive_image(
            ALICE, upload_photo(), caption="make it night"
        )
        assert reply.key in ("edit.queued", "edit.queued_next"), reply
        assert reply.version_id is not None
        edit1 = reply.version_id
        done = await done_for_alice(recorder, edit1)
        progress = recorder.progress(edit1)
        assert progress, "no progress events"
        assert all(total == STEPS for _, total in progress)
        assert progress[-1] == (STEPS, STEPS)
        assert [step for step, _ in progress] == sorted(step for step, _ in progress)
        root = (await version(components, edit1)).parent_id
        assert root is not None

        # 2. A second instruction edits the first result.
        edit2 = await instruct(components, recorder, "add snow on the roof")
        assert recorder.progress(edit2)[-1] == (STEPS, STEPS)

        head, path = await history(components)
        assert head == edit2
        assert [e.version_id for e in path] == [root, edit1, edit2]
        assert [e.instruction for e in path] == [None, "make it night", "add snow on the roof"]
        assert [e.status for e in path] == ["done", "done", "done"]
        assert [e.is_head for e in path] == [False, False, True]
        seeds = []
        for entry in path[1:]:
            assert entry.params is not None
            params = EditParams.from_dict(dict(entry.params))
            assert params.num_inference_steps == STEPS
            assert params.resolution == RESOLUTION
            assert params.guidance_scale == settings.default_guidance_scale
            assert params.image_guidance_scale == settings.default_image_guidance_scale
            # every parameter is recorded (the model name only where several are configured)
            assert set(entry.params) >= set(EditParams.__dataclass_fields__) - {"model"}
            seeds.append(params.seed)
        assert done.args["seed"] == seeds[0]

        # Results: lossless PNGs developed onto the photo (its own size); the model's raw
        # outputs kept beside them: sides multiples of 8, aspect kept, and not their inputs.
        root_data, root_image = await stored_png(components, root)
        assert root_image.size == UPLOAD_SIZE  # the upload itself is kept, losslessly
        images: dict[int, bytes] = {root: root_data}
        raws: dict[int, bytes] = {}
        for parent, child in ((root, edit1), (edit1, edit2)):
            data, image = await stored_png(components, child)
            images[child] = data
            assert image.size == UPLOAD_SIZE
            row = await version(components, child)
            assert (row.width, row.height) == UPLOAD_SIZE
            assert row.params is not None and row.params["seed"] in seeds
            assert row.raw_image_sha is not None
            raws[child] = components.images.get(row.raw_image_sha)
            width, height = Image.open(io.BytesIO(raws[child])).size
            assert max(width, height) == RESOLUTION
            assert width % 8 == 0 and height % 8 == 0
            assert abs(width / height - UPLOAD_SIZE[0] / UPLOAD_SIZE[1]) < 0.05
            parent_fitted = fit_to_resolution(
                Image.open(io.BytesIO(images[parent])).convert("RGB"), RESOLUTION
            )
            difference = np.abs(np.asarray(parent_fitted).astype(np.int16) - pixels(raws[child]))
            assert difference.mean() > 5, f"version {child} looks like its input"

        # Reproducible: the stored parameters and the parent give the model's pixels again.
        row = await version(components, edit2)
        assert row.params is not None and row.instruction is not None
        stored_params = EditParams.from_dict(row.params)
        parent_fitted = fit_to_resolution(
            Image.open(io.BytesIO(images[edit1])).convert("RGB"), stored_params.resolution
        )
        [again] = await asyncio.to_thread(
            components.editor.edit_batch,
            [EditRequest(parent_fitted, row.instruction, stored_params)],
        )
        replay = np.asarray(again).astype(np.int16)
        assert replay.shape == pixels(raws[edit2]).shape
        assert np.abs(replay - pixels(raws[edit2])).max() <= 2

        # 3. Regenerate: a sibling with the same instruction, a new seed and other pixels.
        reply = await components.service.regenerate(ALICE)
        assert not reply.is_error, reply
        assert reply.version_id is not None
        sibling = reply.version_id
        await done_for_alice(recorder, sibling)
        sibling_row = await version(components, sibling)
        assert sibling_row.parent_id == edit1
        assert sibling_row.instruction == "add snow on the roof"
        assert sibling_row.params is not None
        assert sibling_row.params["seed"] != stored_params.seed
        assert {k: v for k, v in sibling_row.params.items() if k != "seed"} == {
            k: v for k, v in row.params.items() if k != "seed"
        }
        sibling_data, _ = await stored_png(components, sibling)
        assert np.abs(pixels(sibling_data) - pixels(images[edit2])).mean() > 1
        head, path = await history(components)
        assert head == sibling
        assert [e.version_id for e in path] == [root, edit1, sibling]

        # 4. Undo goes back to the first result; nothing is deleted.
        reply = await components.service.undo(ALICE)
        assert reply.key == "undo.done", reply
        assert reply.version_id == edit1
        head, path = await history(components)
        assert head == edit1
        assert [e.version_id for e in path] == [root, edit1]

    # 5. Restart on the same data folder: the history, the head and the images are still there.
    async with build(settings) as components:
        head, path = await history(components)
        assert head == edit1
        assert [e.version_id for e in path] == [root, edit1]
        assert [e.instruction for e in path] == [None, "make it night"]
        assert path[1].params is not None and path[1].params["seed"] == seeds[0]
        # The same pixels (the delivered file's C2PA manifest is signed anew: its bytes differ).
        for kept in (edit1, edit2):
            again = (await stored_png(components, kept))[0]
            assert np.array_equal(pixels(again), pixels(images[kept]))
        reply = await components.service.redo(ALICE)
        assert reply.version_id == sibling, reply
