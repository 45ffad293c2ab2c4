"""/keep, /only, /keep off, /only off and /regions through the conversation service, with the
real embedded scheduler and develop step and a box segmenter double, so which pixels a region
covers is known exactly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from sqlalchemy import select

from bot.service.batches import Photo
from bot.service.replies import ReplyKind
from editor.base import EditRequest, PreviewCallback, ProgressCallback
from editor.segment import ClipSegSegmenter
from editor.testing.doubles import Box, BoxSegmenter, GatedEditor, box_pixels
from storage.images import ImageMissing
from storage.models import ConversationRegion, RecipeRun, VersionRegion
from tests.bot.service.harness import (
    ALICE,
    BOB,
    TIMEOUT_S,
    Harness,
    open_image,
    photo,
    running_service,
)

SIZE = (320, 240)
LOGO: Box = (0.25, 0.25, 0.5, 0.5)
BACKGROUND: Box = (0.0, 0.0, 0.75, 1.0)
SHOE: Box = (0.5, 0.5, 1.0, 1.0)
BOXES = {"the logo": LOGO, "the background": BACKGROUND, "the shoe": SHOE, "it all": (0, 0, 1, 1)}


@pytest.fixture
def segmenter() -> BoxSegmenter:
    return BoxSegmenter(BOXES)


class ShiftingEditor(GatedEditor):
    """Shifts every value by 100 (mod 256): each pixel changes far beyond develop's threshold,
    whatever the seed, so the tests can expect every unprotected pixel to change."""

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        super().edit_batch(requests, progress, preview)
        return [Image.eval(r.image.convert("RGB"), lambda v: (v + 100) % 256) for r in requests]


@pytest.fixture
async def h(sqlite_url: str, images_dir: Path, segmenter: BoxSegmenter) -> AsyncIterator[Harness]:
    async with running_service(
        sqlite_url, images_dir, segmenter=segmenter, editor=ShiftingEditor()
    ) as harness:
        yield harness


def pixels(image: Image.Image) -> NDArray[np.uint8]:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def inside(box: Box, size: tuple[int, int] = SIZE) -> NDArray[np.bool_]:
    """The boolean mask `BoxSegmenter` paints for `box` at `size`."""
    left, top, right, bottom = box_pixels(box, size)
    mask = np.zeros((size[1], size[0]), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


async def image_of(h: Harness, version_id: int) -> Image.Image:
    version = await h.version(version_id)
    assert version.image_sha is not None
    return open_image(h.images.get(version.image_sha))


async def regions_of(h: Harness, version_id: int) -> list[VersionRegion]:
    async with h.database.read() as session:
        rows = await session.scalars(
            select(VersionRegion).where(VersionRegion.version_id == version_id)
        )
        return sorted(rows.all(), key=lambda row: row.kind)


async def test_keep_protects_the_region_bit_for_bit_in_every_following_edit(
    h: Harness, segmenter: BoxSegmenter
) -> None:
    root = (await h.upload(ALICE, photo(SIZE))).version_id
    assert root is not None
    assert not segmenter.loaded  # nothing loads the segmenter before it is needed

    reply = await h.service.keep(ALICE, "the logo")
    assert reply.kind is ReplyKind.REGION and not reply.is_error, reply
    assert "the logo" in reply.text() and "/keep off" in reply.text()
    # The preview: the photo with everything outside the region dimmed.
    assert reply.picture is not None
    preview, original = pixels(open_image(reply.picture)), pixels(await image_of(h, root))
    assert preview.shape == original.shape
    logo, elsewhere = inside(LOGO), ~inside((0.2, 0.2, 0.55, 0.55))
    assert abs(preview[logo].mean() - original[logo].mean()) < 4
    assert preview[elsewhere].mean() < 0.45 * original[elsewhere].mean()
    assert segmenter.threads and all(t.startswith("pix2chat-model") for t in segmenter.threads)

    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")  # still kept: the region persists
    parent = original
    for version_id in (first, second):
        result = pixels(await image_of(h, version_id))
        assert result.shape == parent.shape
        assert np.array_equal(result[logo], original[logo])  # exactly the photo's pixels
        assert np.count_nonzero(np.any(result[~inside(LOGO)] != parent[~inside(LOGO)], axis=-1)) > (
            0.5 * np.count_nonzero(~inside(LOGO))
        )  # the rest was edited
        (row,) = await regions_of(h, version_id)
        assert (row.kind, row.text) == ("keep", "the logo")
        assert row.mask_sha is not None
        stored = np.asarray(open_image(h.images.get(row.mask_sha)).convert("L")) > 0
        assert np.array_equal(stored, logo)  # the mask used, at the parent's size
        parent = result


async def test_only_confines_edits_and_off_lifts_it(h: Harness) -> None:
    root = (await h.upload(ALICE, photo(SIZE))).version_id
    assert root is not None
    reply = await h.service.only(ALICE, "“the shoe”")  # quotes are not part of the words
    assert reply.kind is ReplyKind.REGION, reply
    assert reply.args["text"] == "the shoe"

    edited = await h.edit(ALICE, "make it red")
    original, result = pixels(await image_of(h, root)), pixels(await image_of(h, edited))
    outside = ~inside(SHOE)
    assert np.array_equal(result[outside], original[outside])
    core = inside((0.6, 0.6, 0.95, 0.95))  # inside, away from the feathered edge
    assert np.all(np.any(result[core] != original[core], axis=-1))

    off = await h.service.only(ALICE, "off")
    assert not off.is_error and "the shoe" in off.text()
    assert (await h.service.only(ALICE, "off")).key == "region.was_off"
    free = await h.edit(ALICE, "make it blue")
    assert await regions_of(h, free) == []
    before, after = pixels(await image_of(h, edited)), pixels(await image_of(h, free))
    assert np.any(before[outside] != after[outside])  # the whole photo may change again


async def test_keep_wins_where_keep_and_only_overlap(h: Harness) -> None:
    root = (await h.upload(ALICE, photo(SIZE))).version_id
    assert root is not None
    assert not (await h.service.only(ALICE, "the background")).is_error
    both = await h.service.keep(ALICE, "the logo")
    assert "keeping wins" in both.text()

    listing = await h.service.show_regions(ALICE)
    text = listing.text()
    assert "the logo" in text and "the background" in text and "keeping wins" in text

    edited = await h.edit(ALICE, "make it night")
    original, result = pixels(await image_of(h, root)), pixels(await image_of(h, edited))
    logo, background = inside(LOGO), inside(BACKGROUND)
    assert np.array_equal(result[logo], original[logo])  # inside both: kept
    assert np.array_equal(result[~background], original[~background])  # outside only: kept
    editable = inside((0.05, 0.6, 0.7, 0.95))  # in the background, clear of the logo
    assert np.all(np.any(result[editable] != original[editable], axis=-1))
    assert [(r.kind, r.text) for r in await regions_of(h, edited)] == [
        ("keep", "the logo"),
        ("only", "the background"),
    ]


@pytest.mark.parametrize(
    ("words", "key"),
    [("the unicorn", "region.not_found"), ("it all", "region.everything")],
)
async def test_a_region_that_matches_nothing_or_everything_changes_nothing(
    h: Harness, words: str, key: str
) -> None:
    await h.upload(ALICE, photo(SIZE))
    assert not (await h.service.keep(ALICE, "the logo")).is_error
    for command in (h.service.keep, h.service.only):
        reply = await command(ALICE, words)
        assert reply.is_error and reply.key == key, reply
        assert f"“{words}”" in reply.text()
    if key == "region.not_found":
        assert "I couldn't find “the unicorn” in this photo" in reply.text()
    listing = (await h.service.show_regions(ALICE)).text()
    assert "the logo" in listing and words not in listing  # the old region stands
    edited = await h.edit(ALICE, "make it night")  # the conversation goes on
    assert [(r.kind, r.text) for r in await regions_of(h, edited)] == [("keep", "the logo")]


@pytest.mark.parametrize("words", ["", "   ", "“”", None])
async def test_an_empty_region_gets_the_usage(h: Harness, words: str | None) -> None:
    await h.upload(ALICE, photo(SIZE))
    for command in (h.service.keep, h.service.only):
        reply = await command(ALICE, words)
        assert reply.is_error and reply.key == "region.usage", reply
        assert "/keep the logo" in reply.text()
    assert (await h.service.show_regions(ALICE)).key == "region.none"


async def test_too_long_or_too_early_regions_are_refused(h: Harness) -> None:
    early = await h.service.keep(ALICE, "the logo")
    assert early.is_error and early.key == "error.no_image"
    await h.upload(ALICE, photo(SIZE))
    long = await h.service.keep(ALICE, "the logo " * 20)
    assert long.is_error and long.key == "region.too_long"
    assert "100" in long.text()


async def test_regions_belong_to_their_conversation(h: Harness) -> None:
    await h.upload(ALICE, photo(SIZE))
    await h.upload(BOB, photo(SIZE, shade=90))
    assert not (await h.service.keep(ALICE, "the logo")).is_error
    assert (await h.service.show_regions(BOB)).key == "region.none"
    bobs = await h.edit(BOB, "make it night")
    assert await regions_of(h, bobs) == []
    assert (await h.service.keep(BOB, "off")).key == "region.was_off"
    assert "the logo" in (await h.service.show_regions(ALICE)).text()


async def test_regenerate_reuses_the_regions_of_the_edit_it_repeats(h: Harness) -> None:
    root = (await h.upload(ALICE, photo(SIZE))).version_id
    assert root is not None
    await h.service.keep(ALICE, "the logo")
    first = await h.edit(ALICE, "make it night")
    await h.service.keep(ALICE, "off")
    again = await h.service.regenerate(ALICE, first)
    assert again.version_id is not None
    await h.recorder.done(again.version_id)
    assert [(r.kind, r.text) for r in await regions_of(h, again.version_id)] == [
        ("keep", "the logo")
    ]
    original, result = pixels(await image_of(h, root)), pixels(await image_of(h, again.version_id))
    assert np.array_equal(result[inside(LOGO)], original[inside(LOGO)])


async def test_forget_deletes_the_stored_masks(h: Harness) -> None:
    await h.upload(ALICE, photo(SIZE))
    await h.service.keep(ALICE, "the logo")
    await h.service.only(ALICE, "the background")
    edited = await h.edit(ALICE, "make it night")
    masks = [row.mask_sha for row in await regions_of(h, edited)]
    assert len(masks) == 2 and all(masks)
    for sha in masks:
        assert sha is not None
        h.images.get(sha)  # stored

    reply = await h.service.forget(ALICE)
    assert reply.key == "forget.done"
    for sha in masks:
        assert sha is not None
        with pytest.raises(ImageMissing):
            h.images.get(sha)
    async with h.database.read() as session:
        assert (await session.scalars(select(VersionRegion))).all() == []
        assert (await session.scalars(select(ConversationRegion))).all() == []


async def test_without_a_segmenter_regions_are_unavailable(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        await h.upload(ALICE, photo(SIZE))
        reply = await h.service.keep(ALICE, "the logo")
        assert reply.is_error and reply.key == "region.unavailable"


def test_box_segmenter_is_exact() -> None:
    """The double the tests above rely on paints exactly its box, at the size asked."""
    segmenter = BoxSegmenter({"the logo": LOGO})
    image = Image.new("RGB", (64, 48))
    logo, nothing = segmenter.masks(image, ["The Logo", "else"], size=SIZE)
    assert logo.size == SIZE and np.array_equal(np.asarray(logo) > 0, inside(LOGO))
    assert not np.asarray(nothing).any()
    assert segmenter.threads == [threading.current_thread().name]


async def test_a_region_missing_from_a_new_photo_does_not_block_its_edits(
    h: Harness, segmenter: BoxSegmenter
) -> None:
    await h.upload(ALICE, photo(SIZE))
    assert not (await h.service.only(ALICE, "the shoe")).is_error
    # A new photo: the segmenter no longer finds the shoe anywhere.
    root = (await h.upload(ALICE, photo(SIZE, shade=120))).version_id
    assert root is not None
    segmenter.boxes.pop("the shoe")
    edited = await h.edit(ALICE, "make it red")
    original, result = pixels(await image_of(h, root)), pixels(await image_of(h, edited))
    assert np.any(result[~inside(SHOE)] != original[~inside(SHOE)])  # edited, not blocked
    (row,) = await regions_of(h, edited)
    assert (row.kind, row.text, row.mask_sha) == ("only", "the shoe", None)  # not applied


async def test_a_segmenter_that_cannot_load_is_a_plain_refusal(
    sqlite_url: str, images_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = ClipSegSegmenter(str(tmp_path / "no-such-model"), device="cpu")
    async with running_service(sqlite_url, images_dir, segmenter=missing) as h:
        await h.upload(ALICE, photo(SIZE))
        reply = await h.service.keep(ALICE, "the logo")
        assert reply.is_error and reply.key == "region.unavailable"
        assert "PIX2CHAT_SEGMENTER_MODEL" in caplog.text and "no-such-model" in caplog.text
        assert (await h.service.show_regions(ALICE)).key == "region.none"
        await h.edit(ALICE, "make it night")  # the conversation goes on


async def test_a_recipe_records_each_steps_regions_and_replays_them_on_new_photos(
    h: Harness,
) -> None:
    await h.upload(ALICE, photo(SIZE))
    await h.edit(ALICE, "make it night")  # no region yet
    assert not (await h.service.keep(ALICE, "the logo")).is_error
    await h.edit(ALICE, "add snow")
    saved = await h.service.recipe(ALICE, ["save", "winter"])
    assert saved.key == "recipe.saved", saved
    shown = (await h.service.recipe(ALICE, ["show", "winter"])).text()
    assert "the logo" in shown

    # Replayed on a new photo: the second step is made with "keep the logo", masked there.
    assert not (await h.service.keep(ALICE, "off")).is_error  # what is in force now is no matter
    new = photo(SIZE, shade=90)
    started = await h.service.apply_recipe(ALICE, "winter", [Photo("shoe.jpg", new)])
    assert started.kind is ReplyKind.BATCH_STATUS, started
    async with h.database.read() as session:
        run = (await session.scalars(select(RecipeRun))).one()
    (chain,) = [entry["versions"] for entry in run.items["photos"]]
    await _batch_result(h)  # a batch reports once, when every photo is done
    first, second = chain
    assert await regions_of(h, first) == []
    (row,) = await regions_of(h, second)
    assert (row.kind, row.text, row.mask_sha is not None) == ("keep", "the logo", True)
    parent = pixels(await image_of(h, first))
    result = pixels(await image_of(h, second))
    assert np.array_equal(result[inside(LOGO)], parent[inside(LOGO)])  # kept bit for bit


async def _batch_result(h: Harness) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            if any(reply.kind is ReplyKind.BATCH_RESULT for _, reply in h.recorder.replies):
                return
            await asyncio.sleep(0.01)
