"""The embedded scheduler on a real SQLite database.

The scheduler runs the NullEditor (or a subclass that gates or fails), whose `calls` list is the
order and grouping in which the model would have seen the requests. Restart recovery is checked
with a real crash: a child process is killed with SIGKILL in the middle of an edit. The ordering
rules alone are tested without a database in test_fairness.py.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from bot.work.jobs import OUT_OF_MEMORY, Job, JobDone, JobEvent, JobFailed, JobStarted
from bot.work.scheduler import EDIT_FAILED, EmbeddedScheduler
from editor.images import encode_png, fitted_size
from editor.params import EditParams
from editor.testing.doubles import GatedEditor, NullEditor, OutOfMemoryEditor
from storage import lifecycle, tree
from storage.database import Database
from storage.images import FileImageStore
from storage.models import Version, VersionStatus
from storage.types import Actor

PLATFORM = "telegram"
PHOTO = (64, 48)  # fitted to (256, 192) at resolution 256
PORTRAIT = (48, 64)  # fitted to (192, 256): same parameters, another batch
FAST = EditParams(num_inference_steps=2, resolution=256)
TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[3]


# -- test doubles ------------------------------------------------------------------------------


class Events:
    """Every job event the scheduler publishes, with a way to wait for outcomes."""

    def __init__(self) -> None:
        self.seen: list[JobEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: JobEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    def started(self) -> list[int]:
        return [e.version_id for e in self.seen if isinstance(e, JobStarted)]

    def outcomes(self) -> dict[int, JobDone | JobFailed]:
        return {e.version_id: e for e in self.seen if isinstance(e, JobDone | JobFailed)}

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds after some event (fails the test after a timeout)."""
        async with asyncio.timeout(TIMEOUT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def settled(self, *version_ids: int) -> dict[int, JobDone | JobFailed]:
        """The done or failed event of each version, once all have one."""
        await self.until(lambda: set(version_ids) <= self.outcomes().keys())
        return {vid: self.outcomes()[vid] for vid in version_ids}


@dataclass
class World:
    """Users with photos and queued edits, committed the way the conversation service does."""

    database: Database
    images: FileImageStore

    async def photo(self, user: str, size: tuple[int, int] = PHOTO) -> Version:
        """A new uploaded photo of `user` (a done root version)."""
        image = Image.new("RGB", size, (sum(map(ord, user)) % 256, 120, 80))
        sha = self.images.put(encode_png(image))
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor(user))
            return await tree.add_root(session, conversation, sha, size)

    async def edit(
        self,
        user: str,
        instruction: str,
        parent_id: int | None = None,
        params: EditParams = FAST,
    ) -> Job:
        """Commit a queued edit of `parent_id` (default: the user's head) and return its job."""
        async with self.database.write() as session:
            conversation = await tree.get_or_create_conversation(session, actor(user))
            if parent_id is None:
                parent = await tree.head(session, conversation)
            else:
                parent = await tree.get_version(session, conversation, parent_id)
            assert parent is not None, f"{user} has no photo"
            version = await tree.add_edit(session, conversation, parent, instruction, params)
        size = None
        if parent.status == VersionStatus.DONE and parent.width and parent.height:
            size = (parent.width, parent.height)  # else it waits for its parent to finish
        return Job(
            version_id=version.id,
            user_key=f"{PLATFORM}:{user}",
            parent_id=parent.id,
            parent_size=size,
            instruction=instruction,
            params=params,
        )

    async def version(self, version_id: int) -> Version:
        async with self.database.read() as session:
            version = await session.get(Version, version_id)
        assert version is not None
        return version

    async def head(self, user: str) -> int | None:
        async with self.database.read() as session:
            conversation = await tree.find_conversation(session, actor(user))
        assert conversation is not None
        return conversation.head_id

    def scheduler(self, editor: NullEditor, **options: int) -> tuple[EmbeddedScheduler, Events]:
        """A scheduler (not started yet) and the recorder of its events."""
        options.setdefault("max_wait_ms", 0)
        scheduler = EmbeddedScheduler(self.database, self.images, editor, **options)
        events = Events()
        scheduler.subscribe(events)
        return scheduler, events


def actor(user: str) -> Actor:
    return Actor(PLATFORM, f"chat-{user}", user)


def ran(editor: NullEditor) -> list[list[str]]:
    """The instructions of each call the editor received, in order."""
    return [[request.instruction for request in call] for call in editor.calls]


async def submit(scheduler: EmbeddedScheduler, jobs: Iterable[Job]) -> None:
    for job in jobs:
        await scheduler.submit(job)


@pytest.fixture
async def world(sqlite_database: Database, tmp_path: Path) -> World:
    return World(sqlite_database, FileImageStore(tmp_path / "images"))


