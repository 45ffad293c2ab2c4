"""Candidate sets in the tree and their lifecycle, on SQLite and PostgreSQL: numbering, one
pending request per set, who leads a set (picked, best-scored, first), delivery of a set."""

from __future__ import annotations

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.models import CandidateOrigin, Conversation
from tests.storage.steps import ALICE, SIZE, TG, load, sha, state, upload


async def add_set(database: Database, count: int = 4) -> list[int]:
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        parent = await tree.head(session, conversation)
        assert parent is not None
        candidates = await tree.add_candidates(
            session,
            conversation,
            parent,
            "make it night",
            [EditParams(seed=seed) for seed in range(count)],
            CandidateOrigin.VARIATIONS.value,
        )
        return [v.id for v in candidates]


async def finish_with_scores(database: Database, scores: dict[int, float | None]) -> None:
    async with database.write() as session:
        await lifecycle.claim_many(session, list(scores))
    async with database.write() as session:
        await lifecycle.mark_done_many(
            session,
            [
                lifecycle.Result(vid, sha(f"result-{vid}"), SIZE, score=score)
                for vid, score in scores.items()
            ],
        )


async def test_a_set_is_numbered_and_counts_once_against_the_pending_cap(
    database: Database,
) -> None:
    await upload(database, ALICE)
    ids = await add_set(database)

    versions = [await load(database, vid) for vid in ids]
    assert [v.set_index for v in versions] == [1, 2, 3, 4]
    assert {v.set_id for v in versions} == {ids[0]}
    assert {v.parent_id for v in versions} == {versions[0].parent_id}
    async with database.read() as session:
        assert await tree.count_pending_for_user(session, TG, ALICE.user_id) == 1
        assert [v.id for v in await tree.candidates_of(session, ids[0])] == ids


async def test_the_head_is_the_best_scored_candidate_until_a_pick(database: Database) -> None:
    await upload(database, ALICE)
    ids = await add_set(database)
    await finish_with_scores(database, {ids[0]: 0.1, ids[1]: 0.7, ids[2]: 0.3, ids[3]: 0.2})

    head, _path = await state(database, ALICE)
    assert head == ids[1]
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        await tree.pick(
            session, conversation, await tree.get_version(session, conversation, ids[3])
        )
    head, _path = await state(database, ALICE)
    assert head == ids[3]
    async with database.read() as session:
        assert await lifecycle.set_leader(session, ids[0]) == ids[3]


async def test_unscored_candidates_lead_in_their_order_and_a_set_is_delivered_whole(
    database: Database,
) -> None:
    await upload(database, ALICE)
    ids = await add_set(database, count=3)
    await finish_with_scores(database, {ids[2]: None})  # the last one finishes first
    assert (await state(database, ALICE))[0] == ids[2]
    await finish_with_scores(database, {ids[0]: None, ids[1]: None})
    assert (await state(database, ALICE))[0] == ids[0]

    async with database.write() as session:
        await lifecycle.mark_delivered(session, ids[1])  # any candidate names its set
    assert all([(await load(database, vid)).delivered for vid in ids])


async def test_cancel_takes_the_whole_queued_set(database: Database) -> None:
    await upload(database, ALICE)
    ids = await add_set(database)
    async with database.write() as session:
        conversation = await session.get(
            Conversation, (await load(database, ids[0])).conversation_id
        )
        assert conversation is not None
        cancelled = await lifecycle.cancel_latest(session, conversation)
    assert sorted(v.id for v in cancelled) == ids
