"""A version's lifecycle on SQLite and PostgreSQL: claim, finish, fail, cancel, requeue, deliver.

Each step runs in its own transaction, as the conversation service and the schedulers run them,
so every test also checks that the state is in the database rather than in a session.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.models import VersionStatus
from tests.storage.steps import (
    ALICE,
    ALICE_DISCORD,
    BOB,
    SIZE,
    TG,
    count_versions,
    edit,
    load,
    queue,
    run,
    sha,
    state,
    upload,
)


async def test_edit_becomes_head_only_when_done(database: Database) -> None:
    root = await upload(database, ALICE)
    edit_id = await queue(database, ALICE, instruction="add a hat", seed=42)

    queued = await load(database, edit_id)
    assert queued.status is VersionStatus.QUEUED
    assert queued.parent_id == root
    assert queued.instruction == "add a hat"
    assert queued.edit_params() == EditParams(seed=42)
    assert queued.image_sha is None
    assert queued.attempts == 0
    assert await state(database, ALICE) == (root, [root])

    await run(database, edit_id)
    running = await load(database, edit_id)
    assert running.status is VersionStatus.RUNNING
    assert running.attempts == 1
    assert running.started_at is not None
    assert await state(database, ALICE) == (root, [root])

    async with database.write() as session:
        done = await lifecycle.mark_done(session, edit_id, sha("hat"), (640, 480))
    assert done is not None
    assert await state(database, ALICE) == (edit_id, [root, edit_id])
    stored = await load(database, edit_id)
    assert stored.status is VersionStatus.DONE
    assert stored.image_sha == sha("hat")
    assert (stored.width, stored.height) == (640, 480)
    assert stored.finished_at is not None
    assert (await load(database, root)).redo_child_id == edit_id


async def test_mark_done_ignores_versions_that_are_not_running(database: Database) -> None:
    root = await upload(database, ALICE)
    queued = await queue(database, ALICE)

    async with database.write() as session:
        assert await lifecycle.mark_done(session, queued, sha("x"), SIZE) is None
        assert await lifecycle.mark_done(session, 10_000_000, sha("x"), SIZE) is None

    assert (await load(database, queued)).status is VersionStatus.QUEUED
    assert await state(database, ALICE) == (root, [root])


async def test_mark_failed_cascades_to_queued_descendants_only(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root, instruction="a")
    b = await queue(database, ALICE, parent_id=a, instruction="b")
    c = await queue(database, ALICE, parent_id=b, instruction="c")
    sibling = await queue(database, ALICE, parent_id=root, instruction="sibling")
    await run(database, a)

    async with database.write() as session:
        failed = await lifecycle.fail(session, a, "error.edit_failed", "CUDA out of memory")
        assert [v.id for v in failed] == [a, b, c]

    first = await load(database, a)
    assert first.status is VersionStatus.FAILED
    assert first.error_key == "error.edit_failed"
    assert first.error_detail == "CUDA out of memory"
    assert first.finished_at is not None
    for version_id in (b, c):
        child = await load(database, version_id)
        assert child.status is VersionStatus.FAILED
        assert child.error_key == "error.parent_failed"
        assert child.error_detail is None
    assert (await load(database, sibling)).status is VersionStatus.QUEUED
    assert await state(database, ALICE) == (root, [root])
    assert await count_versions(database) == 5

    async with database.write() as session:  # failing twice, or failing a done one, is a no-op
        assert await lifecycle.fail(session, a, "error.other") == []
        assert await lifecycle.fail(session, root, "error.other") == []
        assert await lifecycle.fail(session, 10_000_000, "error.other") == []
    assert (await load(database, a)).error_key == "error.edit_failed"
    assert (await load(database, root)).status is VersionStatus.DONE


async def test_mark_failed_leaves_running_and_done_descendants(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root)
    b = await queue(database, ALICE, parent_id=a)
    await run(database, b)  # claimed out of order: running, so not the cascade's to fail
    async with database.write() as session:
        failed = await lifecycle.fail(session, a, "error.edit_failed")
    assert [v.id for v in failed] == [a]
    assert (await load(database, b)).status is VersionStatus.RUNNING


async def test_cancel_latest_cancels_the_newest_queued_edit(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root, instruction="a")
    b = await queue(database, ALICE, parent_id=a, instruction="b")
    c = await queue(database, ALICE, parent_id=root, instruction="c")
    bob_root = await upload(database, BOB)
    bob_queued = await queue(database, BOB, parent_id=bob_root)  # newer, but Bob's
    await run(database, a)

    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await lifecycle.cancel_latest(session, conversation)] == [c]
    cancelled = await load(database, c)
    assert cancelled.status is VersionStatus.CANCELLED
    assert cancelled.delivered is True
    assert cancelled.finished_at is not None
    assert (await load(database, b)).status is VersionStatus.QUEUED

    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await lifecycle.cancel_latest(session, conversation)] == [b]
        # `a` is running: there is nothing queued left to cancel.
        assert await lifecycle.cancel_latest(session, conversation) == []

    assert (await load(database, a)).status is VersionStatus.RUNNING
    assert (await load(database, bob_queued)).status is VersionStatus.QUEUED
    async with database.write() as session:  # a cancelled edit cannot be claimed any more
        assert await lifecycle.claim_many(session, [b, c]) == []
    assert await state(database, ALICE) == (root, [root])
    assert await count_versions(database) == 6


async def test_requeue_interrupted_moves_running_back_to_queued(database: Database) -> None:
    await upload(database, ALICE)
    running = await queue(database, ALICE)
    queued = await queue(database, ALICE)
    done = await edit(database, ALICE)
    await upload(database, BOB)
    bob_running = await queue(database, BOB)
    await run(database, running)
    await run(database, bob_running)

    async with database.write() as session:
        assert await lifecycle.requeue_interrupted(session) == 2

    for version_id in (running, bob_running):
        version = await load(database, version_id)
        assert version.status is VersionStatus.QUEUED
        assert version.started_at is None
        assert version.attempts == 1  # the attempt still counts
    assert (await load(database, queued)).status is VersionStatus.QUEUED
    assert (await load(database, done)).status is VersionStatus.DONE

    async with database.read() as session:
        jobs = await lifecycle.queued_jobs(session)
    assert [(v.id, c.user_id) for v, c in jobs] == [
        (running, "alice"),
        (queued, "alice"),
        (bob_running, "bob"),
    ]

    await run(database, running)
    assert (await load(database, running)).attempts == 2
    async with database.write() as session:
        assert await lifecycle.requeue_interrupted(session) == 1
        assert await lifecycle.requeue_interrupted(session) == 0


async def test_undelivered_lists_finished_and_failed_until_delivered(database: Database) -> None:
    await upload(database, ALICE)
    done = await edit(database, ALICE)
    failed = await queue(database, ALICE)
    await run(database, failed)
    async with database.write() as session:
        await lifecycle.fail(session, failed, "error.edit_failed")
    await queue(database, ALICE)  # queued: nothing to deliver yet
    running = await queue(database, ALICE)
    await run(database, running)
    cancelled = await queue(database, ALICE)
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await lifecycle.cancel_latest(session, conversation)] == [cancelled]
    await upload(database, ALICE_DISCORD)
    discord_done = await edit(database, ALICE_DISCORD)

    async with database.read() as session:
        rows = await lifecycle.undelivered(session, TG)
        assert [(v.id, c.user_id) for v, c in rows] == [(done, "alice"), (failed, "alice")]
        assert [v.id for v, _ in await lifecycle.undelivered(session, "discord")] == [discord_done]

    async with database.write() as session:
        await lifecycle.mark_delivered(session, done)
    async with database.read() as session:
        assert [v.id for v, _ in await lifecycle.undelivered(session, TG)] == [failed]
    async with database.write() as session:
        await lifecycle.mark_delivered(session, failed)
    async with database.read() as session:
        assert await lifecycle.undelivered(session, TG) == []
    assert (await load(database, done)).delivered is True


# -- claims, hand-back -----------------------------------------------------------------------


async def test_claim_many_twice_gives_the_second_claim_nothing(database: Database) -> None:
    await upload(database, ALICE)
    a = await queue(database, ALICE)
    async with database.write() as session:
        assert await lifecycle.claim_many(session, [a]) == [a]
    async with database.write() as session:
        assert await lifecycle.claim_many(session, [a]) == []
        assert await lifecycle.claim_many(session, []) == []
    assert (await load(database, a)).attempts == 1


async def test_worker_claim_runs_a_pending_version_on_a_finished_parent(
    database: Database,
) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root)
    async with database.write() as session:
        claim = await lifecycle.claim(session, a, max_attempts=3)
        assert claim.version is not None and claim.version.id == a
        assert claim.parent is not None and claim.parent.id == root
        assert claim.failed == []
    running = await load(database, a)
    assert (running.status, running.attempts) == (VersionStatus.RUNNING, 1)
    assert running.started_at is not None

    async with database.write() as session:  # its job retried (a worker thought dead): again
        again = await lifecycle.claim(session, a, max_attempts=3)
        assert again.version is not None
    assert (await load(database, a)).attempts == 2

    await finish_claimed(database, a)
    async with database.write() as session:  # finished: nothing left to do
        assert await lifecycle.claim(session, a, max_attempts=3) == lifecycle.Claim()
        assert await lifecycle.claim(session, 10_000_000, max_attempts=3) == lifecycle.Claim()


async def test_worker_claim_fails_a_version_that_crashed_too_often(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root)
    b = await queue(database, ALICE, parent_id=a)
    for _ in range(2):
        await run(database, a)
        async with database.write() as session:
            assert await lifecycle.requeue_interrupted(session) == 1
    async with database.write() as session:
        claim = await lifecycle.claim(session, a, max_attempts=2)
        assert claim.version is None
        assert [(v.id, v.error_key) for v in claim.failed] == [
            (a, lifecycle.EDIT_FAILED),
            (b, lifecycle.PARENT_FAILED),
        ]
    failed = await load(database, a)
    assert (failed.status, failed.error_detail) == (VersionStatus.FAILED, "too many attempts")


async def test_worker_claim_waits_for_a_pending_parent_and_fails_without_its_image(
    database: Database,
) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root)
    b = await queue(database, ALICE, parent_id=a)
    with pytest.raises(lifecycle.ParentPending):
        async with database.write() as session:
            await lifecycle.claim(session, b, max_attempts=3)
    assert (await load(database, b)).status is VersionStatus.QUEUED

    await run(database, b)  # claimed out of order, then its parent fails: b keeps running
    async with database.write() as session:
        assert [v.id for v in await lifecycle.fail(session, a, lifecycle.EDIT_FAILED)] == [a]
    async with database.write() as session:
        claim = await lifecycle.claim(session, b, max_attempts=3)
        assert claim.version is None
        assert [(v.id, v.error_key) for v in claim.failed] == [(b, lifecycle.PARENT_FAILED)]


async def test_hand_back_returns_a_running_version_without_counting_the_attempt(
    database: Database,
) -> None:
    await upload(database, ALICE)
    a = await queue(database, ALICE)
    await run(database, a)
    async with database.write() as session:
        assert await lifecycle.hand_back(session, a) is True
    handed = await load(database, a)
    assert (handed.status, handed.attempts, handed.started_at) == (VersionStatus.QUEUED, 0, None)
    async with database.write() as session:  # only running versions are handed back
        assert await lifecycle.hand_back(session, a) is False
        assert await lifecycle.hand_back(session, 10_000_000) is False
    await run(database, a)
    assert (await load(database, a)).attempts == 1


async def test_undelivered_without_a_platform_lists_every_platform(database: Database) -> None:
    await upload(database, ALICE)
    done = await edit(database, ALICE)
    await upload(database, ALICE_DISCORD)
    discord_done = await edit(database, ALICE_DISCORD)
    async with database.read() as session:
        rows = await lifecycle.undelivered(session, None)
        assert [(v.id, c.platform) for v, c in rows] == [(done, TG), (discord_done, "discord")]
        sizes = await lifecycle.done_sizes(session, {done, discord_done, 10_000_000})
        assert sizes == {done: SIZE, discord_done: SIZE}


async def finish_claimed(db: Database, version_id: int) -> None:
    async with db.write() as session:
        assert await lifecycle.mark_done(session, version_id, sha("done"), SIZE) is not None


# -- one owner -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
OWNER = Path("storage/lifecycle.py")
SCANNED = ("bot", "storage", "editor")
_SQL_STATUS_UPDATE = re.compile(r"update\s+versions\b.*\bset\b.*\bstatus\b", re.I | re.S)


def status_assignments(source: str) -> list[int]:
    """Lines of `source` that set a version's status (outside its owner, none may)."""

    def mentions_version_status(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id == "VersionStatus" for n in ast.walk(node))

    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for item in ast.walk(target):
                if (
                    isinstance(item, ast.Attribute)
                    and item.attr == "status"
                    and not (isinstance(item.value, ast.Name) and item.value.id == "self")
                ):
                    lines.append(node.lineno)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("Version", "values") and any(k.arg == "status" for k in node.keywords):
                lines.append(node.lineno)
            if (
                name == "setattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "status"
            ):
                lines.append(node.lineno)
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "status"
                    and mentions_version_status(value)
                ):
                    lines.append(node.lineno)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _SQL_STATUS_UPDATE.search(node.value)
        ):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_the_scan_finds_each_way_of_setting_a_status() -> None:
    sample = (
        "version.status = VersionStatus.DONE\n"
        "update(Version).values(status=VersionStatus.FAILED)\n"
        "Version(id=1, status=VersionStatus.QUEUED)\n"
        "session.execute(update(Version), [{'id': 1, 'status': VersionStatus.DONE}])\n"
        "setattr(version, 'status', 'done')\n"
        "text(\"UPDATE versions SET status = 'failed'\")\n"
        "self.status = 413  # an HTTP error's status, not a version's\n"
    )
    assert status_assignments(sample) == [1, 2, 3, 4, 5, 6]
    assert status_assignments((ROOT / OWNER).read_text()), "the owner sets statuses"


def test_only_the_lifecycle_module_sets_a_version_status() -> None:
    """Where does an edit's status change? In storage/lifecycle.py, and nowhere else."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.relative_to(ROOT) != OWNER
        for line in status_assignments(path.read_text())
    ]
    assert offenders == [], f"only {OWNER} may change a version's status: {offenders}"
