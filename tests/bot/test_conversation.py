"""The conversation service on SQLite with the NullEditor: every rule, no model, in seconds.

Each test drives the service the way a frontend does (one call per user action, results through
`subscribe`) with the real embedded scheduler, database and image store underneath, so what is
checked is what users get, including across a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.service.conversation import Admission, ConversationService
from bot.service.replies import Action, HistoryEntry, Reply
from bot.work.scheduler import EmbeddedScheduler
from editor.errors import UserError
from editor.images import ImageLimits
from editor.params import EditParams
from editor.testing.doubles import GatedEditor
from storage.database import Database
from storage.errors import VersionNotFound
from storage.images import FileImageStore
from storage.limits import LimitPolicy
from storage.models import Version
from storage.types import Actor

PLATFORM = "telegram"
ALICE = Actor(PLATFORM, "group-1", "alice")
BOB = Actor(PLATFORM, "group-1", "bob")  # same group chat, a conversation of his own
ALICE_DM = Actor(PLATFORM, "alice-dm", "alice")

DEFAULTS = EditParams(num_inference_steps=3, resolution=256)
GENEROUS = Admission(rate=LimitPolicy(burst=100, per_minute=600.0, daily_quota=0))
TIMEOUT_S = 10.0


# -- test doubles ------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand (rate limits refill with it)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Collects what the service publishes, and waits for a version's result."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.replies: list[tuple[Actor, Reply]] = []
        self.timeout_s = timeout_s
        self._changed = asyncio.Event()

    async def __call__(self, actor: Actor, reply: Reply) -> None:
        self.replies.append((actor, reply))
        self._changed.set()

    def results(self, version_id: int) -> list[tuple[Actor, Reply]]:
        return [
            (actor, reply)
            for actor, reply in self.replies
            if reply.version_id == version_id and reply.key not in ("edit.progress", "edit.preview")
        ]

    def progress(self, version_id: int) -> list[tuple[int, int]]:
        """(step, total) of every progress reply of `version_id`, in order."""
        return [
            (reply.args["step"], reply.args["total"])
            for _, reply in self.replies
            if reply.version_id == version_id and reply.key == "edit.progress"
        ]

    async def result(self, version_id: int) -> Reply:
        """The edit.done or failure reply of `version_id` (fails the test after a timeout)."""
        async with asyncio.timeout(self.timeout_s):
            while True:
                found = self.results(version_id)
                if found:
                    return found[-1][1]
                self._changed.clear()
                await self._changed.wait()

    async def done(self, version_id: int) -> Reply:
        reply = await self.result(version_id)
        assert reply.key == "edit.done", reply
        return reply


@dataclass
class Harness:
    database: Database
    images: FileImageStore
    editor: GatedEditor
    scheduler: EmbeddedScheduler
    service: ConversationService
    recorder: Recorder
    clock: Clock

    async def upload(self, actor: Actor, data: bytes | None = None, **kwargs: Any) -> Reply:
        reply = await self.service.receive_image(actor, data or photo(), **kwargs)
        assert not reply.is_error, reply
        assert reply.version_id is not None
        return reply

    async def queue(self, actor: Actor, text: str, **kwargs: Any) -> int:
        """Queue an edit; its version id."""
        reply = await self.service.instruct(actor, text, **kwargs)
        assert not reply.is_error, reply
        assert reply.key in ("edit.queued", "edit.queued_next"), reply
        assert reply.version_id is not None
        return reply.version_id

    async def edit(self, actor: Actor, text: str, **kwargs: Any) -> int:
        """Queue an edit and wait until it is done; its version id."""
        version_id = await self.queue(actor, text, **kwargs)
        await self.recorder.done(version_id)
        return version_id

    async def version(self, version_id: int) -> Version:
        async with self.database.read() as session:
            version = await session.get(Version, version_id)
        assert version is not None
        return version

    async def wait_status(self, version_id: int, status: str) -> None:
        """Wait until the scheduler has moved a version to `status` (fails after a timeout)."""
        async with asyncio.timeout(TIMEOUT_S):
            while (await self.version(version_id)).status != status:  # noqa: ASYNC110 (polls the database)
                await asyncio.sleep(0.01)

    async def count_versions(self) -> int:
        async with self.database.read() as session:
            return await session.scalar(select(func.count(Version.id))) or 0

    async def history(self, actor: Actor) -> tuple[HistoryEntry, ...]:
        reply = await self.service.history(actor)
        assert not reply.is_error, reply
        return reply.history

    async def path(self, actor: Actor) -> list[int]:
        """Version ids root -> head (pending edits excluded)."""
        return [e.version_id for e in await self.history(actor) if e.status == "done"]

    async def head(self, actor: Actor) -> int:
        reply = await self.service.history(actor)
        assert reply.key == "history.show", reply
        assert reply.version_id is not None
        return reply.version_id


@asynccontextmanager
async def running_service(
    url: str,
    folder: Path,
    *,
    editor: GatedEditor | None = None,
    admission: Admission = GENEROUS,
    image_limits: ImageLimits | None = None,
    defaults: EditParams = DEFAULTS,
    clock: Clock | None = None,
    start: bool = True,
) -> AsyncIterator[Harness]:
    """The service wired like `bot.app.build`, with knobs; `start=False` leaves jobs queued."""
    editor = editor or GatedEditor()
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(Database(url))
        images = FileImageStore(folder)
        scheduler = EmbeddedScheduler(database, images, editor, max_wait_ms=0)
        clock = clock or Clock()
        service = ConversationService(
            database,
            images,
            scheduler,
            editor,
            defaults=defaults,
            admission=admission,
            image_limits=image_limits,
            clock=clock,
        )
        recorder = Recorder()
        service.subscribe(PLATFORM, recorder)
        if start:
            await stack.enter_async_context(scheduler)
            # Registered after the scheduler, so it runs first: a closed gate must not keep
            # the scheduler's stop() waiting for a batch that can never finish.
            stack.callback(editor.gate.set)
        yield Harness(database, images, editor, scheduler, service, recorder, clock)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    return tmp_path / "images"


@pytest.fixture
async def h(sqlite_url: str, images_dir: Path) -> AsyncIterator[Harness]:
    async with running_service(sqlite_url, images_dir) as harness:
        yield harness


# -- images ------------------------------------------------------------------------------------


def photo(size: tuple[int, int] = (64, 48), shade: int = 0, fmt: str = "JPEG") -> bytes:
    """A small photo-like image; different shades give different bytes."""
    gradient = Image.linear_gradient("L").resize(size)
    mirrored = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = Image.merge("RGB", (gradient, mirrored, Image.new("L", size, shade)))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb() -> bytes:
    """A PNG of a few dozen bytes whose header claims 30000 x 30000 pixels."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- friendliness ------------------------------------------------------------------------------


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


