"""Image stores shared by every process: the PostgreSQL-backed one (also on SQLite)."""

from __future__ import annotations

import pytest

from storage.images import DatabaseImageStore, ImageMissing, digest
from tests.scaleout.harness import photo


def test_database_image_store(db_url: str) -> None:
    store = DatabaseImageStore(db_url)
    try:
        data = photo("alice")
        sha = store.put(data)
        assert store.put(data) == sha == digest(data)
        assert store.get(sha) == data and store.exists(sha)
        store.delete(sha)
        assert not store.exists(sha)
        with pytest.raises(ImageMissing):
            store.get(sha)
    finally:
        store.close()
