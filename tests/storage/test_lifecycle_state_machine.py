"""A version's lifecycle against a plain-Python model, driven by Hypothesis (SQLite, PostgreSQL).

The model keeps, per version, what storage/lifecycle.py's diagram says: a status, the number of
attempts, whether its reply was delivered, its error and whether it has an image. Rules claim
(twice, and racing a cancel), hand back, finish, fail (with queued dependants), cancel, requeue
and deliver; after every step the database must agree with the model, and each status change
since the previous step must be an edge of the diagram (checked on the database alone).

On PostgreSQL the racing rules run their two transactions concurrently; the outcome must be
one of the two orders the model allows.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

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
from sqlalchemy import select, text

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.images import digest
from storage.lifecycle import EDIT_FAILED, PARENT_FAILED, ParentPending
from storage.migrate import upgrade
from storage.models import Version, VersionStatus
from storage.types import Actor

T = TypeVar("T")
Q, R, D, F, C = (
    VersionStatus.QUEUED,
    VersionStatus.RUNNING,
    VersionStatus.DONE,
    VersionStatus.FAILED,
    VersionStatus.CANCELLED,
)
ACTORS = (
    Actor("telegram", "chat", "alice"),
    Actor("telegram", "chat", "bob"),
    Actor("discord", "chat", "alice"),
)
SIZE = (64, 48)


@dataclass
class Node:
    """The model of one version."""

    actor: int
    parent: int | None
    status: VersionStatus
    attempts: int = 0
    delivered: bool = False
    error_key: str | None = None
    image: bool = False


Model = dict[int, Node]


# -- the model's transitions (pure, on a copy when two orders must be compared) --------------


def queued_dependants(model: Model, version_id: int) -> list[int]:
    found: list[int] = []
    frontier = {version_id}
    while frontier:
        children = {v for v, n in model.items() if n.parent in frontier and n.status is Q}
        found.extend(sorted(children))
        frontier = children
    return found


def model_fail(model: Model, version_id: int, key: str) -> list[int]:
    node = model.get(version_id)
    if node is None or node.status not in (Q, R):
        return []
    failed = [version_id, *queued_dependants(model, version_id)]
    for index, item in enumerate(failed):
        model[item].status = F
        model[item].error_key = key if index == 0 else PARENT_FAILED
    return failed


def model_cancel(model: Model, actor: int) -> set[int]:
    queued = [v for v, n in model.items() if n.actor == actor and n.status is Q]
    if not queued:
        return set()
    target = max(queued)
    cancelled = {target, *queued_dependants(model, target)}
    for item in cancelled:
        model[item].status = C
        model[item].delivered = True
    return cancelled


def model_claim_many(model: Model, ids: list[int]) -> set[int]:
    claimed = {v for v in ids if model[v].status is Q}
    for item in claimed:
        model[item].status = R
        model[item].attempts += 1
    return claimed


def model_finish(model: Model, ids: list[int]) -> set[int]:
    done = {v for v in ids if model[v].status is R}
    for item in done:
        model[item].status = D
        model[item].image = True
    return done


class LifecycleMachine(RuleBasedStateMachine):
    url: ClassVar[str]  # PostgreSQL, or a migrated SQLite template copied for each run

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder: Path | None = None
        url = self.url
        if url.startswith("sqlite"):
            self.folder = Path(tempfile.mkdtemp(prefix="pix2chat-lc-"))
            shutil.copy(url.removeprefix("sqlite:///"), self.folder / "db.sqlite")
            url = f"sqlite:///{self.folder / 'db.sqlite'}"
        self.db = Database(url)
        self.concurrent = not self.db.is_sqlite
        if self.concurrent:
            self.run(self._truncate())
        self.model: Model = {}
        self.seen: dict[int, VersionStatus] = {}
        self.counter = 0

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.db.close())
        finally:
            self.loop.close()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def _truncate(self) -> None:
        async with self.db.write() as session:
            await session.execute(text("TRUNCATE versions, conversations RESTART IDENTITY CASCADE"))

    def ids(self, *statuses: VersionStatus) -> list[int]:
        return sorted(v for v, n in self.model.items() if not statuses or n.status in statuses)

    def label(self) -> str:
        self.counter += 1
        return f"image-{self.counter}"

    async def both(self, first: Coroutine[Any, Any, Any], second: Coroutine[Any, Any, Any]) -> Any:
        """Run two transactions concurrently (PostgreSQL) or one after the other (SQLite)."""
        if self.concurrent:
            return await asyncio.gather(first, second)
        return await first, await second

    # -- database steps, one transaction each ------------------------------------------------

    async def _upload(self, actor: int) -> int:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTORS[actor])
            root = await tree.add_root(session, conversation, digest(self.label().encode()), SIZE)
            return root.id

    async def _queue(self, actor: int, parent_id: int) -> int:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTORS[actor])
            parent = await tree.get_version(session, conversation, parent_id)
            version = await tree.add_edit(session, conversation, parent, "edit", EditParams())
            return version.id

    async def _claim_many(self, ids: list[int]) -> set[int]:
        async with self.db.write() as session:
            return set(await lifecycle.claim_many(session, ids))

    async def _finish(self, ids: list[int]) -> set[int]:
        results = [lifecycle.Result(v, digest(f"result-{v}".encode()), SIZE) for v in ids]
        async with self.db.write() as session:
            return await lifecycle.mark_done_many(session, results)

    async def _fail(self, version_id: int, key: str) -> list[int]:
        async with self.db.write() as session:
            return [v.id for v in await lifecycle.fail(session, version_id, key, "detail")]

    async def _cancel(self, actor: int) -> set[int]:
        async with self.db.write() as session:
            conversation = await tree.get_or_create_conversation(session, ACTORS[actor])
            return {v.id for v in await lifecycle.cancel_latest(session, conversation)}

    # -- rules ---------------------------------------------------------------------------------

    @initialize()
    def photos(self) -> None:
        for actor in range(len(ACTORS)):
            root = self.run(self._upload(actor))
            self.model[root] = Node(actor, None, D, delivered=True, image=True)

    @rule(actor=st.integers(0, len(ACTORS) - 1))
    def upload(self, actor: int) -> None:
        root = self.run(self._upload(actor))
        self.model[root] = Node(actor, None, D, delivered=True, image=True)

    @rule(data=st.data())
    def queue_edit(self, data: st.DataObject) -> None:
        """New edits start queued, on a finished version or on a pending one (a chain)."""
        parent_id = data.draw(st.sampled_from(self.ids(Q, R, D)), label="parent")
        actor = self.model[parent_id].actor
        version_id = self.run(self._queue(actor, parent_id))
        assert version_id not in self.model, "a version id was reused"
        self.model[version_id] = Node(actor, parent_id, Q)

    @rule(data=st.data())
    def claim_many(self, data: st.DataObject) -> None:
        """The embedded scheduler's claim: only queued versions are taken."""
        ids = data.draw(st.lists(st.sampled_from(self.ids()), min_size=1, max_size=3, unique=True))
        assert self.run(self._claim_many(ids)) == model_claim_many(self.model, ids)

    @precondition(lambda self: bool(self.ids(Q)))
    @rule(data=st.data())
    def claim_twice(self, data: st.DataObject) -> None:
        """Two claims of one queued version (concurrent on PostgreSQL): exactly one gets it."""
        version_id = data.draw(st.sampled_from(self.ids(Q)), label="claimed twice")
        first, second = self.run(
            self.both(self._claim_many([version_id]), self._claim_many([version_id]))
        )
        assert sorted([first, second], key=len) == [set(), {version_id}]
        model_claim_many(self.model, [version_id])

    @rule(data=st.data(), max_attempts=st.integers(1, 3))
    def worker_claim(self, data: st.DataObject, max_attempts: int) -> None:
        """`pix2chat worker`'s claim: pending only, bounded attempts, a finished parent."""
        version_id = data.draw(st.sampled_from(self.ids()), label="worker claims")
        node = self.model[version_id]
        parent = self.model[node.parent] if node.parent is not None else None

        async def claim() -> lifecycle.Claim:
            async with self.db.write() as session:
                return await lifecycle.claim(session, version_id, max_attempts)

        if node.status not in (Q, R):
            outcome = self.run(claim())
            assert outcome.version is None and not outcome.failed
            return
        if node.attempts >= max_attempts:
            outcome = self.run(claim())
            assert outcome.version is None
            failed = model_fail(self.model, version_id, EDIT_FAILED)
            assert [v.id for v in outcome.failed] == failed
            return
        assert parent is not None
        if parent.status in (Q, R):
            with pytest.raises(ParentPending):
                self.run(claim())
            return
        outcome = self.run(claim())
        if parent.status is not D:
            failed = model_fail(self.model, version_id, PARENT_FAILED)
            assert outcome.version is None
            assert [v.id for v in outcome.failed] == failed
            return
        assert outcome.version is not None and outcome.version.id == version_id
        assert outcome.parent is not None and outcome.parent.id == node.parent
        node.status = R  # a running version is taken over: its job is being retried
        node.attempts += 1

    @rule(data=st.data())
    def hand_back(self, data: st.DataObject) -> None:
        version_id = data.draw(st.sampled_from(self.ids()), label="handed back")
        node = self.model[version_id]

        async def hand_back() -> bool:
            async with self.db.write() as session:
                return await lifecycle.hand_back(session, version_id)

        assert self.run(hand_back()) == (node.status is R)
        if node.status is R:
            node.status = Q
            node.attempts = max(0, node.attempts - 1)

    @rule()
    def requeue_interrupted(self) -> None:
        async def requeue() -> int:
            async with self.db.write() as session:
                return await lifecycle.requeue_interrupted(session)

        running = self.ids(R)
        assert self.run(requeue()) == len(running)
        for version_id in running:
            self.model[version_id].status = Q

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """Results are recorded for running versions only."""
        ids = data.draw(st.lists(st.sampled_from(self.ids()), min_size=1, max_size=3, unique=True))
        assert self.run(self._finish(ids)) == model_finish(self.model, ids)

    @rule(data=st.data(), key=st.sampled_from([EDIT_FAILED, "error.out_of_memory"]))
    def fail(self, data: st.DataObject, key: str) -> None:
        """A failure takes the queued edits built on it down too, and nothing else."""
        version_id = data.draw(st.sampled_from(self.ids()), label="fails")
        failed = self.run(self._fail(version_id, key))
        expected = model_fail(self.model, version_id, key)
        assert failed == expected

    @precondition(lambda self: any(self.model[v].parent in self.ids(Q, R) for v in self.ids(Q)))
    @rule(data=st.data())
    def fail_a_parent_with_queued_dependants(self, data: st.DataObject) -> None:
        """All queued dependants fail with parent_failed; running ones elsewhere go on."""
        parents = sorted({self.model[v].parent for v in self.ids(Q)} & set(self.ids(Q, R)))
        parent_id = data.draw(st.sampled_from(parents), label="failing parent")
        running_before = set(self.ids(R)) - {parent_id}
        failed = self.run(self._fail(parent_id, EDIT_FAILED))
        expected = model_fail(self.model, parent_id, EDIT_FAILED)
        assert len(expected) > 1
        assert failed == expected
        assert set(self.ids(R)) == running_before

    @rule(actor=st.integers(0, len(ACTORS) - 1))
    def cancel_latest(self, actor: int) -> None:
        assert self.run(self._cancel(actor)) == model_cancel(self.model, actor)

    @precondition(lambda self: bool(self.ids(Q)))
    @rule(data=st.data(), cancel_first=st.booleans())
    def cancel_racing_a_claim(self, data: st.DataObject, cancel_first: bool) -> None:
        """Cancel then claim: the claim gets nothing. Claim then cancel: it keeps running.

        On PostgreSQL the two run concurrently and either order may win.
        """
        actor = data.draw(st.sampled_from(sorted({self.model[v].actor for v in self.ids(Q)})))
        target = max(v for v in self.ids(Q) if self.model[v].actor == actor)
        if self.concurrent:
            cancelled, claimed = self.run(
                self.both(self._cancel(actor), self._claim_many([target]))
            )
        elif cancel_first:
            cancelled = self.run(self._cancel(actor))
            claimed = self.run(self._claim_many([target]))
            assert target in cancelled and claimed == set()
        else:
            claimed = self.run(self._claim_many([target]))
            cancelled = self.run(self._cancel(actor))
            assert claimed == {target} and target not in cancelled
        outcomes = []
        for cancel_wins in (True, False):
            model = copy.deepcopy(self.model)
            if cancel_wins:
                outcome = (model_cancel(model, actor), model_claim_many(model, [target]))
            else:
                got = model_claim_many(model, [target])
                outcome = (model_cancel(model, actor), got)
            outcomes.append((outcome, model))
        matching = [model for outcome, model in outcomes if outcome == (cancelled, claimed)]
        assert matching, f"cancel {cancelled} / claim {claimed} fits neither order"
        self.model = matching[0]

    @precondition(lambda self: bool(self.ids(R)))
    @rule(data=st.data())
    def finish_racing_a_failure(self, data: st.DataObject) -> None:
        """A result and a failure of one running version: exactly one of them lands."""
        version_id = data.draw(st.sampled_from(self.ids(R)), label="finishes or fails")
        done, failed = self.run(self.both(self._finish([version_id]), self._fail(version_id, "x")))
        if done:
            assert done == model_finish(self.model, [version_id]) and failed == []
        else:
            assert failed == model_fail(self.model, version_id, "x")

    @precondition(lambda self: any(not self.model[v].delivered for v in self.ids(D, F)))
    @rule(data=st.data())
    def mark_delivered(self, data: st.DataObject) -> None:
        waiting = [v for v in self.ids(D, F) if not self.model[v].delivered]
        version_id = data.draw(st.sampled_from(waiting), label="delivered")

        async def deliver() -> None:
            async with self.db.write() as session:
                await lifecycle.mark_delivered(session, version_id)

        self.run(deliver())
        self.model[version_id].delivered = True

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        async def read() -> dict[int, Node]:
            async with self.db.read() as session:
                rows = (await session.scalars(select(Version))).all()
                return {
                    v.id: Node(
                        -1,
                        v.parent_id,
                        VersionStatus(v.status),
                        v.attempts,
                        v.delivered,
                        v.error_key,
                        v.image_sha is not None and bool(v.width) and bool(v.height),
                    )
                    for v in rows
                }

        found = self.run(read())
        expected = {v: dataclass_replace_actor(n) for v, n in self.model.items()}
        assert found == expected
        for version_id, node in found.items():
            assert node.attempts >= 0
            if node.status is D:
                assert node.image, f"done version {version_id} has no image"
            before = self.seen.get(version_id)
            if before is not None and before is not node.status:
                assert (before, node.status) in lifecycle.ALLOWED, (version_id, before, node.status)
            self.seen[version_id] = node.status

    @invariant()
    def queue_and_deliveries_match_model(self) -> None:
        async def read() -> tuple[list[int], dict[str | None, list[int]]]:
            async with self.db.read() as session:
                queued = [v.id for v, _ in await lifecycle.queued_jobs(session)]
                waiting = {
                    platform: [v.id for v, _ in await lifecycle.undelivered(session, platform)]
                    for platform in ("telegram", "discord", None)
                }
                return queued, waiting

        queued, waiting = self.run(read())
        assert queued == self.ids(Q)
        for platform, ids in waiting.items():
            assert ids == [
                v
                for v in self.ids(D, F)
                if not self.model[v].delivered
                and (platform is None or ACTORS[self.model[v].actor].platform == platform)
            ]


def dataclass_replace_actor(node: Node) -> Node:
    """The model's node as the database shows it (the actor is the conversation's, not read)."""
    return Node(
        -1, node.parent, node.status, node.attempts, node.delivered, node.error_key, node.image
    )


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return f"sqlite:///{path}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_lifecycle_matches_model(backend: str, request: pytest.FixtureRequest) -> None:
    fixture = "sqlite_template" if backend == "sqlite" else "postgres_url"
    LifecycleMachine.url = str(request.getfixturevalue(fixture))
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