EXCEPTION_WORDS = {c.__name__ for c in _subclasses(UserError)} | {
    "UserError",
    "Traceback",
    "Exception",
    "Error",
    "None",
}


def assert_friendly(reply: Reply) -> str:
    """An error reply the user can read: a filled-in sentence with no programmer words."""
    assert reply.is_error, reply
    text = reply.text()
    assert len(text) > 15, text
    assert text.rstrip().endswith("."), text
    assert "{" not in text and "}" not in text, f"unfilled placeholder in {text!r}"
    for word in EXCEPTION_WORDS:
        assert word not in text, f"{word!r} in {text!r}"
    assert text != Reply(key="error.generic").text(), f"{reply.key} has no catalogue entry"
    return text


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
        says=("1 edits",),
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
        says=("1 edits",),
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


async def test_a_failed_edit_is_reported_and_skips_edits_built_on_it(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir, editor=GatedEditor(fail_on="explode")) as h:
        root = (await h.upload(ALICE)).version_id
        h.editor.gate.clear()
        doomed = await h.queue(ALICE, "explode it")
        dependent = await h.queue(ALICE, "add snow")
        h.editor.gate.set()

        failed = await h.recorder.result(doomed)
        skipped = await h.recorder.result(dependent)

        assert failed.key == "error.edit_failed"
        assert Action.REGENERATE in failed.actions
        assert skipped.key == "error.parent_failed"
        assert "add snow" in assert_friendly(skipped)
        assert_friendly(failed)
        assert await h.path(ALICE) == [root]
        await h.edit(ALICE, "add a rainbow")


