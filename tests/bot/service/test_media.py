"""Pictures: uploads stored losslessly at their own size (up to a cap), results as PNG, chat copies as JPEG, and
only for their owner."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from storage.errors import VersionNotFound
from tests.bot.service.harness import (
    ALICE,
    BOB,
    Harness,
    open_image,
    photo,
    running_service,
)


async def test_image_of_another_users_version_is_not_found(h: Harness) -> None:
    alice_root = (await h.upload(ALICE)).version_id
    assert alice_root is not None
    alice_edit = await h.edit(ALICE, "make it night")
    await h.upload(BOB, photo(shade=99))
    for version_id in (alice_root, alice_edit, 987_654):
        with pytest.raises(VersionNotFound):
            await h.service.image(BOB, version_id)
        with pytest.raises(VersionNotFound):
            await h.service.image(BOB, version_id, full=True)
    assert await h.service.image(ALICE, alice_edit)


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge(
        "RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90).resize(size), gradient)
    )
    if mode == "RGBA":
        image.putalpha(128)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def test_upload_is_stored_losslessly_as_rgb_png_at_its_own_size(h: Harness) -> None:
    reply = await h.upload(ALICE, _png((3000, 2000), "RGBA"))
    assert reply.version_id is not None
    assert reply.key == "photo.received" and "MP" not in reply.text()  # nothing downscaled

    stored = open_image(await h.service.image(ALICE, reply.version_id, full=True))
    assert (stored.format, stored.mode, stored.size) == ("PNG", "RGB", (3000, 2000))
    preview = open_image(await h.service.image(ALICE, reply.version_id))
    assert preview.format == "JPEG"


async def test_a_2400x1600_upload_is_kept_at_2400x1600(h: Harness) -> None:
    original = _png((2400, 1600))
    reply = await h.upload(ALICE, original)
    assert reply.version_id is not None

    stored = open_image(await h.service.image(ALICE, reply.version_id, full=True))
    assert (stored.format, stored.size) == ("PNG", (2400, 1600))
    assert stored.tobytes() == open_image(original).convert("RGB").tobytes()  # lossless
    assert (
        (await h.version(reply.version_id)).width,
        (await h.version(reply.version_id)).height,
    ) == (2400, 1600)


async def test_an_upload_over_the_stored_pixel_cap_is_downscaled_once_and_the_reply_says_so(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "images", max_stored_pixels=24_000_000) as h:
        reply = await h.upload(ALICE, _png((6000, 5000)))  # 30 MP
        assert reply.version_id is not None
        stored = open_image(await h.service.image(ALICE, reply.version_id, full=True))
        width, height = stored.size
        assert width * height <= 24_000_000
        assert width * height > 23_900_000  # no more than needed
        assert abs(width / height - 6000 / 5000) < 0.001  # aspect kept
        assert reply.key == "photo.received"
        assert reply.text().endswith(
            f"Your photo was larger than 24 MP, so I keep it at {width}x{height}."
        )

        # With a caption, the note comes with the queued edit's reply.
        captioned = await h.service.receive_image(ALICE, _png((6000, 5000)), caption="add snow")
        assert captioned.key in ("edit.queued", "edit.queued_next"), captioned
        assert f"so I keep it at {width}x{height}." in captioned.text()


async def test_the_chat_copy_of_a_24_mp_image_is_small_enough_for_every_chat(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "images") as h:
        reply = await h.upload(ALICE, _png((6000, 4000)))  # 24 MP, kept as it is
        assert reply.version_id is not None
        full = open_image(await h.service.image(ALICE, reply.version_id, full=True))
        assert full.size == (6000, 4000)
        copy_data = await h.service.image(ALICE, reply.version_id)
    copy = open_image(copy_data)
    assert copy.format == "JPEG"
    assert max(copy.size) <= 2560 and copy.size == (2560, 1707)
    assert sum(copy.size) <= 10_000 and len(copy_data) <= 10 * 1024 * 1024  # a Telegram photo


async def test_small_upload_keeps_its_exact_pixels(h: Harness) -> None:
    original = photo((200, 150), shade=77, fmt="PNG")
    reply = await h.upload(ALICE, original)
    assert reply.version_id is not None

    stored = open_image(await h.service.image(ALICE, reply.version_id, full=True))
    assert stored.format == "PNG"
    assert stored.tobytes() == open_image(original).convert("RGB").tobytes()


async def test_edit_results_are_stored_as_png(h: Harness) -> None:
    await h.upload(ALICE, photo((320, 240)))
    edit = await h.edit(ALICE, "make it night")

    result = open_image(await h.service.image(ALICE, edit, full=True))
    assert (result.format, result.size) == ("PNG", (320, 240))  # developed: the photo's size
    assert open_image(await h.service.image(ALICE, edit)).format == "JPEG"


async def test_with_develop_off_edit_results_are_the_working_size_output(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "images", develop=False) as h:
        await h.upload(ALICE, photo((320, 240)))
        edit = await h.edit(ALICE, "make it night")
        result = open_image(await h.service.image(ALICE, edit, full=True))
        assert (result.format, result.size) == ("PNG", (256, 192))


async def test_thumbnails_are_decoded_once_and_only_for_their_owner(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = (await h.upload(ALICE, photo((1200, 800)))).version_id
    await h.upload(BOB, photo(shade=99))
    reads: list[str] = []
    original_get = h.images.get

    def counting_get(sha: str) -> bytes:
        reads.append(sha)
        return original_get(sha)

    monkeypatch.setattr(h.images, "get", counting_get)
    first = await h.service.thumbnail(ALICE, root)
    again = await h.service.thumbnail(ALICE, root)

    assert first == again
    assert len(reads) == 1  # the second request came from memory, not the 1200x800 PNG
    with Image.open(io.BytesIO(first)) as small:
        assert (small.format, max(small.size)) == ("JPEG", 160)
    with pytest.raises(VersionNotFound):
        await h.service.thumbnail(BOB, root)  # kept in memory, still checked per request
