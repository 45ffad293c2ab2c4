"""Waiting for the database at start-up: the reason in words, backoff, and a bounded wait."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from storage.connect import (
    FIRST_DELAY_S,
    MAX_DELAY_S,
    DatabaseUnavailable,
    classify,
    probe,
    wait_until_reachable,
    where,
)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


class FakeClock:
    """time.monotonic and time.sleep for a wait that takes no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("message", "reason", "retry"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
            "Connection refused\n\tIs the server running on that host?",
            "connection refused",
            True,
        ),
        (
            'failed to resolve host "db": [Errno -3] Temporary failure in name resolution',
            "host name not found",
            True,
        ),
        ("connection timeout expired", "timed out", True),
        ("FATAL:  the database system is starting up", "the server is starting up", True),
        (
            'FATAL:  password authentication failed for user "pix2chat"',
            "authentication failed",
            False,
        ),
        ('FATAL:  role "nobody" does not exist', "authentication failed: no such role", False),
        ('FATAL:  database "pix2chat" does not exist', "the database does not exist", False),
        ("something new\nwith details", "something new", True),
    ],
)
def test_reasons_are_classified_from_the_driver_message(
    message: str, reason: str, retry: bool
) -> None:
    found = classify(Exception(message))
    assert (found.text, found.retry) == (reason, retry)


def test_where_names_host_and_port_without_credentials() -> None:
    assert where("postgresql://user:secret@db.example:6543/pix2chat") == "db.example:6543"
    assert where("postgresql://user:secret@db/pix2chat") == "db:5432"
    assert where("sqlite:////data/pix2chat.db") == "/data/pix2chat.db"


def test_an_unreachable_server_is_retried_with_backoff_then_refused_in_one_line() -> None:
    url = f"postgresql://pix2chat:secret@127.0.0.1:{_closed_port()}/pix2chat"
    fake = FakeClock()
    said: list[str] = []
    with pytest.raises(DatabaseUnavailable) as raised:
        wait_until_reachable(url, 60, said.append, sleep=fake.sleep, clock=fake.clock)
    where_ = url.split("@")[1].split("/")[0]
    assert said == [
        f"Cannot reach the database at {where_} (connection refused); retrying for up to 60 s"
    ]
    assert str(raised.value) == (
        f"Cannot reach the database at {where_} (connection refused); gave up after 60 s"
    )
    assert fake.sleeps[:5] == [FIRST_DELAY_S, 1.0, 2.0, 4.0, MAX_DELAY_S]
    assert max(fake.sleeps) == MAX_DELAY_S
    assert sum(fake.sleeps) == pytest.approx(60)
    assert "secret" not in str(raised.value)


def test_a_zero_wait_refuses_at_once() -> None:
    url = f"postgresql://u@127.0.0.1:{_closed_port()}/x"
    said: list[str] = []
    with pytest.raises(DatabaseUnavailable, match=r"\(connection refused\)$"):
        wait_until_reachable(url, 0, said.append)
    assert said == []


def test_a_server_that_comes_up_while_waiting_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.connect as connect

    attempts: list[int] = []
    real_probe = connect.probe

    def flaky(url: str) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            real_probe(f"postgresql://u@127.0.0.1:{_closed_port()}/x")

    monkeypatch.setattr(connect, "probe", flaky)
    fake = FakeClock()
    said: list[str] = []
    wait_until_reachable("postgresql://u@h/x", 60, said.append, sleep=fake.sleep, clock=fake.clock)
    assert len(attempts) == 3 and len(said) == 1 and fake.sleeps == [0.5, 1.0]


def test_failed_authentication_is_not_retried(postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "nosuchrole@", 1)
    fake = FakeClock()
    with pytest.raises(DatabaseUnavailable, match="authentication failed"):
        wait_until_reachable(url, 60, print, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


def test_a_sqlite_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseUnavailable, match="Cannot create the database folder"):
        probe(f"sqlite:///{blocker / 'sub' / 'pix2chat.db'}")