# -- happy paths -------------------------------------------------------------------------------


async def test_photo_without_caption_becomes_the_head(h: Harness) -> None:
    reply = await h.service.receive_image(ALICE, photo())

    assert reply.key == "photo.received"
    assert not reply.is_error
    (entry,) = await h.history(ALICE)
    assert entry == HistoryEntry(reply.version_id or 0, None, None, "done", True)


async def test_photo_with_caption_queues_the_first_edit(h: Harness) -> None:
    reply = await h.service.receive_image(ALICE, photo(), caption="make it night")

    assert reply.key == "edit.queued_next"
    assert reply.args["instruction"] == "make it night"
    assert reply.actions == (Action.CANCEL,)
    assert "make it night" in reply.text()
    assert reply.version_id is not None
    done = await h.recorder.done(reply.version_id)
    root, edit = await h.history(ALICE)
    assert (root.instruction, edit.instruction) == (None, "make it night")
    assert edit.is_head and not root.is_head
    assert edit.params is not None
    assert done.args["seed"] == edit.params["seed"]
    assert done.show_image
    assert str(edit.params["seed"]) in done.text()
    assert (await h.version(edit.version_id)).parent_id == root.version_id


async def test_progress_is_published_for_each_step(h: Harness) -> None:
    await h.upload(ALICE)
    edit = await h.edit(ALICE, "make it night")

    progress = [
        r.args for _, r in h.recorder.replies if r.key == "edit.progress" and r.version_id == edit
    ]
    assert [p["step"] for p in progress] == [1, 2, 3]
    assert all(p["total"] == 3 for p in progress)
    assert all(actor == ALICE for actor, _ in h.recorder.replies)


