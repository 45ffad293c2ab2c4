"""Admission: every refusal is polite and loses nothing (instructions, images, caps, settings,
ownership), on the running service."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.service.conversation import Admission
from bot.service.replies import Reply
from editor.images import ImageLimits
from storage.limits import LimitPolicy
from storage.types import Actor
from tests.bot.service.harness import (
    ALICE,
    BOB,
    GENEROUS,
    TIMEOUT_S,
    Harness,
    assert_friendly,
    decompression_bomb,
    photo,
    running_service,
)

# -- bad input: refused politely, nothing lost ---------------------------------------------------

Ids = dict[str, int]
Step = Callable[[Harness, Ids], Awaitable[Any]]


async def _nothing(_h: Harness, _ids: Ids) -> None:
    return None


@dataclass(frozen=True)
class Bad:
    """One refusal: the state it starts from, what the user does, what they must be told."""

    name: str
    key: str
    act: Step
    setup: str = "photo"  # "none" | "photo" | "edited"
    prepare: Step = _nothing  # after setup, before the snapshot
    recover: Step = _nothing  # after the refusal, before the follow-up edit
    options: dict[str, Any] = field(default_factory=dict)
    says: tuple[str, ...] = ()


async def _close_gate_and_queue(h: Harness, ids: Ids, actor: Actor, name: str) -> None:
    h.editor.gate.clear()
    ids[name] = await h.queue(actor, "first edit")
    # Until the scheduler claims it, the edit may turn from queued to running between the
    # test's before and after snapshots: wait until it is held at the gate.
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            if (await h.version(ids[name])).status == "running":
                return
            await asyncio.sleep(0.01)


async def _open_gate_and_wait(h: Harness, ids: Ids, name: str) -> None:
    h.editor.gate.set()
    await h.recorder.done(ids[name])


async def _advance_a_minute(h: Harness, _ids: Ids) -> None:
    h.clock.now += 60


async def _next_day(h: Harness) -> None:
    h.clock.now += 24 * 3600


def _instruct(text: str, **kwargs: Any) -> Step:
    def act(h: Harness, ids: Ids) -> Awaitable[Reply]:
        extra = {k: ids[v] if isinstance(v, str) else v for k, v in kwargs.items()}
        return h.service.instruct(ALICE, text, **extra)

    return act


def _upload(data: bytes) -> Step:
    return lambda h, _ids: h.service.receive_image(ALICE, data)


def _setting(name: str, value: Any) -> Step:
    return lambda h, _ids: h.service.update_setting(ALICE, name, value)


JPEG = photo((320, 240))

BAD_INPUT = [
    Bad("instruction before any photo", "error.no_image", _instruct("make it night"), "none"),
    Bad("empty instruction", "error.empty_instruction", _instruct("")),
    Bad("whitespace instruction", "error.empty_instruction", _instruct(" \n\t  ")),
    Bad(
        "too many tokens",
        "error.instruction_too_long",
        _instruct(" ".join(["snow"] * 76)),
        says=("76", "75"),
    ),
    Bad(
        "over 1000 characters",
        "error.instruction_too_long",
        _instruct("x" * 1001),
        says=("75",),
    ),
    Bad("undo at the root", "error.nothing_to_undo", lambda h, _: h.service.undo(ALICE)),
    Bad("undo with no conversation", "error.no_image", lambda h, _: h.service.undo(ALICE), "none"),
    Bad(
        "redo with nothing to redo",
        "error.nothing_to_redo",
        lambda h, _: h.service.redo(ALICE),
        "edited",
    ),
    Bad(
        "reset with no conversation", "error.no_image", lambda h, _: h.service.reset(ALICE), "none"
    ),
    Bad(
        "regenerate an uploaded photo",
        "error.nothing_to_regenerate",
        lambda h, _: h.service.regenerate(ALICE),
    ),
    Bad(
        "regenerate an explicit root",
        "error.nothing_to_regenerate",
        lambda h, ids: h.service.regenerate(ALICE, ids["root"]),
        "edited",
    ),
    Bad("text file", "error.image_format", _upload(b"hello, this is not a photo at all")),
    Bad(
        "pdf",
        "error.image_format",
        _upload(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"),
    ),
    Bad("empty file", "error.image_unreadable", _upload(b"")),
    Bad("truncated jpeg", "error.image_unreadable", _upload(JPEG[: len(JPEG) // 2])),
    Bad(
        "too many bytes",
        "error.image_too_large",
        _upload(b"\xff\xd8\xff" + bytes(600_000)),
        options={"image_limits": ImageLimits(max_bytes=512 * 1024)},
        says=("0.5 MB",),
    ),
    Bad(
        "decompression bomb",
        "error.image_too_large",
        _upload(decompression_bomb()),
        says=("40 megapixels",),
    ),
    Bad(
        "rate limited",
        "error.rate_limited",
        _instruct("add snow"),
        "edited",
        recover=_advance_a_minute,
        options={"admission": Admission(rate=LimitPolicy(burst=1, per_minute=1.0))},
        says=("60 seconds",),
    ),
    Bad(
        "daily quota",
        "error.quota_exceeded",
        _instruct("add snow"),
        "edited",
        recover=lambda h, _ids: _next_day(h),
        options={"admission": Admission(rate=LimitPolicy(burst=10, daily_quota=1))},
        says=("1 edit",),
    ),
    Bad(
        "queue full",
        "error.queue_full",
        _instruct("add snow"),
        prepare=lambda h, ids: _close_gate_and_queue(h, ids, BOB, "bob_edit"),
        recover=lambda h, ids: _open_gate_and_wait(h, ids, "bob_edit"),
        options={"admission": dataclasses.replace(GENEROUS, queue_cap=1)},
    ),
    Bad(
        "too many pending",
        "error.too_many_pending",
        _instruct("add snow"),
        prepare=lambda h, ids: _close_gate_and_queue(h, ids, ALICE, "pending"),
        recover=lambda h, ids: _open_gate_and_wait(h, ids, "pending"),
        options={"admission": dataclasses.replace(GENEROUS, max_pending_per_user=1)},
        says=("1 edit",),
    ),
    Bad("steps 0", "error.invalid_setting", _setting("steps", 0), says=("1 to 100",)),
    Bad("steps 500", "error.invalid_setting", _setting("steps", 500), says=("1 to 100",)),
    Bad("steps abc", "error.invalid_setting", _setting("steps", "abc")),
    Bad("resolution 500", "error.invalid_setting", _setting("resolution", 500), says=("512",)),
    Bad("seed mode sometimes", "error.invalid_setting", _setting("seed_mode", "sometimes")),
    Bad("unknown setting", "error.unknown_setting", _setting("colour", "red"), says=("colour",)),
    Bad(
        "branch from another user's version",
        "error.version_not_found",
        _instruct("add snow", base_version_id="bob_root"),
    ),
    Bad(
        "branch from a version that never existed",
        "error.version_not_found",
        _instruct("add snow", base_version_id=987_654),
    ),
    Bad(
        "regenerate another user's version",
        "error.version_not_found",
        lambda h, ids: h.service.regenerate(ALICE, ids["bob_edit"]),
    ),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[case.name for case in BAD_INPUT])
async def test_bad_input_is_refused_politely_and_loses_nothing(
    case: Bad, sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir, **case.options) as h:
        ids: Ids = {}
        ids["bob_root"] = (await h.upload(BOB, photo(shade=200))).version_id or 0
        ids["bob_edit"] = await h.edit(BOB, "make it night")
        if case.setup != "none":
            ids["root"] = (await h.upload(ALICE)).version_id or 0
        if case.setup == "edited":
            ids["edit"] = await h.edit(ALICE, "make it night")
        await case.prepare(h, ids)
        before = (await h.service.history(ALICE), await h.service.settings(ALICE))
        versions = await h.count_versions()

        reply = await case.act(h, ids)

        assert reply.key == case.key, reply
        text = assert_friendly(reply)
        for words in case.says:
            assert words in text, text
        assert (await h.service.history(ALICE), await h.service.settings(ALICE)) == before
        assert await h.count_versions() == versions

        await case.recover(h, ids)
        if case.setup == "none":
            await h.upload(ALICE)
        follow_up = await h.edit(ALICE, "add a rainbow")
        assert (await h.history(ALICE))[-1].instruction == "add a rainbow"
        assert await h.head(ALICE) == follow_up


async def test_refused_caption_keeps_the_photo(h: Harness) -> None:
    reply = await h.service.receive_image(ALICE, photo(), caption="x" * 1001)
    assert reply.key == "error.instruction_too_long"
    assert_friendly(reply)
    assert reply.version_id is not None
    assert await h.path(ALICE) == [reply.version_id]
    await h.edit(ALICE, "make it night")
