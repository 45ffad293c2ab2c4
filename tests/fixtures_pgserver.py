"""A private PostgreSQL server for tests that stop, start or restart the database.

Outage tests cannot restart the shared server at 127.0.0.1:5432 (other tests use it), so they
get their own: initdb once per session into a temporary folder (trust auth, loopback only), on
a free port, from the PostgreSQL binaries Debian installs (/usr/lib/postgresql/<major>/bin).
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


def _free_port() -> int:
    """A free port below the kernel's ephemeral range.

    While the server is stopped, a port inside that range can be handed to an outgoing
    connection as its local port, and a client connecting to it may then connect to itself
    ("connection closed" instead of "connection refused"): outage tests would turn flaky.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.Random().sample(range(max(1024, low - 12_000), low), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class PrivateServer:
    """One PostgreSQL server of this test session: start, stop, restart, and its URLs."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = _free_port()
        self._user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            record = pwd.getpwnam(self._user)
            os.chown(self.root, record.pw_uid, record.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects every client, `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivateServer]:
    """A private PostgreSQL server, running; tests may stop and restart it (and must leave it
    running). Skipped without PostgreSQL binaries, except under CI, where that is a failure."""
    bin_dir = _binaries()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql")
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="pix2chat-pg-"))
    root.chmod(0o755)  # the server's own user must reach its folder below
    server = PrivateServer(bin_dir, root / "cluster")
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
