"""The fairness policy alone: no asyncio, no database, no model.

`FairLine` is driven the way the embedded scheduler drives it (enqueue, next_batch, take,
finish); test_scheduler.py checks the same rules end to end.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.work.fairness import FairLine, queue_priority
from bot.work.jobs import Job
from editor.params import EditParams

FAST = EditParams(num_inference_steps=2, resolution=256)
SLOW = EditParams(num_inference_steps=3, resolution=256)
SIZE = (64, 48)


class Jobs:
    """Numbered jobs of named users, each on its own finished photo unless told otherwise."""

    def __init__(self) -> None:
        self.next_id = 1
        self.names: dict[int, str] = {}

    def __call__(
        self,
        user: str,
        *,
        parent_id: int = 0,
        parent_size: tuple[int, int] | None = SIZE,
        params: EditParams = FAST,
    ) -> Job:
        version_id = self.next_id
        self.next_id += 1
        number = sum(1 for name in self.names.values() if name.startswith(user)) + 1
        self.names[version_id] = f"{user} {number}"
        return Job(version_id, user, parent_id, parent_size, f"{user} {number}", params)


def drain(line: FairLine, max_batch: int) -> list[list[str]]:
    """Run everything: each batch is taken, then finished, as the engine does."""
    ran = []
    while batch := line.next_batch(max_batch):
        line.take(batch)
        ran.append([job.instruction for job in batch])
        line.finish(batch)
    return ran


def test_users_take_turns_one_job_each() -> None:
    line, job = FairLine(), Jobs()
    for user in ("alice", "alice", "alice", "bob", "bob", "carol"):
        line.enqueue(job(user))
    fair = ["alice 1", "bob 1", "carol 1", "alice 2", "bob 2", "alice 3"]
    ids = {name: version_id for version_id, name in job.names.items()}
    assert [line.position(ids[name]) for name in fair] == [1, 2, 3, 4, 5, 6]
    assert len(line) == 6
    assert drain(line, 1) == [[name] for name in fair]
    assert len(line) == 0


def test_a_newcomer_goes_before_the_second_job_of_a_user_already_served() -> None:
    line, job = FairLine(), Jobs()
    alice = [job("alice") for _ in range(3)]
    for each in alice:
        line.enqueue(each)
    (first,) = line.next_batch(1)
    line.take([first])
    bob, carol = job("bob"), job("carol")
    line.enqueue(bob)
    line.enqueue(carol)
    assert line.position(first.version_id) == 0
    assert line.position(bob.version_id) == 1
    assert line.position(alice[1].version_id) == 3
    assert line.next_batch(4) == [bob, carol]  # alice is running: her next waits
    line.finish([first])
    assert drain(line, 1) == [["bob 1"], ["carol 1"], ["alice 2"], ["alice 3"]]


def test_the_first_in_line_picks_the_signature_up_to_max_batch() -> None:
    line, job = FairLine(), Jobs()
    line.enqueue(job("alice"))
    line.enqueue(job("alice"))
    line.enqueue(job("bob"))
    line.enqueue(job("carol", params=SLOW))
    line.enqueue(job("dave", parent_size=(48, 64)))  # another fitted size
    line.enqueue(job("erin"))
    line.enqueue(job("frank"))
    assert drain(line, 3) == [
        ["alice 1", "bob 1", "erin 1"],
        ["carol 1"],
        ["dave 1"],
        ["frank 1", "alice 2"],
    ]


def test_a_job_waits_for_its_parent_and_learns_its_size() -> None:
    line, job = FairLine(), Jobs()
    parent = job("alice")
    child = job("alice", parent_id=parent.version_id, parent_size=None)
    other = job("bob")
    for each in (parent, child, other):
        line.enqueue(each)
    batch = line.next_batch(4)
    assert batch == [parent, other]
    line.take(batch)
    line.finish(batch)
    assert line.next_batch(4) == []  # the parent is done, but its size is not known yet
    line.parent_done(parent.version_id, (256, 192))
    (ready,) = line.next_batch(4)
    assert (ready.version_id, ready.parent_size) == (child.version_id, (256, 192))


def test_discarded_jobs_leave_the_line_and_failed_parents_are_forgotten() -> None:
    line, job = FairLine(), Jobs()
    a1, b1, c1, a2 = job("alice"), job("bob"), job("carol"), job("alice")
    for each in (a1, b1, c1, a2):
        line.enqueue(each)
    line.take([a1])
    line.discard({c1.version_id, a1.version_id})  # a running job stays until it finishes
    assert c1.version_id not in line and a1.version_id in line
    assert [line.position(j.version_id) for j in (a1, b1, a2)] == [0, 1, 2]
    assert line.position(c1.version_id) is None
    line.finish([a1])
    assert a1.version_id not in line
    orphan = job("bob", parent_id=b1.version_id, parent_size=None)
    line.enqueue(orphan)
    line.forget_parents({b1.version_id})
    line.parent_done(b1.version_id, SIZE)  # nobody waits any more: nothing changes
    line.discard({orphan.version_id})
    assert drain(line, 4) == [["bob 1", "alice 2"]]
    assert len(line) == 0


def test_queue_priority_is_minus_the_pending_count_never_above_older_jobs() -> None:
    assert [queue_priority(pending, None) for pending in range(3)] == [0, -1, -2]
    assert queue_priority(1, -5) == -5  # an older waiting job already sits lower
    assert queue_priority(3, -1) == -3


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), min_size=1, max_size=30),
    max_batch=st.integers(min_value=1, max_value=4),
)
def test_no_users_kth_job_runs_before_another_waiting_users_first(
    arrivals: list[tuple[str, bool]], max_batch: int
) -> None:
    """Whoever waits for a first turn is served before anybody's second (or k-th) job.

    Each arrival is (user, whether one batch runs right after it); then the line drains. All
    jobs are compatible, so only fairness decides. Turns count since the user joined the line
    (a user whose jobs all ran leaves it; their next job is a first one again).
    """
    line, job = FairLine(), Jobs()
    queued: dict[str, list[int]] = {}
    turns: dict[str, int] = {}

    def run_one_batch() -> None:
        batch = line.next_batch(max_batch)
        users = [j.user_key for j in batch]
        assert len(set(users)) == len(users)  # one job per user at a time
        for j in batch:
            assert j.version_id == queued[j.user_key][0]  # a user's jobs run in order
        waiting_first = {u for u, ids in queued.items() if ids and not turns.get(u)} - set(users)
        kth = [u for u in users if turns.get(u)]
        assert not (kth and waiting_first), (users, waiting_first)
        if len(batch) < max_batch:  # room left: nobody who could run was left out
            assert {u for u, ids in queued.items() if ids} == set(users)
        line.take(batch)
        line.finish(batch)
        for u in users:
            queued[u].pop(0)
            turns[u] = turns.get(u, 0) + 1
            if not queued[u]:
                turns[u] = 0  # left the line

    for user, then_run in arrivals:
        new = job(user)
        line.enqueue(new)
        queued.setdefault(user, []).append(new.version_id)
        if then_run:
            run_one_batch()
    while len(line):
        run_one_batch()
    assert not any(queued.values())
