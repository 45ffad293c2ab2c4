"""Saved recipes and runs in the database, the batch cancel transition and quota charges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from editor.params import EditParams
from storage import lifecycle, limits, recipes, tree
from storage.database import Database
from storage.errors import QuotaExceeded
from storage.limits import LimitPolicy
from storage.models import VersionStatus
from storage.recipe_format import Recipe, RecipeStep, StepParams
from storage.types import Actor

ALICE = Actor("telegram", "chat", "alice")
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def recipe(name: str, steps: int = 1) -> Recipe:
    params = StepParams(
        num_inference_steps=5, guidance_scale=7.5, image_guidance_scale=1.5, resolution=512
    )
    return Recipe(
        name=name, steps=[RecipeStep(instruction=f"s{i}", params=params) for i in range(steps)]
    )


async def test_save_replace_list_delete_and_forget(database: Database) -> None:
    async with database.write() as session:
        assert not await recipes.save(session, "telegram", "alice", recipe("b"))
        assert not await recipes.save(session, "telegram", "alice", recipe("a"))
        assert await recipes.save(session, "telegram", "alice", recipe("b", steps=3))
        await recipes.save(session, "discord", "alice", recipe("c"))
    async with database.read() as session:
        mine = await recipes.all_of(session, "telegram", "alice")
        assert [(r.name, len(r.steps)) for r in mine] == [("a", 1), ("b", 3)]
        assert await recipes.get(session, "telegram", "bob", "a") is None
    async with database.write() as session:
        assert await recipes.delete_named(session, "telegram", "alice", "a")
        assert not await recipes.delete_named(session, "telegram", "alice", "a")
        assert await recipes.forget(session, "telegram", "alice") == 1
    async with database.read() as session:
        assert await recipes.all_of(session, "telegram", "alice") == []
        assert len(await recipes.all_of(session, "discord", "alice")) == 1


async def test_runs_and_cancelling_their_queued_steps(database: Database) -> None:
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        root = await tree.add_root(session, conversation, "sha", (64, 48))
        first = await tree.add_edit(session, conversation, root, "a", EditParams())
        second = await tree.add_edit(session, conversation, first, "b", EditParams())
        run = await recipes.add_run(
            session,
            conversation,
            "x",
            [{"photo": "p", "root": root.id, "versions": [first.id, second.id]}],
        )
        await lifecycle.claim_many(session, [first.id])
    async with database.read() as session:
        [(found, owner)] = await recipes.unfinished_runs(session)
        assert found.id == run.id and owner.user_id == "alice"
    async with database.write() as session:
        cancelled = await lifecycle.cancel_queued(session, [first.id, second.id])
        assert [v.id for v in cancelled] == [second.id]  # the running one finishes
    async with database.read() as session:
        states = await recipes.versions(session, [first.id, second.id])
        assert states[first.id].status is VersionStatus.RUNNING
        assert states[second.id].status is VersionStatus.CANCELLED
    async with database.write() as session:
        assert await recipes.finish_run(session, run.id)
        assert not await recipes.finish_run(session, run.id)
    async with database.read() as session:
        assert await recipes.unfinished_runs(session) == []


async def test_charge_and_remaining(database: Database) -> None:
    policy = LimitPolicy(burst=100, per_minute=60, daily_quota=10)
    async with database.write() as session:
        assert await limits.remaining(session, "telegram", "alice", policy, NOON) == 10
        await limits.consume(session, "telegram", "alice", policy, NOON)
        await limits.charge(session, "telegram", "alice", policy, NOON, 5)
        assert await limits.remaining(session, "telegram", "alice", policy, NOON) == 4
    with pytest.raises(QuotaExceeded):
        async with database.write() as session:
            await limits.consume(session, "telegram", "alice", policy, NOON)
            await limits.charge(session, "telegram", "alice", policy, NOON, 4)
    async with database.read() as session:  # refused whole: nothing was taken
        assert await limits.remaining(session, "telegram", "alice", policy, NOON) == 4
        assert await limits.remaining(session, "telegram", "alice", policy, NOON + 86_400) == 10
    unlimited = LimitPolicy(daily_quota=0)
    async with database.read() as session:
        assert await limits.remaining(session, "telegram", "alice", unlimited, NOON) is None
