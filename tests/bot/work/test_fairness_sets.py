"""Candidate sets in the fair line: one batch for a set, N units of work, and another user's
single edit pushed back by at most one batch (bot/work/fairness.py)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.work.fairness import FairLine
from bot.work.jobs import Job
from tests.bot.work.test_fairness import SLOW, Jobs, drain


def variation_set(job: Jobs, user: str, size: int = 4) -> list[Job]:
    """`size` candidates of one set, numbered by the first one's id."""
    jobs = [job(user) for _ in range(size)]
    first = jobs[0].version_id
    return [dataclasses.replace(j, set_id=first, set_size=size, scored=True) for j in jobs]


def test_a_set_runs_in_one_batch_and_its_user_then_waits_for_the_others() -> None:
    line, job = FairLine(), Jobs()
    for candidate in variation_set(job, "alice"):
        line.enqueue(candidate)
    line.enqueue(job("bob"))
    for candidate in variation_set(job, "alice"):
        line.enqueue(candidate)

    ran = drain(line, max_batch=4)
    assert ran == [
        ["alice 1", "alice 2", "alice 3", "alice 4"],
        ["bob 1"],  # Alice's next set does not fit beside Bob: it leads the next batch
        ["alice 5", "alice 6", "alice 7", "alice 8"],
    ]


def test_a_set_joins_a_batch_only_whole() -> None:
    line, job = FairLine(), Jobs()
    line.enqueue(job("bob"))
    for candidate in variation_set(job, "alice", size=3):
        line.enqueue(candidate)
    line.enqueue(job("carol"))

    assert drain(line, max_batch=4) == [["bob 1", "alice 1", "alice 2", "alice 3"], ["carol 1"]]


def test_a_set_larger_than_a_batch_is_split_and_still_finishes() -> None:
    line, job = FairLine(), Jobs()
    for candidate in variation_set(job, "alice"):
        line.enqueue(candidate)
    line.enqueue(job("bob"))

    ran = drain(line, max_batch=2)
    assert ran[0] == ["alice 1", "alice 2"]
    assert sorted(name for batch in ran for name in batch) == sorted(
        ["alice 1", "alice 2", "alice 3", "alice 4", "bob 1"]
    )
    assert ran[1] == ["bob 1"]


def test_a_set_waits_until_all_its_candidates_are_queued() -> None:
    line, job = FairLine(), Jobs()
    first, *rest = variation_set(job, "alice")
    line.enqueue(first)
    assert line.next_batch(4) == []
    for candidate in rest:
        line.enqueue(candidate)
    assert len(line.next_batch(4)) == 4


def test_a_set_is_one_signature_and_does_not_mix_with_other_settings() -> None:
    line, job = FairLine(), Jobs()
    line.enqueue(job("bob", params=SLOW))
    for candidate in variation_set(job, "alice", size=2):
        line.enqueue(candidate)
    assert drain(line, max_batch=4) == [["bob 1"], ["alice 1", "alice 2"]]


@settings(max_examples=60, deadline=None)
@given(
    sets_ahead=st.integers(min_value=0, max_value=4),
    set_size=st.integers(min_value=1, max_value=4),
    max_batch=st.integers(min_value=1, max_value=6),
    bob_edits=st.integers(min_value=1, max_value=4),
)
def test_variations_back_to_back_push_a_single_edit_back_by_at_most_one_batch(
    sets_ahead: int, set_size: int, max_batch: int, bob_edits: int
) -> None:
    """Whatever Alice queued, each of Bob's edits runs in the first or second batch after it
    becomes his next one (his previous edit finished), when set sizes fit a batch."""
    line, job = FairLine(), Jobs()
    for _ in range(sets_ahead):
        for candidate in variation_set(job, "alice", size=min(set_size, max_batch)):
            line.enqueue(candidate)
    bob_jobs = [job("bob") for _ in range(bob_edits)]
    for bob_job in bob_jobs:
        line.enqueue(bob_job)
    for _ in range(sets_ahead):
        for candidate in variation_set(job, "alice", size=min(set_size, max_batch)):
            line.enqueue(candidate)

    waited = 0
    while batch := line.next_batch(max_batch):
        line.take(batch)
        names = [j.instruction for j in batch]
        line.finish(batch)
        if any(name.startswith("bob") for name in names):
            assert waited <= 1, names
            waited = 0
        elif any(j.user_key == "bob" for j in bob_jobs if j.version_id in line):
            waited += 1
