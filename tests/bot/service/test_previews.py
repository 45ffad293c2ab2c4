"""Live progress previews from the model thread to the owner of a running edit.

The service with the real embedded scheduler and the NullEditor's deterministic previews
(held mid-edit by `PausingPreviewEditor`), chat-platform delivery, and the production object
graph with the tiny diffusers pipeline and the tiny TAESD decoder.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from bot.app import build
from bot.config import Settings
from bot.service.mailboxes import EventDelivery
from bot.service.replies import Reply
from bot.work.jobs import JobEvent, JobPreview
from editor.testing.doubles import PausingPreviewEditor
from storage.errors import VersionNotFound, VersionNotReady
from storage.models import Version
from storage.types import Actor
from tests.bot.service.harness import (
    ALICE,
    BOB,
    TIMEOUT_S,
    Harness,
    Recorder,
    photo,
    running_service,
)

STEPS = 3  # the harness default: previews after steps 1 and 2 (none after the last)


async def _wait_for_preview(recorder: Recorder, version_id: int, step: int) -> None:
    def arrived() -> bool:
        return any(
            r.key == "edit.preview" and r.version_id == version_id and r.args["step"] == step
            for _, r in recorder.replies
        )

    async with asyncio.timeout(TIMEOUT_S):
        while not arrived():  # noqa: ASYNC110 (polls what the recorder saw)
            await asyncio.sleep(0.01)


def _distance(image: Image.Image, other: Image.Image) -> float:
    """Mean absolute pixel difference: how far an image was edited from another (the other
    scaled to its size, as the model input was)."""
    scaled = other.convert("RGB").resize(image.size, Image.Resampling.LANCZOS)
    difference = ImageChops.difference(image.convert("RGB"), scaled)
    return sum(ImageStat.Stat(difference).mean) / 3


async def test_previews_reach_the_owner_in_order_and_are_dropped_with_the_result(
    sqlite_url: str, tmp_path: Path
) -> None:
    editor = PausingPreviewEditor(pause_at=2)
    async with running_service(sqlite_url, tmp_path / "images", editor=editor) as h:
        seen: list[JobEvent] = []

        async def record(event: JobEvent) -> None:
            seen.append(event)

        h.scheduler.subscribe(record)
        await h.upload(BOB, photo(shade=200))
        await h.upload(ALICE, photo(shade=10))
        edit = await h.queue(ALICE, "make it night")
        await _wait_for_preview(h.recorder, edit, 2)

        # The latest preview (step 2, not step 1) is there for Alice, as a JPEG.
        shots = [e for e in seen if isinstance(e, JobPreview) and e.version_id == edit]
        assert [(e.step, e.total) for e in shots] == [(1, STEPS), (2, STEPS)]
        assert shots[0].jpeg != shots[1].jpeg
        latest = await h.service.preview(ALICE, edit)
        assert latest == shots[1].jpeg
        with Image.open(io.BytesIO(latest)) as image:
            assert image.format == "JPEG"
            preview_image = image.convert("RGB")
        # Bob, in the same group chat, cannot see it: it looks like a missing version.
        with pytest.raises(VersionNotFound):
            await h.service.preview(BOB, edit)

        editor.resume.set()
        done = await h.recorder.done(edit)
        assert done.key == "edit.done"
        with pytest.raises(VersionNotReady):
            await h.service.preview(ALICE, edit)
        assert not h.service.previews  # nothing kept for finished edits

        # Published to Alice only, in order: each preview after its step's progress, the
        # result last; the preview is of the running edit (same size, less edited).
        mine = [(a, r) for a, r in h.recorder.replies if r.version_id == edit]
        assert all(actor == ALICE for actor, _ in mine)
        keys = [(r.key, r.args.get("step")) for _, r in mine]
        assert keys[-1][0] == "edit.done"
        assert [k for k in keys if k[0] == "edit.preview"] == [
            ("edit.preview", 1),
            ("edit.preview", 2),
        ]
        assert keys.index(("edit.preview", 2)) > keys.index(("edit.progress", 2))
        # Compared with the model's own output (the stored result is developed onto the
        # photo, at the photo's size).
        raw_sha = (await h.version(edit)).raw_image_sha
        assert raw_sha is not None
        result = Image.open(io.BytesIO(h.images.get(raw_sha)))
        original = Image.open(io.BytesIO(await h.service.image(ALICE, edit - 1, full=True)))
        assert preview_image.size == result.size
        assert _distance(preview_image, original) < _distance(result, original)


async def test_a_preview_of_an_edit_that_is_forgotten_while_running_is_dropped(
    sqlite_url: str, tmp_path: Path
) -> None:
    editor = PausingPreviewEditor(pause_at=1)
    async with running_service(sqlite_url, tmp_path / "images", editor=editor) as h:
        await h.upload(ALICE)
        edit = await h.queue(ALICE, "make it night")
        await _wait_for_preview(h.recorder, edit, 1)
        assert await h.service.preview(ALICE, edit)
        assert (await h.service.forget(ALICE)).key == "forget.done"
        assert not h.service.previews
        editor.resume.set()


class RecordingDelivery(EventDelivery):
    """A chat platform that remembers what it showed and sent."""

    def __init__(self, h: Harness) -> None:
        super().__init__(h.service)
        self.progress: list[Reply] = []
        self.sent: list[Reply] = []

    async def show_progress(self, reply: Reply) -> None:
        self.progress.append(reply)

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        self.sent.append(reply)
        return True


async def test_chat_platforms_never_send_a_preview_as_the_result(
    sqlite_url: str, tmp_path: Path
) -> None:
    editor = PausingPreviewEditor(pause_at=1)
    async with running_service(sqlite_url, tmp_path / "images", editor=editor) as h:
        delivery = RecordingDelivery(h)
        h.service.subscribe(ALICE.platform, delivery.on_event)
        await h.upload(ALICE)
        edit = await h.queue(ALICE, "make it night")
        await _wait_for_preview(h.recorder, edit, 1)
        await asyncio.sleep(0.05)  # give the mailbox a chance to (wrongly) deliver it
        assert delivery.sent == []
        assert (await h.version(edit)).delivered is False
        editor.resume.set()
        await h.recorder.done(edit)
        await delivery.close()
        assert [r.key for r in delivery.sent] == ["edit.done"]
        assert {r.key for r in delivery.progress} == {"edit.progress"}
        version: Version = await h.version(edit)
        assert version.delivered is True


async def test_tiny_pipeline_with_the_tiny_preview_decoder_sends_previews(
    tiny_model_dir: Path, tiny_preview_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        model=str(tiny_model_dir),
        device="cpu",
        data_dir=tmp_path / "data",
        default_steps=4,
        default_resolution=256,
        max_wait_ms=0,
        preview="taesd",
        preview_model=str(tiny_preview_dir),
        preview_every=2,
    )
    recorder = Recorder(timeout_s=60.0)
    shots: list[JobPreview] = []

    async def record(event: JobEvent) -> None:
        if isinstance(event, JobPreview):
            shots.append(event)

    async with build(settings) as components:
        components.scheduler.subscribe(record)
        components.service.subscribe(ALICE.platform, recorder)
        await components.service.receive_image(ALICE, photo())
        reply = await components.service.instruct(ALICE, "make it night")
        assert reply.version_id is not None
        await recorder.done(reply.version_id)
        async with components.database.read() as session:
            version = await session.get(Version, reply.version_id)
        assert version is not None and version.raw_image_sha is not None
        result = components.images.get(version.raw_image_sha)  # the model's own output
    previews = [r.args for _, r in recorder.replies if r.key == "edit.preview"]
    assert [(p["step"], p["total"]) for p in previews] == [(2, 4)]
    assert previews[0]["instruction"] == "make it night"
    [shot] = shots
    with Image.open(io.BytesIO(shot.jpeg)) as image, Image.open(io.BytesIO(result)) as final:
        assert image.format == "JPEG"
        assert image.size == final.size  # TAESD decodes the latents at full size
