"""The conversation service on SQLite with the NullEditor, wired for tests: every rule, no
model, in seconds.

Each test drives the service the way a frontend does (one call per user action, results through
`subscribe`) with the real embedded scheduler, database and image store underneath, so what is
checked is what users get, including across a restart.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from bot.service.conversation import Admission, ConversationService
from bot.service.media import DEFAULT_MAX_STORED_PIXELS
from bot.service.replies import HistoryEntry, Reply
from bot.work.masking import RegionMasker
from bot.work.scheduler import EmbeddedScheduler
from editor.errors import UserError
from editor.finishing.finisher import Finisher
from editor.finishing.provenance import Provenance
from editor.images import ImageLimits
from editor.params import EditParams
from editor.scoring import CandidateScorer
from editor.segment import Segmenter
from editor.testing.doubles import GatedEditor
from storage.database import Database
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
    develop: bool = True,
    max_stored_pixels: int = DEFAULT_MAX_STORED_PIXELS,
    segmenter: Segmenter | None = None,
    finisher: Finisher | None = None,
    provenance: Provenance | None = None,
    scorer: CandidateScorer | None = None,
) -> AsyncIterator[Harness]:
    """The service wired like `bot.app.build`, with knobs; `start=False` leaves jobs queued.

    Without a `segmenter`, /keep and /only answer that regions are unavailable.
    """
    editor = editor or GatedEditor()
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(Database(url))
        images = FileImageStore(folder)
        scheduler = EmbeddedScheduler(
            database,
            images,
            editor,
            max_wait_ms=0,
            develop=develop,
            segmenter=segmenter,
            finisher=finisher,
            scorer=scorer,
        )
        masker = None
        if segmenter is not None:
            masker = RegionMasker(segmenter, scheduler.model_thread, images)
        clock = clock or Clock()
        service = ConversationService(
            database,
            images,
            scheduler,
            editor,
            defaults=defaults,
            admission=admission,
            image_limits=image_limits,
            max_stored_pixels=max_stored_pixels,
            masker=masker,
            clock=clock,
            provenance=provenance,
        )
        recorder = Recorder()
        service.subscribe(PLATFORM, recorder)
        if start:
            await stack.enter_async_context(scheduler)
            # Registered after the scheduler, so it runs first: a closed gate must not keep
            # the scheduler's stop() waiting for a batch that can never finish.
            stack.callback(editor.gate.set)
        yield Harness(database, images, editor, scheduler, service, recorder, clock)


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
