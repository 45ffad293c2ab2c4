"""Alembic environment: runs migrations on the connection or URL given by storage.migrate.

storage.migrate passes its own connection (`config.attributes["connection"]`) when it holds
the migration lock on it: PostgreSQL's advisory lock belongs to one session, so the upgrade
must run on that session for the lock to cover it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from storage.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
    given.commit()
else:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
