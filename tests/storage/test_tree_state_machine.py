"""The version tree against a plain-Python model, driven by Hypothesis (SQLite only).

The lifecycle has its own machine (test_lifecycle_state_machine.py); the fail and cancel rules
here check what they do to the tree.

The model is the architecture's description of the tree and nothing more: a parent per version,
a head, and per version the child that redo goes back down to (set when a child becomes the head
and when undo comes up from a child). After every step the database must agree with it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.errors import NothingToRedo, NothingToUndo
from storage.images import digest
from storage.migrate import upgrade
from storage.models import Version, VersionStatus
from storage.types import Actor

T = TypeVar("T")
ACTOR = Actor("telegram", "chat", "user")
SIZE = (64, 48)


class HistoryMachine(RuleBasedStateMachine):
    template: Path  # a migrated database file, copied for each run (migrating is the slow part)

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="pix2chat-sm-"))
        shutil.copy(self.template, self.folder / "db.sqlite")
        self.loop = asyncio.new_event_loop()
        self.db = Database(f"sqlite:///{self.folder / 'db.sqlite'}")
        # The model.
        self.parent: dict[int, int | None] = {}
        self.status: dict[int, VersionStatus] = {}
        self.instruction: dict[int, str | None] = {}
        self.redo_to: dict[int, int] = {}
        self.head: int | None = None
        self.seen: set[int] = set()
        self.counter = 0

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.db.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    # -- model helpers --------------------------------------------------------------------

    def done_ids(self) -> list[int]:
        return sorted(v for v, s in self.status.items() if s is VersionStatus.DONE)

    def model_path(self, version_id: int) -> list[int]:
        path: list[int] = []
        cursor: int | None = version_id
        while cursor is not None:
            path.append(cursor)
            cursor = self.parent[cursor]
        return path[::-1]

    def next_label(self) -> str:
        self.counter += 1
        return f"image-{self.counter}"

    def record(self, version_id: int, parent_id: int | None, status: VersionStatus) -> None:
        assert version_id not in self.parent, "a version id was reused"
        self.parent[version_id] = parent_id
        self.status[version_id] = status

    def became_head(self, version_id: int) -> None:
        self.head = version_id
        parent_id = self.parent[version_id]
        if parent_id is not None:
            self.redo_to[parent_id] = version_id

    # -- database steps -------------------------------------------------------------------

    async def _add_root(self, label: str) -> int:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTOR)
            root = await tree.add_root(session, conversation, digest(label.encode()), SIZE)
            return root.id

    async def _queue(self, parent_id: int, instruction: str, seed: int) -> int:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTOR)
            parent = await tree.get_version(session, conversation, parent_id)
            version = await tree.add_edit(
                session, conversation, parent, instruction, EditParams(seed=seed)
            )
            return version.id

    async def _run_and_finish(self, version_id: int, label: str) -> None:
        async with self.db.write() as session:
            assert await lifecycle.claim_many(session, [version_id]) == [version_id]
        async with self.db.write() as session:
            done = await lifecycle.mark_done(session, version_id, digest(label.encode()), SIZE)
            assert done is not None

    async def _edit(self, parent_id: int, instruction: str, seed: int) -> int:
        version_id = await self._queue(parent_id, instruction, seed)
        await self._run_and_finish(version_id, f"result-{version_id}")
        return version_id

    async def _move(self, step: str) -> int:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTOR)
            moved = await getattr(tree, step)(session, conversation)
            return int(moved.id)

    # -- rules ----------------------------------------------------------------------------

    @initialize()
    def first_photo(self) -> None:
        root = self.run(self._add_root(self.next_label()))
        self.record(root, None, VersionStatus.DONE)
        self.instruction[root] = None
        self.head = root

    @rule()
    def upload(self) -> None:
        root = self.run(self._add_root(self.next_label()))
        self.record(root, None, VersionStatus.DONE)
        self.instruction[root] = None
        self.head = root

    @precondition(lambda self: self.head is not None)
    @rule(instruction=st.sampled_from(["snow", "autumn", "add a hat"]))
    def edit(self, instruction: str) -> None:
        assert self.head is not None
        parent_id = self.head
        version_id = self.run(self._edit(parent_id, instruction, seed=0))
        self.record(version_id, parent_id, VersionStatus.DONE)
        self.instruction[version_id] = instruction
        self.became_head(version_id)

    @rule(data=st.data())
    def edit_on_random_existing_version(self, data: st.DataObject) -> None:
        parent_id = data.draw(st.sampled_from(self.done_ids()), label="branch from")
        version_id = self.run(self._edit(parent_id, "branch", seed=1))
        self.record(version_id, parent_id, VersionStatus.DONE)
        self.instruction[version_id] = "branch"
        self.became_head(version_id)

    @precondition(lambda self: self.head is not None and self.parent[self.head] is not None)
    @rule(seed=st.integers(min_value=1, max_value=2**32 - 1))
    def regenerate(self, seed: int) -> None:
        assert self.head is not None
        parent_id = self.parent[self.head]
        assert parent_id is not None
        instruction = self.instruction[self.head]
        assert instruction is not None
        version_id = self.run(self._edit(parent_id, instruction, seed))
        self.record(version_id, parent_id, VersionStatus.DONE)
        self.instruction[version_id] = instruction
        self.became_head(version_id)

    @rule()
    def undo(self) -> None:
        if self.head is None or self.parent[self.head] is None:
            with pytest.raises(NothingToUndo):
                self.run(self._move("undo"))
            return
        came_from, parent_id = self.head, self.parent[self.head]
        assert parent_id is not None
        assert self.run(self._move("undo")) == parent_id
        self.head = parent_id
        self.redo_to[parent_id] = came_from

    @rule()
    def redo(self) -> None:
        if self.head is None or self.head not in self.redo_to:
            with pytest.raises(NothingToRedo):
                self.run(self._move("redo"))
            return
        target = self.redo_to[self.head]
        assert self.run(self._move("redo")) == target
        self.head = target

    @precondition(lambda self: self.head is not None)
    @rule(chained=st.booleans(), claimed=st.booleans())
    def queue_edit_then_fail(self, chained: bool, claimed: bool) -> None:
        """A failed edit takes the queued edits built on it down too; the head stays put."""
        assert self.head is not None
        parent_id = self.head

        async def steps() -> list[int]:
            first = await self._queue(parent_id, "fails", seed=0)
            queued = [first]
            if chained:
                queued.append(await self._queue(first, "built on it", seed=0))
            if claimed:
                async with self.db.write() as session:
                    assert await lifecycle.claim_many(session, [first]) == [first]
            async with self.db.write() as session:
                failed = await lifecycle.fail(session, first, "error.edit_failed")
                assert [v.id for v in failed] == queued
                assert [v.error_key for v in failed] == ["error.edit_failed"] + [
                    "error.parent_failed"
                ] * (len(queued) - 1)
            return queued

        queued = self.run(steps())
        self.record(queued[0], parent_id, VersionStatus.FAILED)
        for child in queued[1:]:
            self.record(child, queued[0], VersionStatus.FAILED)

    @precondition(lambda self: self.head is not None)
    @rule(chained=st.booleans())
    def queue_edit_then_cancel(self, chained: bool) -> None:
        """Cancel takes the newest queued edit first; a chain is cancelled from its end."""
        assert self.head is not None
        parent_id = self.head

        async def steps() -> list[int]:
            first = await self._queue(parent_id, "cancelled", seed=0)
            queued = [first]
            if chained:
                queued.append(await self._queue(first, "also cancelled", seed=0))
            for expected in reversed(queued):
                async with self.db.write() as session:
                    conversation = await tree.get_or_create_conversation(session, ACTOR)
                    cancelled = await lifecycle.cancel_latest(session, conversation)
                    assert [v.id for v in cancelled] == [expected]
            async with self.db.write() as session:
                conversation = await tree.get_or_create_conversation(session, ACTOR)
                assert await lifecycle.cancel_latest(session, conversation) == []
            return queued

        queued = self.run(steps())
        self.record(queued[0], parent_id, VersionStatus.CANCELLED)
        for child in queued[1:]:
            self.record(child, queued[0], VersionStatus.CANCELLED)

    @precondition(lambda self: self.head is not None and self.parent[self.head] is not None)
    @rule()
    def edit_finishes_after_undo(self) -> None:
        """The user undoes while an edit runs: the finished edit still becomes the head."""
        assert self.head is not None
        parent_id = self.head
        came_up_to = self.parent[self.head]
        assert came_up_to is not None

        async def steps() -> int:
            version_id = await self._queue(parent_id, "slow", seed=0)
            assert await self._move("undo") == came_up_to
            await self._run_and_finish(version_id, f"result-{version_id}")
            return version_id

        version_id = self.run(steps())
        self.redo_to[came_up_to] = parent_id  # the undo
        self.record(version_id, parent_id, VersionStatus.DONE)
        self.instruction[version_id] = "slow"
        self.became_head(version_id)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        async def read() -> tuple[int | None, list[int], dict[int, tuple[int | None, str]]]:
            async with self.db.read() as session:
                conversation = await tree.find_conversation(session, ACTOR)
                assert conversation is not None
                head_path = (
                    [v.id for v in await tree.path_to(session, conversation.head_id)]
                    if conversation.head_id is not None
                    else []
                )
                rows = (
                    await session.execute(select(Version.id, Version.parent_id, Version.status))
                ).all()
                return (
                    conversation.head_id,
                    head_path,
                    {row.id: (row.parent_id, VersionStatus(row.status)) for row in rows},
                )

        head_id, head_path, rows = self.run(read())
        assert head_id == self.head
        assert head_path == (self.model_path(self.head) if self.head is not None else [])
        ids = set(rows)
        assert self.seen <= ids, f"versions disappeared: {sorted(self.seen - ids)}"
        self.seen = ids
        assert rows == {v: (self.parent[v], self.status[v]) for v in self.parent}

    @invariant()
    def every_done_version_is_reachable(self) -> None:
        """path_to of each finished version leads from a root to it, as in the model."""
        done = self.done_ids()

        async def paths() -> dict[int, list[int]]:
            async with self.db.read() as session:
                return {v: [p.id for p in await tree.path_to(session, v)] for v in done}

        found = self.run(paths())
        for version_id, path in found.items():
            assert path == self.model_path(version_id)
            assert self.status[path[0]] is VersionStatus.DONE and self.parent[path[0]] is None


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


def test_history_matches_model(migrated_template: Path) -> None:
    HistoryMachine.template = migrated_template
    run_state_machine_as_test(
        HistoryMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