# -- fairness ----------------------------------------------------------------------------------


async def test_users_take_turns_one_job_each(world: World) -> None:
    for user in ("alice", "bob", "carol"):
        await world.photo(user)
    queued = [
        await world.edit(user, f"{user} {n}")
        for user, n in [("alice", 1), ("alice", 2), ("alice", 3), ("bob", 1), ("bob", 2)]
    ]
    queued.append(await world.edit("carol", "carol 1"))
    editor = NullEditor()
    scheduler, events = world.scheduler(editor, max_batch=1)
    await submit(scheduler, queued)

    fair = ["alice 1", "bob 1", "carol 1", "alice 2", "bob 2", "alice 3"]
    by_name = {job.instruction: job.version_id for job in queued}
    assert [await scheduler.position(by_name[name]) for name in fair] == [1, 2, 3, 4, 5, 6]
    assert await scheduler.depth() == 6

    async with scheduler:
        outcomes = await events.settled(*by_name.values())

    assert ran(editor) == [[name] for name in fair]
    assert all(isinstance(outcome, JobDone) for outcome in outcomes.values())
    assert await scheduler.depth() == 0


async def test_a_newcomer_goes_before_the_second_job_of_a_user_already_served(
    world: World,
) -> None:
    for user in ("alice", "bob", "carol"):
        await world.photo(user)
    editor = GatedEditor(closed=True)
    scheduler, events = world.scheduler(editor, max_batch=1)
    async with scheduler:
        try:
            alice = [await world.edit("alice", f"alice {n}") for n in (1, 2, 3)]
            await submit(scheduler, alice)
            await events.until(lambda: alice[0].version_id in events.started())
            # alice's first edit is running; bob and carol arrive while she has two waiting
            late = [await world.edit("bob", "bob 1"), await world.edit("carol", "carol 1")]
            await submit(scheduler, late)
            assert await scheduler.position(late[0].version_id) == 1
            assert await scheduler.position(alice[1].version_id) == 3
        finally:
            editor.gate.set()
        await events.settled(*(job.version_id for job in alice + late))

    assert ran(editor) == [["alice 1"], ["bob 1"], ["carol 1"], ["alice 2"], ["alice 3"]]


# -- batching ----------------------------------------------------------------------------------


async def test_compatible_jobs_of_different_users_share_a_call(world: World) -> None:
    for user in ("alice", "bob", "carol", "erin", "frank", "grace"):
        await world.photo(user)
    await world.photo("dave", PORTRAIT)
    queued = [
        await world.edit("alice", "alice 1"),
        await world.edit("alice", "alice 2"),
        await world.edit("bob", "bob 1"),
        await world.edit(
            "carol", "carol 1", params=EditParams(num_inference_steps=3, resolution=256)
        ),
        await world.edit("dave", "dave 1"),  # same parameters, other fitted size
        await world.edit("erin", "erin 1"),
        await world.edit("frank", "frank 1"),
        await world.edit(
            "grace",
            "grace 1",
            params=EditParams(num_inference_steps=2, resolution=256, guidance_scale=9.0),
        ),
    ]
    editor = NullEditor()
    scheduler, events = world.scheduler(editor, max_batch=3)
    await submit(scheduler, queued)

    async with scheduler:
        outcomes = await events.settled(*(job.version_id for job in queued))
        # bob alone with three compatible edits: one at a time, in order
        more = [await world.edit("bob", f"bob {n}") for n in (2, 3, 4)]
        await submit(scheduler, more)
        outcomes |= await events.settled(*(job.version_id for job in more))

    assert ran(editor) == [
        ["alice 1", "bob 1", "erin 1"],  # full at max_batch: frank waits although compatible
        ["carol 1"],  # other steps
        ["dave 1"],  # other size
        ["frank 1", "alice 2"],  # alice's second only after her first
        ["grace 1"],  # other guidance
        ["bob 2"],
        ["bob 3"],
        ["bob 4"],
    ]
    for call in editor.calls:
        assert len({request.image.size for request in call}) == 1
        assert len({request.params.batch_key() for request in call}) == 1
    assert editor.calls[2][0].image.size == (192, 256)
    assert editor.calls[0][0].image.size == (256, 192)
    batch_sizes = {e.version_id: e.batch_size for e in events.seen if isinstance(e, JobStarted)}
    assert batch_sizes[queued[0].version_id] == 3 and batch_sizes[queued[1].version_id] == 2
    assert all(isinstance(outcome, JobDone) for outcome in outcomes.values())


# -- developing onto the full-size photo -------------------------------------------------------


def _format_and_size(world: World, sha: str | None) -> tuple[str | None, tuple[int, int]]:
    assert sha is not None
    with Image.open(io.BytesIO(world.images.get(sha))) as image:
        return image.format, image.size


