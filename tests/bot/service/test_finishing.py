"""/upscale, /cutout and /white through the service and the embedded scheduler, with tiny
models: new versions in the history, one edit each, bad input answered in words."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bot.service.replies import Action
from editor.finishing.finisher import Finisher
from editor.finishing.matting import Matting
from editor.finishing.provenance import Provenance, verify
from editor.finishing.upscale import Upscaler
from storage.models import UserLimit
from tests.bot.service.harness import (
    ALICE,
    BOB,
    Harness,
    assert_friendly,
    open_image,
    photo,
    running_service,
)


def product(size: tuple[int, int] = (64, 48)) -> bytes:
    """A red product on a green ground, as a PNG (the tiny matting model's subject)."""
    image = Image.new("RGB", size, (20, 190, 40))
    w, h = size
    image.paste((220, 30, 30), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def plain(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def h(
    sqlite_url: str, tmp_path: Path, tiny_finisher: Finisher, provenance: Provenance
) -> AsyncIterator[Harness]:
    async with running_service(
        sqlite_url, tmp_path / "images", finisher=tiny_finisher, provenance=provenance
    ) as harness:
        yield harness


async def finished(h: Harness, reply_version: int | None) -> tuple[int, str]:
    assert reply_version is not None
    result = await h.recorder.result(reply_version)
    return reply_version, result.key


async def quota_used(h: Harness, user: str = "alice") -> int:
    async with h.database.read() as session:
        row = await session.scalar(select(UserLimit).where(UserLimit.user_id == user))
    return row.quota_used if row is not None else 0


async def test_upscale_is_a_new_version_with_twice_the_pixels(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    reply = await h.service.upscale(ALICE)

    assert reply.key in ("finish.queued", "finish.queued_next") and "/upscale 2x" in reply.text()
    assert reply.actions == (Action.CANCEL,)
    version_id, key = await finished(h, reply.version_id)
    assert key == "finish.done_upscale"
    done = await h.recorder.result(version_id)
    assert (
        done.show_image and Action.UNDO in done.actions and Action.FULL_RESOLUTION in done.actions
    )
    assert open_image(await h.service.image(ALICE, version_id, full=True)).size == (128, 96)
    history = await h.history(ALICE)
    assert [(e.version_id, e.instruction) for e in history] == [
        (root, None),
        (version_id, "/upscale 2x"),
    ]
    assert history[-1].is_head
    assert (await h.service.undo(ALICE)).version_id == root
    assert await quota_used(h) == 1  # counted as one edit


async def test_upscale_4x_with_a_2x_model(h: Harness) -> None:
    await h.upload(ALICE)
    version_id, key = await finished(h, (await h.service.upscale(ALICE, "4x")).version_id)
    assert key == "finish.done_upscale"
    assert open_image(await h.service.image(ALICE, version_id, full=True)).size == (256, 192)


async def test_edit_results_offer_an_upscale_button(h: Harness) -> None:
    await h.upload(ALICE)
    edit = await h.edit(ALICE, "make it night")
    done = await h.recorder.result(edit)
    assert Action.UPSCALE in done.actions
    reply = await h.service.upscale(ALICE, None, edit)  # the button names its version
    assert (await h.version(reply.version_id or 0)).parent_id == edit


async def test_a_bad_scale_is_refused_in_words(h: Harness) -> None:
    await h.upload(ALICE)
    before = await h.count_versions()
    text = assert_friendly(await h.service.upscale(ALICE, "3x"))
    assert "4x" in text
    assert await h.count_versions() == before


async def test_upscale_of_an_image_at_the_cap_is_refused(
    sqlite_url: str, tmp_path: Path, tiny_finisher: Finisher
) -> None:
    async with running_service(
        sqlite_url, tmp_path / "images", finisher=tiny_finisher, max_stored_pixels=64 * 48
    ) as h:
        await h.upload(ALICE)
        reply = await h.service.upscale(ALICE)
        assert reply.key == "error.upscale_at_cap"
        assert "64x48" in assert_friendly(reply)
        assert await quota_used(h) == 0


async def test_a_capped_upscale_says_so(
    sqlite_url: str, tmp_path: Path, tiny_finisher: Finisher
) -> None:
    async with running_service(
        sqlite_url, tmp_path / "images", finisher=tiny_finisher, max_stored_pixels=8_000
    ) as h:
        await h.upload(ALICE)
        reply = await h.service.upscale(ALICE, "4x")
        assert "capped" in reply.text()
        version_id, key = await finished(h, reply.version_id)
        assert key == "finish.done_upscale"
        width, height = open_image(await h.service.image(ALICE, version_id, full=True)).size
        assert width * height <= 8_000 and width > 64


async def test_cutout_is_an_rgba_png_document(h: Harness) -> None:
    await h.upload(ALICE, product())
    version_id, key = await finished(h, (await h.service.cutout(ALICE)).version_id)

    assert key == "finish.done_cutout"
    done = await h.recorder.result(version_id)
    assert done.document and done.show_image
    full = open_image(await h.service.image(ALICE, version_id, full=True))
    assert full.format == "PNG" and full.mode == "RGBA"
    alpha = np.asarray(full.getchannel("A"))
    assert alpha[0].max() == 0 and alpha[:, 0].max() == 0 and alpha[24, 32] > 240


async def test_the_chat_copy_of_a_cutout_is_on_a_light_background(h: Harness) -> None:
    await h.upload(ALICE, product())
    version_id, _ = await finished(h, (await h.service.cutout(ALICE)).version_id)
    chat = open_image(await h.service.image(ALICE, version_id))
    assert chat.format == "JPEG"
    corner = np.asarray(chat.convert("RGB"))[:6, :6]
    assert corner.min() > 200  # not the black a dropped alpha channel would show


async def test_cutout_without_a_subject_says_so_and_gives_the_edit_back(h: Harness) -> None:
    await h.upload(ALICE, plain())
    reply = await h.service.cutout(ALICE)
    version_id, key = await finished(h, reply.version_id)

    assert key == "error.no_subject"
    assert "subject" in assert_friendly(await h.recorder.result(version_id))
    assert await quota_used(h) == 0
    version_id, key = await finished(h, (await h.service.upscale(ALICE)).version_id)
    assert key == "finish.done_upscale"  # still usable


async def test_white_has_a_pure_white_border(h: Harness) -> None:
    await h.upload(ALICE, product())
    version_id, key = await finished(h, (await h.service.white(ALICE)).version_id)
    assert key == "finish.done_white"
    pixels = np.asarray(
        open_image(await h.service.image(ALICE, version_id, full=True)).convert("RGB")
    )
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    assert (border == 255).all()


async def test_white_square_is_one_to_one(h: Harness) -> None:
    await h.upload(ALICE, product((80, 40)))
    version_id, _ = await finished(h, (await h.service.white(ALICE, square=True)).version_id)
    width, height = open_image(await h.service.image(ALICE, version_id, full=True)).size
    assert width == height


async def test_white_on_a_cutout_uses_its_transparency(h: Harness) -> None:
    await h.upload(ALICE, product())
    cut, _ = await finished(h, (await h.service.cutout(ALICE)).version_id)
    reply = await h.service.white(ALICE)
    assert "already a cut-out" in reply.text()
    version_id, key = await finished(h, reply.version_id)
    assert key == "finish.done_white"
    assert (await h.version(version_id)).parent_id == cut
    pixels = np.asarray(
        open_image(await h.service.image(ALICE, version_id, full=True)).convert("RGB")
    )
    assert (pixels[0] == 255).all()


async def test_full_resolution_carries_provenance(h: Harness) -> None:
    root = (await h.upload(ALICE, photo((320, 256)))).version_id
    edit = await h.edit(ALICE, "make it night")

    signed = await h.service.image(ALICE, edit, full=True)
    findings = verify(signed)
    assert findings.manifest is not None and findings.watermark
    assert await h.service.image(ALICE, edit, full=True) == signed  # stamped once, kept
    assert any("edited by instruction" in action for action in findings.actions)
    # The user's own photo is sent as it is.
    assert verify(await h.service.image(ALICE, root, full=True)).manifest is None


async def test_nobody_finishes_another_users_version(h: Harness) -> None:
    await h.upload(BOB)
    mine = (await h.upload(ALICE)).version_id
    reply = await h.service.upscale(BOB, None, mine)
    assert reply.key == "error.version_not_found"
    reply = await h.service.cutout(BOB, mine)
    assert reply.key == "error.version_not_found"


async def test_missing_weights_name_the_setting(
    sqlite_url: str, tmp_path: Path, tiny_matting: Path
) -> None:
    broken = Finisher(Upscaler(str(tmp_path / "missing.pth")), Matting(str(tiny_matting)))
    async with running_service(sqlite_url, tmp_path / "images", finisher=broken) as h:
        await h.upload(ALICE)
        version_id, key = await finished(h, (await h.service.upscale(ALICE)).version_id)
        assert key == "error.upscaler_unavailable"
        text = assert_friendly(await h.recorder.result(version_id))
        assert "PIX2CHAT_UPSCALER_MODEL" in text
        assert await quota_used(h) == 0
        await h.edit(ALICE, "make it night")  # edits still work


async def test_without_the_extra_the_reply_names_it(
    sqlite_url: str, tmp_path: Path, tiny_finisher: Finisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rembg", None)
    fresh = Finisher(tiny_finisher.upscaler, Matting(tiny_finisher.matting.source))
    async with running_service(sqlite_url, tmp_path / "images", finisher=fresh) as h:
        await h.upload(ALICE, product())
        version_id, key = await finished(h, (await h.service.cutout(ALICE)).version_id)
        assert key == "error.finishing_not_installed"
        assert "pix2chat[finishing]" in assert_friendly(await h.recorder.result(version_id))


async def test_typed_commands_reach_the_same_operations(h: Harness) -> None:
    await h.upload(ALICE, product())
    assert await h.service.finishing_command(ALICE, "make it night") is None
    reply = await h.service.finishing_command(ALICE, "/white square")
    assert (
        reply is not None
        and reply.key in ("finish.queued", "finish.queued_next")
        and "/white square" in reply.text()
    )


async def test_regenerate_of_an_upscale_upscales_again(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first, _ = await finished(h, (await h.service.upscale(ALICE)).version_id)
    reply = await h.service.regenerate(ALICE, first)
    again, key = await finished(h, reply.version_id)

    assert key == "finish.done_upscale"  # not an instruction edit named "/upscale 2x"
    assert (await h.version(again)).parent_id == root
    assert open_image(await h.service.image(ALICE, again, full=True)).size == (128, 96)


async def test_variations_stronger_and_subtler_of_an_upscale_are_refused_in_words(
    h: Harness,
) -> None:
    await h.upload(ALICE, product())
    upscaled, _ = await finished(h, (await h.service.upscale(ALICE)).version_id)
    versions = await h.count_versions()
    for ask in (h.service.variations, h.service.stronger, h.service.subtler):
        reply = await ask(ALICE, upscaled)
        assert reply.key == "error.nothing_to_vary", reply
        assert "upscale" in assert_friendly(reply)
    assert await h.count_versions() == versions  # nothing queued
