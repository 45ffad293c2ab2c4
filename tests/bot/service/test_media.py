"""Pictures: uploads stored losslessly (and capped), results as PNG, chat copies as JPEG, and
only for their owner."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storage.errors import VersionNotFound
from tests.bot.service.harness import (
    ALICE,
    BOB,
    Harness,
    open_image,
    photo,
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


async def test_upload_is_stored_losslessly_as_rgb_png_and_capped(h: Harness) -> None:
    big = Image.new("RGBA", (3000, 2000), (10, 200, 30, 128))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    reply = await h.upload(ALICE, buffer.getvalue())
    assert reply.version_id is not None

    stored = open_image(await h.service.image(ALICE, reply.version_id, full=True))
    assert (stored.format, stored.mode, stored.size) == ("PNG", "RGB", (1536, 1024))
    preview = open_image(await h.service.image(ALICE, reply.version_id))
    assert preview.format == "JPEG"


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
    assert (result.format, result.size) == ("PNG", (256, 192))
    assert open_image(await h.service.image(ALICE, edit)).format == "JPEG"