async def test_results_keep_the_full_size_of_their_parent_and_the_raw_output_is_recorded(
    world: World,
) -> None:
    await world.photo("alice", (1000, 700))
    first = await world.edit("alice", "make it night")
    second = await world.edit("alice", "add snow", parent_id=first.version_id)  # chained, pending
    editor = NullEditor()
    scheduler, events = world.scheduler(editor)
    await submit(scheduler, [first, second])
    async with scheduler:
        outcomes = await events.settled(first.version_id, second.version_id)

    assert all(isinstance(outcome, JobDone) for outcome in outcomes.values())
    working = fitted_size((1000, 700), 256)
    assert [call[0].image.size for call in editor.calls] == [working, working]
    for job in (first, second):
        version = await world.version(job.version_id)
        assert (version.width, version.height) == (1000, 700)
        assert _format_and_size(world, version.image_sha) == ("PNG", (1000, 700))
        assert _format_and_size(world, version.raw_image_sha) == ("PNG", working)


async def test_with_develop_off_results_are_the_working_size_output(world: World) -> None:
    await world.photo("alice", (1000, 700))
    job = await world.edit("alice", "make it night")
    scheduler, events = world.scheduler(NullEditor(), develop=False)
    await submit(scheduler, [job])
    async with scheduler:
        assert isinstance((await events.settled(job.version_id))[job.version_id], JobDone)

    version = await world.version(job.version_id)
    working = fitted_size((1000, 700), 256)
    assert (version.width, version.height) == working
    assert _format_and_size(world, version.image_sha) == ("PNG", working)
    assert version.raw_image_sha is None


# -- restart -----------------------------------------------------------------------------------


async def test_an_edit_killed_mid_run_completes_after_a_restart(
    world: World, sqlite_url: str
) -> None:
    root = await world.photo("alice")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bot.work.crash_child",
        sqlite_url,
        str(world.images.root),
        str(root.id),
        "alice at night",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(TIMEOUT_S):
            queued = (await child.stdout.readline()).decode().split()
            assert queued[0] == "queued", queued
            version_id = int(queued[1])
            progress = (await child.stdout.readline()).decode()
            assert progress.startswith("progress "), progress
        running = await world.version(version_id)
        assert (running.status, running.attempts) == (VersionStatus.RUNNING, 1)
        child.kill()
        assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert (await world.version(version_id)).status == VersionStatus.RUNNING

    editor = NullEditor()
    scheduler, events = world.scheduler(editor)
    async with scheduler:
        outcome = (await events.settled(version_id))[version_id]

    assert isinstance(outcome, JobDone)
    assert version_id in events.started()
    assert ran(editor) == [["alice at night"]]
    assert editor.calls[0][0].params.seed == 7  # the parameters the child stored
    version = await world.version(version_id)
    assert (version.status, version.attempts) == (VersionStatus.DONE, 2)
    assert version.image_sha is not None
    with Image.open(io.BytesIO(world.images.get(version.image_sha))) as result:
        assert (result.format, result.size) == ("PNG", (64, 48))  # developed onto the photo
    assert (version.width, version.height) == (64, 48)
    assert version.raw_image_sha is not None
    with Image.open(io.BytesIO(world.images.get(version.raw_image_sha))) as raw:
        assert (raw.format, raw.size) == ("PNG", (256, 192))  # the model's working size
    assert await world.head("alice") == version_id


async def test_an_edit_interrupted_too_often_fails_with_the_edits_built_on_it(
    world: World,
) -> None:
    await world.photo("alice")
    await world.photo("bob")
    doomed = await world.edit("alice", "alice crashes the server")
    on_top = await world.edit("alice", "alice more", parent_id=doomed.version_id)
    retried = await world.edit("bob", "bob 1")
    async with world.database.write() as session:  # as left by crashes in the middle of a run
        for job, attempts in ((doomed, 3), (retried, 2)):
            await session.execute(
                update(Version)
                .where(Version.id == job.version_id)
                .values(status=VersionStatus.RUNNING, attempts=attempts)
            )

    editor = NullEditor()
    scheduler, events = world.scheduler(editor, max_attempts=3)
    async with scheduler:
        outcomes = await events.settled(doomed.version_id, on_top.version_id, retried.version_id)

    assert outcomes[doomed.version_id] == JobFailed(doomed.version_id, EDIT_FAILED)
    assert outcomes[on_top.version_id] == JobFailed(on_top.version_id, "error.parent_failed")
    assert isinstance(outcomes[retried.version_id], JobDone)
    assert ran(editor) == [["bob 1"]]
    failed = await world.version(doomed.version_id)
    assert (failed.status, failed.error_key, failed.attempts) == ("failed", EDIT_FAILED, 3)
    assert (await world.version(on_top.version_id)).status == VersionStatus.FAILED
    assert (await world.version(retried.version_id)).attempts == 3
    assert await scheduler.depth() == 0


