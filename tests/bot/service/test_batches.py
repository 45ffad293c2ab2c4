"""Applying a recipe to a batch of photos through the service: one root and chain per photo,
one status line, grouped results, and every bad input."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bot.service.batches import Photo
from bot.service.conversation import Admission
from bot.service.replies import Reply, ReplyKind
from editor.base import EditRequest, PreviewCallback, ProgressCallback
from editor.testing.doubles import GatedEditor
from storage.limits import LimitPolicy
from tests.bot.service.harness import (
    ALICE,
    BOB,
    TIMEOUT_S,
    Harness,
    open_image,
    photo,
    running_service,
)


class FailsOnPortraits(GatedEditor):
    """Fails every edit of a portrait photo (a step failing on one photo only)."""

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        if any(r.image.height > r.image.width for r in requests):
            raise RuntimeError("this photo breaks the model")
        return super().edit_batch(requests, progress, preview)


async def _save_recipe(h: Harness, steps: Sequence[str] = ("make it night", "add snow")) -> None:
    await h.upload(ALICE)
    for step in steps:
        await h.edit(ALICE, step)
    saved = await h.service.recipe(ALICE, ["save", "winter"])
    assert saved.key == "recipe.saved", saved


async def _finished(h: Harness, run_id: int) -> Reply:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            for _actor, reply in h.recorder.replies:
                if reply.kind is ReplyKind.BATCH_RESULT and reply.args["run"] == run_id:
                    return reply
            await asyncio.sleep(0.01)


def _photos(count: int, size: tuple[int, int] = (64, 48)) -> list[Photo]:
    return [Photo(f"shoe-{i}.jpg", photo(size, shade=i * 20)) for i in range(count)]


async def test_every_photo_gets_its_own_root_and_chain(h: Harness) -> None:
    await _save_recipe(h)
    sizes = [(64, 48), (80, 60), (40, 72)]
    photos = [Photo(f"p{i}.jpg", photo(size, shade=i)) for i, size in enumerate(sizes)]
    started = await h.service.apply_recipe(ALICE, "winter", photos)
    assert started.kind is ReplyKind.BATCH_STATUS, started
    assert started.args["photos"] == 3 and started.args["edits"] == 6
    assert "0 of 3 photos done" in started.text()
    result = await _finished(h, started.args["run"])
    assert result.args["succeeded"] == 3 and len(result.versions) == 3
    assert "3 of 3 photos done" in result.text()

    for version_id, size in zip(result.versions, sizes, strict=True):
        image = open_image(await h.service.image(ALICE, version_id, full=True))
        assert image.size == size  # developed onto the photo at its own size
        last = await h.version(version_id)
        step1 = await h.version(last.parent_id or 0)
        root = await h.version(step1.parent_id or 0)
        assert (step1.instruction, last.instruction) == ("make it night", "add snow")
        assert root.is_root and root.width == size[0]
    assert len({(await h.version(v)).params["seed"] for v in result.versions}) == 3  # fresh seeds

    # one status line per photo finished, not a message per step
    statuses = [r for _, r in h.recorder.replies if r.kind is ReplyKind.BATCH_STATUS]
    assert [r.args["done"] for r in statuses] == [1, 2]
    assert not [r for _, r in h.recorder.replies if r.version_id in result.versions]

    # each result is an ordinary version: undo from it, regenerate it
    undone = await h.service.undo(ALICE, result.versions[0])
    assert (
        undone.key == "undo.done"
        and undone.version_id == (await h.version(result.versions[0])).parent_id
    )
    regenerated = await h.service.regenerate(ALICE, result.versions[1])
    assert regenerated.kind is ReplyKind.QUEUED

    name, data = await h.service.batch_zip(ALICE, started.args["run"])
    assert name == "winter-results.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["01-p0.png", "02-p1.png", "03-p2.png"]
        assert Image.open(io.BytesIO(archive.read("02-p1.png"))).size == (80, 60)


async def test_another_user_cannot_download_the_zip(h: Harness) -> None:
    await _save_recipe(h, ("make it night",))
    started = await h.service.apply_recipe(ALICE, "winter", _photos(1))
    await _finished(h, started.args["run"])
    try:
        await h.service.batch_zip(BOB, started.args["run"])
    except Exception as error:
        assert type(error).__name__ == "VersionNotFound"
    else:
        raise AssertionError("Bob got Alice's zip")


async def test_a_step_failing_on_one_photo_leaves_the_others(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "img", editor=FailsOnPortraits()) as h:
        await _save_recipe(h)
        photos = [Photo("ok.jpg", photo((64, 48))), Photo("bad.jpg", photo((40, 72)))]
        photos.append(Photo("ok2.jpg", photo((80, 60))))
        started = await h.service.apply_recipe(ALICE, "winter", photos)
        result = await _finished(h, started.args["run"])
        assert result.args["succeeded"] == 2 and len(result.versions) == 2
        text = result.text()
        assert "bad.jpg: step 1 (“make it night”) failed" in text
        assert "ok.jpg" not in text


async def test_unknown_and_empty_recipes(h: Harness) -> None:
    unknown = await h.service.apply_recipe(ALICE, "nope", _photos(1))
    assert unknown.kind is ReplyKind.ERROR and unknown.key == "error.recipe_not_found"
    empty = b'{"format": "pix2chat.recipe", "name": "empty", "steps": []}'
    assert (await h.service.import_recipe(ALICE, empty)).key == "recipe.imported"
    refused = await h.service.apply_recipe(ALICE, "empty", _photos(1))
    assert refused.key == "error.recipe_empty" and "empty" in refused.text()
    assert await h.count_versions() == 0


async def test_more_photos_than_allowed_takes_the_first(h: Harness) -> None:
    h.service.batches.max_photos = 2
    await _save_recipe(h, ("make it night",))
    started = await h.service.apply_recipe(ALICE, "winter", _photos(3))
    assert started.args["photos"] == 2
    assert "at most 2 photos" in started.text()
    result = await _finished(h, started.args["run"])
    assert len(result.versions) == 2


async def test_a_non_image_is_skipped_and_named(h: Harness) -> None:
    await _save_recipe(h, ("make it night",))
    photos = [Photo("notes.txt", b"hello"), *_photos(2)]
    started = await h.service.apply_recipe(ALICE, "winter", photos)
    assert started.args["photos"] == 2
    assert "Skipped notes.txt" in started.text()
    only_junk = await h.service.apply_recipe(ALICE, "winter", [Photo("a.txt", b"x")])
    assert only_junk.key == "error.recipe_no_photos" and "Skipped a.txt" in only_junk.text()


async def test_the_quota_says_how_many_photos_fit(sqlite_url: str, tmp_path: Path) -> None:
    quota = Admission(rate=LimitPolicy(burst=100, per_minute=600.0, daily_quota=7))
    async with running_service(sqlite_url, tmp_path / "img", admission=quota) as h:
        await _save_recipe(h)  # 2 of 7 used
        started = await h.service.apply_recipe(ALICE, "winter", _photos(4))
        assert started.args["photos"] == 2  # 5 left, 2 steps each
        text = started.text()
        assert "5 left, enough for 2 photo(s)" in text and "taking the first 2" in text
        await _finished(h, started.args["run"])
        refused = await h.service.apply_recipe(ALICE, "winter", _photos(1))
        assert refused.key == "error.quota_exceeded"


async def test_cancel_stops_the_remaining_steps(sqlite_url: str, tmp_path: Path) -> None:
    editor = GatedEditor()
    async with running_service(sqlite_url, tmp_path / "img", editor=editor) as h:
        await _save_recipe(h)
        editor.gate.clear()
        started = await h.service.apply_recipe(ALICE, "winter", _photos(3))
        cancelled = await h.service.cancel(ALICE)
        assert cancelled.key == "recipe.cancelled" and cancelled.args["count"] >= 5
        editor.gate.set()
        result = await _finished(h, started.args["run"])
        assert "cancelled at step" in result.text()
        assert len(result.versions) == 0 or result.args["succeeded"] <= 1
        assert (await h.service.cancel(ALICE)).key == "error.nothing_to_cancel"


async def test_another_users_edit_waits_at_most_one_batch(sqlite_url: str, tmp_path: Path) -> None:
    editor = GatedEditor()
    async with running_service(sqlite_url, tmp_path / "img", editor=editor) as h:
        await _save_recipe(h, ("make it night", "add snow", "golden hour"))
        await h.upload(BOB)
        editor.gate.clear()
        started = await h.service.apply_recipe(ALICE, "winter", _photos(5))  # 15 steps
        bob = await h.queue(BOB, "make it blue")
        calls_before = len(editor.calls)
        editor.gate.set()
        await h.recorder.done(bob)
        # Bob's edit ran in the first or second pipeline call after his request, never after
        # Alice's 15 steps.
        bob_call = next(
            i
            for i, call in enumerate(editor.calls)
            if any(r.instruction == "make it blue" for r in call)
        )
        assert bob_call - calls_before <= 1, (bob_call, calls_before)
        await _finished(h, started.args["run"])


async def test_a_batch_survives_a_restart(sqlite_url: str, tmp_path: Path) -> None:
    editor = GatedEditor()
    async with running_service(sqlite_url, tmp_path / "img", editor=editor) as h:
        await _save_recipe(h)
        editor.gate.clear()
        started = await h.service.apply_recipe(ALICE, "winter", _photos(3))
        run = started.args["run"]
    # restarted: the queued steps run, and the batch is reported as one, once
    async with running_service(sqlite_url, tmp_path / "img") as h:
        result = await _finished(h, run)
        assert result.args["succeeded"] == 3 and len(result.versions) == 3
        await h.service.redeliver("telegram")  # the recipe's own two edits, never the batch's
        batch = {
            step.version_id
            for outcome in await h.service.batch_outcomes(ALICE, run)
            for step in outcome.steps
        }
        assert len(batch) == 6
        shown = {r.version_id for _, r in h.recorder.replies if r.version_id is not None}
        assert not batch & shown
        finished = [r for _, r in h.recorder.replies if r.kind is ReplyKind.BATCH_RESULT]
        assert len(finished) == 1