async def test_chained_instructions_build_on_the_pending_edit(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    h.editor.gate.clear()
    first = await h.queue(ALICE, "make it night")
    second = await h.queue(ALICE, "  add   snow \n")

    assert (await h.version(second)).parent_id == first
    assert (await h.version(second)).instruction == "add snow"
    pending = await h.history(ALICE)
    assert [e.version_id for e in pending] == [root, first, second]
    assert pending[0].is_head
    assert {e.status for e in pending[1:]} <= {"queued", "running"}

    h.editor.gate.set()
    await h.recorder.done(first)
    await h.recorder.done(second)
    entries = await h.history(ALICE)
    assert [e.version_id for e in entries] == [root, first, second]
    assert [e.instruction for e in entries] == [None, "make it night", "add snow"]
    assert [e.is_head for e in entries] == [False, False, True]
    # The second edit ran on the first one's result, not on the photo.
    (_first_call,), (second_call,) = h.editor.calls
    first_png = await h.service.image(ALICE, first, full=True)
    assert second_call.image.tobytes() == open_image(first_png).convert("RGB").tobytes()


async def test_undo_and_redo_walk_the_chain_without_deleting(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")

    back = await h.service.undo(ALICE)
    assert (back.key, back.version_id, back.show_image) == ("undo.done", first, True)
    assert await h.path(ALICE) == [root, first]
    back = await h.service.undo(ALICE)
    assert (back.key, back.version_id) == ("undo.done", root)
    assert back.actions == (Action.REDO,)
    assert (await h.service.undo(ALICE)).key == "error.nothing_to_undo"

    forward = await h.service.redo(ALICE)
    assert (forward.key, forward.version_id) == ("redo.done", first)
    assert "make it night" in forward.text()
    forward = await h.service.redo(ALICE)
    assert (forward.key, forward.version_id) == ("redo.done", second)
    assert (await h.service.redo(ALICE)).key == "error.nothing_to_redo"
    assert await h.path(ALICE) == [root, first, second]


async def test_redo_follows_the_most_recently_visited_child(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    await h.edit(ALICE, "add snow")
    await h.service.undo(ALICE)

    other = await h.edit(ALICE, "add a moon")  # built on the head after undo: a branch
    assert (await h.version(other)).parent_id == first
    await h.service.undo(ALICE)

    assert (await h.service.redo(ALICE)).version_id == other
    assert await h.path(ALICE) == [root, first, other]


async def test_regenerate_makes_a_sibling_with_a_new_seed(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")

    reply = await h.service.regenerate(ALICE)
    assert reply.key in ("edit.queued", "edit.queued_next")
    assert reply.version_id is not None
    again = reply.version_id
    await h.recorder.done(again)

    old, new = await h.version(first), await h.version(again)
    assert new.parent_id == root
    assert new.instruction == "make it night"
    assert old.params is not None and new.params is not None
    assert new.params["seed"] != old.params["seed"]
    assert {**new.params, "seed": 0} == {**old.params, "seed": 0}
    assert await h.path(ALICE) == [root, again]
    # The old result stays reachable, and differs (the NullEditor tints by seed).
    old_png = await h.service.image(ALICE, first, full=True)
    assert old_png != await h.service.image(ALICE, again, full=True)

    explicit = await h.service.regenerate(ALICE, first)
    assert explicit.version_id is not None
    await h.recorder.done(explicit.version_id)
    assert (await h.version(explicit.version_id)).parent_id == root


async def test_instruct_on_an_older_version_branches(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")

    branch = await h.edit(ALICE, "add a hat", base_version_id=first)

    assert (await h.version(branch)).parent_id == first
    assert await h.path(ALICE) == [root, first, branch]
    assert await h.service.image(ALICE, second)  # the other branch is kept


async def test_reset_starts_a_new_root_from_the_original_photo(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    assert root is not None
    first = await h.edit(ALICE, "make it night")

    reply = await h.service.reset(ALICE)

    assert reply.key == "reset.done"
    assert reply.version_id not in (None, root, first)
    assert reply.version_id is not None
    new_root = reply.version_id
    assert await h.path(ALICE) == [new_root]
    original = await h.service.image(ALICE, root, full=True)
    assert await h.service.image(ALICE, new_root, full=True) == original
    assert await h.service.image(ALICE, first)
    after = await h.edit(ALICE, "add snow")
    assert (await h.version(after)).parent_id == new_root


async def test_settings_change_the_next_edit_and_reset_restores_defaults(h: Harness) -> None:
    await h.upload(ALICE)
    shown = await h.service.settings(ALICE)
    assert shown.key == "settings.show"
    assert shown.settings is not None and shown.settings["num_inference_steps"] == 3
    assert "random" in shown.text()

    for name, value in [
        ("steps", 5),
        ("Text Guidance", "9"),
        ("image_guidance", 2),
        ("resolution", "384"),
        ("seed", 1234),
        ("seed_mode", "fixed"),
    ]:
        reply = await h.service.update_setting(ALICE, name, value)
        assert reply.key == "settings.updated", reply
        assert "{" not in reply.text()
    assert "fixed at 1234" in (await h.service.settings(ALICE)).text()

    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")
    expected = {
        "num_inference_steps": 5,
        "guidance_scale": 9.0,
        "image_guidance_scale": 2.0,
        "seed": 1234,
        "resolution": 384,
    }
    assert (await h.version(first)).params == expected
    assert (await h.version(second)).params == expected
    assert max(open_image(await h.service.image(ALICE, first, full=True)).size) == 384

    reply = await h.service.reset_settings(ALICE)
    assert reply.key == "settings.reset"
    assert reply.settings == (await h.service.settings(BOB)).settings  # a stranger's defaults
    third = await h.edit(ALICE, "add a moon")
    params = (await h.version(third)).params
    assert params is not None
    assert (params["num_inference_steps"], params["resolution"]) == (3, 256)


async def test_settings_keep_only_choices_so_new_server_defaults_reach_users(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        await h.service.update_setting(ALICE, "steps", 5)
    new_defaults = EditParams(num_inference_steps=4, resolution=384, guidance_scale=6.0)
    async with running_service(sqlite_url, images_dir, defaults=new_defaults) as h:
        settings = (await h.service.settings(ALICE)).settings
    assert settings is not None
    assert settings["num_inference_steps"] == 5  # chosen
    assert (settings["resolution"], settings["guidance_scale"]) == (384, 6.0)  # new defaults


async def test_cancel_and_status(h: Harness) -> None:
    assert (await h.service.status(ALICE)).key == "status.idle"
    await h.upload(ALICE)
    h.editor.gate.clear()
    running = await h.queue(ALICE, "make it night")
    await h.wait_status(running, "running")
    queued = await h.queue(ALICE, "add snow")
    on_top = await h.queue(ALICE, "add a moon")
    assert (await h.service.instruct(ALICE, "one too many")).key == "error.too_many_pending"
    assert (await h.service.status(ALICE)).key in ("status.running", "status.pending")

    cancelled = await h.service.cancel(ALICE)
    assert (cancelled.key, cancelled.args["count"]) == ("cancel.done", 1)
    cancelled = await h.service.cancel(ALICE)
    assert (cancelled.key, cancelled.args["count"]) == ("cancel.done", 1)
    assert (await h.version(on_top)).status == "cancelled"
    assert (await h.version(queued)).status == "cancelled"
    refused = await h.service.cancel(ALICE)
    assert refused.key == "error.nothing_to_cancel_running"
    assert_friendly(refused)

    h.editor.gate.set()
    await h.recorder.done(running)
    assert (await h.service.status(ALICE)).key == "status.idle"
    assert (await h.service.cancel(ALICE)).key == "error.nothing_to_cancel"
    assert await h.path(ALICE) == [(await h.history(ALICE))[0].version_id, running]


# -- group chats -------------------------------------------------------------------------------


async def test_users_in_one_group_chat_have_separate_conversations(h: Harness) -> None:
    alice_root = (await h.upload(ALICE, photo(shade=10))).version_id
    bob_root = (await h.upload(BOB, photo(shade=20))).version_id
    alice_edit = await h.edit(ALICE, "make it night")
    bob_edit = await h.edit(BOB, "add snow")

    assert await h.path(ALICE) == [alice_root, alice_edit]
    assert await h.path(BOB) == [bob_root, bob_edit]
    assert (await h.service.history(ALICE_DM)).key == "history.empty"

    assert (await h.service.undo(BOB)).version_id == bob_root
    assert await h.path(ALICE) == [alice_root, alice_edit]

    with pytest.raises(VersionNotFound):
        await h.service.image(BOB, alice_edit)
    refused = await h.service.regenerate(BOB, alice_edit)
    assert refused.key == "error.version_not_found"
    refused = await h.service.instruct(BOB, "add a hat", base_version_id=alice_edit)
    assert refused.key == "error.version_not_found"
    assert await h.path(ALICE) == [alice_root, alice_edit]
    # Bob's next edit builds on his own head, not on Alice's.
    bob_next = await h.edit(BOB, "add a hat")
    assert (await h.version(bob_next)).parent_id == bob_root
    assert [actor for actor, r in h.recorder.results(bob_next)] == [BOB]


# -- idempotency -------------------------------------------------------------------------------


async def test_the_same_update_delivered_twice_makes_one_version(h: Harness) -> None:
    first = await h.service.receive_image(ALICE, photo(), request_key="update-1")
    again = await h.service.receive_image(ALICE, photo(), request_key="update-1")
    assert first.key == "photo.received"
    assert (again.key, again.version_id, again.is_error) == (
        "edit.duplicate",
        first.version_id,
        False,
    )

    edit = await h.service.instruct(ALICE, "make it night", request_key="update-2")
    edit_again = await h.service.instruct(ALICE, "make it night", request_key="update-2")
    assert edit_again.key == "edit.duplicate"
    assert edit_again.version_id == edit.version_id
    assert edit.version_id is not None
    await h.recorder.done(edit.version_id)
    assert await h.count_versions() == 2

    # Keys are per conversation: another user's update with the same key is new.
    assert (await h.service.receive_image(BOB, photo(), request_key="update-1")).key == (
        "photo.received"
    )


async def test_the_same_update_delivered_twice_at_once_makes_one_version(h: Harness) -> None:
    await h.upload(ALICE)
    replies = await asyncio.gather(
        h.service.receive_image(ALICE, photo(shade=5), request_key="u"),
        h.service.receive_image(ALICE, photo(shade=5), request_key="u"),
    )
    assert sorted(r.key for r in replies) == ["edit.duplicate", "photo.received"]
    assert replies[0].version_id == replies[1].version_id
    assert await h.count_versions() == 2


# -- forget ------------------------------------------------------------------------------------


async def test_forget_deletes_only_that_users_data(h: Harness) -> None:
    shared = photo(shade=42)  # both upload the very same photo: one stored file
    alice_root = (await h.upload(ALICE, shared)).version_id
    bob_root = (await h.upload(BOB, shared)).version_id
    assert alice_root is not None and bob_root is not None
    alice_edit = await h.edit(ALICE, "make it night")
    bob_edit = await h.edit(BOB, "make it night")
    dm_root = (await h.upload(ALICE_DM, photo(shade=7))).version_id
    assert dm_root is not None
    shared_sha = (await h.version(alice_root)).image_sha
    assert shared_sha is not None and shared_sha == (await h.version(bob_root)).image_sha
    alice_only = [(await h.version(v)).image_sha for v in (alice_edit, dm_root)]
    bob_history = await h.history(BOB)
    bob_photo = await h.service.image(BOB, bob_root, full=True)

    reply = await h.service.forget(ALICE)

    assert (reply.key, reply.args["count"]) == ("forget.done", 2)
    assert (await h.service.history(ALICE)).key == "history.empty"
    assert (await h.service.history(ALICE_DM)).key == "history.empty"
    for sha in alice_only:
        assert sha is not None and not h.images.exists(sha)
    assert h.images.exists(shared_sha)
    assert await h.history(BOB) == bob_history
    assert await h.service.image(BOB, bob_root, full=True) == bob_photo
    assert await h.service.image(BOB, bob_edit, full=True)
    assert (await h.service.forget(ALICE)).key == "forget.nothing"
    # Alice can start again afterwards.
    await h.upload(ALICE)
    await h.edit(ALICE, "add snow")


async def test_forget_drops_pending_edits(h: Harness) -> None:
    await h.upload(ALICE)
    h.editor.gate.clear()
    running = await h.queue(ALICE, "make it night")
    queued = await h.queue(ALICE, "add snow")

    assert (await h.service.forget(ALICE)).key == "forget.done"
    h.editor.gate.set()
    await asyncio.sleep(0.2)

    assert h.recorder.results(running) == [] and h.recorder.results(queued) == []
    assert len(h.editor.calls) <= 1
    assert h.images.count()[0] == 0  # the running edit's result was not kept
    assert await h.count_versions() == 0


# -- restart -----------------------------------------------------------------------------------


async def test_history_and_settings_survive_a_restart(sqlite_url: str, images_dir: Path) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        root = (await h.upload(ALICE)).version_id
        first = await h.edit(ALICE, "make it night")
        second = await h.edit(ALICE, "add snow")
        await h.service.update_setting(ALICE, "steps", 5)
        history = await h.history(ALICE)
        second_png = await h.service.image(ALICE, second, full=True)

    async with running_service(sqlite_url, images_dir) as h:
        assert await h.history(ALICE) == history
        assert [e.version_id for e in history] == [root, first, second]
        settings = (await h.service.settings(ALICE)).settings
        assert settings is not None and settings["num_inference_steps"] == 5
        assert await h.service.image(ALICE, second, full=True) == second_png
        assert (await h.service.undo(ALICE)).version_id == first
        third = await h.edit(ALICE, "add a moon")
        assert (await h.version(third)).parent_id == first


async def test_a_queued_edit_survives_a_restart_and_is_delivered(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir, start=False) as h:
        await h.upload(ALICE)
        queued = await h.queue(ALICE, "make it night")

    async with running_service(sqlite_url, images_dir) as h:
        done = await h.recorder.done(queued)
        assert [actor for actor, _ in h.recorder.results(queued)] == [ALICE]
        assert "make it night" in done.text()
        assert await h.head(ALICE) == queued


async def test_results_nobody_delivered_are_redelivered_until_marked(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        await h.upload(ALICE)
        edit = await h.edit(ALICE, "make it night")

    async with running_service(sqlite_url, images_dir) as h:
        assert await h.service.redeliver(PLATFORM) == 1
        assert [r.key for _, r in h.recorder.results(edit)] == ["edit.done"]
        await h.service.mark_delivered(edit)
        assert await h.service.redeliver(PLATFORM) == 0
        assert await h.service.redeliver("discord") == 0


# -- stored uploads ----------------------------------------------------------------------------


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