# -- failures ----------------------------------------------------------------------------------


async def test_a_failing_request_does_not_take_its_batch_down(world: World) -> None:
    for user in ("alice", "bob", "carol", "dave"):
        await world.photo(user)
    alice = await world.edit("alice", "alice paints")
    bob = await world.edit("bob", "bob explode")
    bob_next = await world.edit("bob", "bob after", parent_id=bob.version_id)
    carol = await world.edit("carol", "carol paints")
    editor = NullEditor(fail_on="explode")
    scheduler, events = world.scheduler(editor, max_batch=3)
    await submit(scheduler, [alice, bob, bob_next, carol])

    async with scheduler:
        outcomes = await events.settled(alice.version_id, bob.version_id, bob_next.version_id)
        outcomes |= await events.settled(carol.version_id)
        dave = await world.edit("dave", "dave later")
        await scheduler.submit(dave)
        outcomes |= await events.settled(dave.version_id)

    assert ran(editor) == [
        ["alice paints", "bob explode", "carol paints"],
        ["alice paints"],
        ["bob explode"],
        ["carol paints"],
        ["dave later"],
    ]
    assert outcomes[bob.version_id] == JobFailed(bob.version_id, EDIT_FAILED)
    assert outcomes[bob_next.version_id] == JobFailed(bob_next.version_id, "error.parent_failed")
    for job in (alice, carol, dave):
        assert isinstance(outcomes[job.version_id], JobDone)
        assert (await world.version(job.version_id)).status == VersionStatus.DONE
    failed = await world.version(bob.version_id)
    assert (failed.status, failed.error_key) == (VersionStatus.FAILED, EDIT_FAILED)
    assert failed.error_detail is not None and "explode" in failed.error_detail
    assert await world.head("bob") != bob.version_id
    assert await scheduler.depth() == 0


async def test_out_of_memory_is_reported_as_such(world: World) -> None:
    await world.photo("alice")
    await world.photo("bob")
    alice = await world.edit("alice", "alice huge")
    bob = await world.edit("bob", "bob small")
    editor = OutOfMemoryEditor()
    scheduler, events = world.scheduler(editor, max_batch=2)
    await submit(scheduler, [alice, bob])

    async with scheduler:
        outcomes = await events.settled(alice.version_id, bob.version_id)

    assert ran(editor) == [["alice huge", "bob small"], ["alice huge"], ["bob small"]]
    assert outcomes[alice.version_id] == JobFailed(alice.version_id, OUT_OF_MEMORY)
    assert isinstance(outcomes[bob.version_id], JobDone)
    assert (await world.version(alice.version_id)).error_key == OUT_OF_MEMORY


# -- cancel and position -----------------------------------------------------------------------


async def test_a_discarded_job_never_runs_and_the_line_closes_up(world: World) -> None:
    for user in ("alice", "bob", "carol"):
        await world.photo(user)
    editor = GatedEditor(closed=True)
    scheduler, events = world.scheduler(editor, max_batch=1)
    async with scheduler:
        try:
            a1 = await world.edit("alice", "alice 1")
            await scheduler.submit(a1)
            await events.until(lambda: a1.version_id in events.started())
            a2 = await world.edit("alice", "alice 2")
            b1 = await world.edit("bob", "bob 1")
            c1 = await world.edit("carol", "carol 1")
            b2 = await world.edit("bob", "bob 2")
            await submit(scheduler, [a2, b1, c1, b2])
            line = [a1, b1, c1, a2, b2]
            assert [await scheduler.position(j.version_id) for j in line] == [0, 1, 2, 3, 4]
            assert await scheduler.position(10_000) is None
            assert await scheduler.depth() == 5

            async with world.database.write() as session:  # carol cancels, as the service does
                conversation = await tree.find_conversation(session, actor("carol"))
                assert conversation is not None
                cancelled = await lifecycle.cancel_latest(session, conversation)
            assert [v.id for v in cancelled] == [c1.version_id]
            scheduler.discard({c1.version_id})

            assert await scheduler.position(c1.version_id) is None
            assert [await scheduler.position(j.version_id) for j in (a1, b1, a2, b2)] == [
                0,
                1,
                2,
                3,
            ]
            assert await scheduler.depth() == 4
        finally:
            editor.gate.set()
        await events.settled(*(j.version_id for j in (a1, b1, a2, b2)))

    assert ran(editor) == [["alice 1"], ["bob 1"], ["alice 2"], ["bob 2"]]
    assert c1.version_id not in events.started()
    assert c1.version_id not in events.outcomes()
    assert (await world.version(c1.version_id)).status == VersionStatus.CANCELLED
    assert await scheduler.depth() == 0
