"""The private PostgreSQL server the outage tests stop and restart."""

from __future__ import annotations

import psycopg
import pytest

from tests.fixtures_pgserver import PrivateServer


def test_the_private_server_stops_restarts_and_keeps_its_data(
    private_postgres: PrivateServer,
) -> None:
    url = private_postgres.create_database("pgserver_selftest")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (n int)")
        connection.execute("INSERT INTO kept VALUES (7)")
    private_postgres.stop()
    assert not private_postgres.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    private_postgres.start()
    private_postgres.restart()
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT n FROM kept").fetchone() == (7,)
