"""/keep, /only, /regions on Telegram end to end: the real python-telegram-bot code against the
fake Bot API, the production graph (`bot.app.build`) with the masks coming from a tiny random
CLIPSeg loaded through the production loader (PIX2CHAT_SEGMENTER_MODEL=<its folder>)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from bot.app import Components
from editor.testing.doubles import NullEditor
from storage.models import Version, VersionRegion
from tests.bot.telegram.test_telegram import (
    ALICE,
    api,  # noqa: F401 (the fake Bot API fixture)
    button_data,
    jpeg,
    next_photo,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


async def stored(components: Components, version_id: int) -> tuple[np.ndarray, list[VersionRegion]]:
    """A version's stored pixels and the regions it was made with."""
    async with components.database.read() as session:
        version = await session.get(Version, version_id)
        assert version is not None and version.image_sha is not None
        rows = (
            await session.scalars(
                select(VersionRegion).where(VersionRegion.version_id == version_id)
            )
        ).all()
    return decode(components.images.get(version.image_sha)), sorted(rows, key=lambda r: r.kind)


async def latest_versions(components: Components) -> list[Version]:
    async with components.database.read() as session:
        return list((await session.scalars(select(Version).order_by(Version.id))).all())


async def test_keep_and_only_on_telegram_with_the_tiny_clipseg(
    api: FakeBotAPI,  # noqa: F811
    tmp_path: Path,
    tiny_clipseg_dir: Path,
) -> None:
    settings = {"segmenter_model": str(tiny_clipseg_dir), "device": "cpu"}
    async with running_bot(api, tmp_path / "data", NullEditor(), **settings) as components:
        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg((320, 240)))
        await next_text(api, ALICE, since)
        masker = components.service.regions.masker
        assert masker is not None
        assert not getattr(masker.segmenter, "loaded")  # noqa: B009 (not loaded at start-up)

        # An empty /keep explains itself; nothing is set.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/keep")
        assert "/keep the logo" in await next_text(api, ALICE, since)

        # /keep the logo: the answer is the photo with the outside dimmed.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/keep the logo")
        preview = await next_photo(api, ALICE, since)
        assert "the logo" in (preview.caption or "") and "/keep off" in (preview.caption or "")
        assert decode(api.photo_bytes(preview)).shape == (240, 320, 3)

        night = await result_of(api, ALICE, ALICE, "make it night")
        assert "make it night" in (night.caption or "")
        root, edit = (await latest_versions(components))[:2]
        original, _ = await stored(components, root.id)
        result, (region,) = await stored(components, edit.id)
        assert (region.kind, region.text) == ("keep", "the logo") and region.mask_sha
        kept = decode(components.images.get(region.mask_sha))[..., 0] > 0
        assert kept.shape == (240, 320)
        assert 0.01 < kept.mean() < 0.99  # the tiny model found a part, not nothing or all
        assert np.array_equal(result[kept], original[kept])  # bit-identical where kept
        assert np.any(result[~kept] != original[~kept])

        # Full resolution sends exactly those pixels, losslessly.
        since = len(api.calls)
        api.press_button(ALICE, ALICE, night.message_id, button_data(night, "full"))
        document = await api.wait_for("sendDocument", since=since)
        png = document.files[next(iter(document.files))]
        assert np.array_equal(decode(png), result)

        # /only as well: /regions lists both, and says keep wins.
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/only the background")
        only_preview = await next_photo(api, ALICE, since)
        assert "keeping wins" in (only_preview.caption or "")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/regions")
        listing = await next_text(api, ALICE, since)
        assert "the logo" in listing and "the background" in listing

        await result_of(api, ALICE, ALICE, "add snow")
        snow = (await latest_versions(components))[-1]
        snowy, regions = await stored(components, snow.id)
        assert [(r.kind, r.text) for r in regions] == [
            ("keep", "the logo"),
            ("only", "the background"),
        ]
        keep_mask = decode(components.images.get(regions[0].mask_sha or ""))[..., 0] > 0
        only_mask = decode(components.images.get(regions[1].mask_sha or ""))[..., 0] > 0
        frozen = keep_mask | ~only_mask
        assert np.array_equal(snowy[frozen], result[frozen])

        # Both off: the next edit is free again.
        for command in ("/keep off", "/only off"):
            since = len(api.calls)
            api.send_text(ALICE, ALICE, command)
            assert "no longer" in await next_text(api, ALICE, since)
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "/regions")
        assert "No regions" in await next_text(api, ALICE, since)
