"""Content-addressed image store: each distinct image is kept once, under its sha256."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from sqlalchemy import create_engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.database import sync_url
from storage.models import StoredImage, utcnow

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ImageMissing(LookupError):
    """The store has no image with this digest."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore(Protocol):
    """Where image bytes live; the database only keeps their digest.

    Put is idempotent (same bytes, same key); the scaled-out deployment swaps in a store every
    worker can reach.
    """

    def put(self, data: bytes) -> str:
        """Store the bytes if new; return their sha256."""

    def get(self, sha: str) -> bytes:
        """The stored bytes; ImageMissing if absent."""

    def delete(self, sha: str) -> None:
        """Remove the image if present."""

    def exists(self, sha: str) -> bool: ...


class FileImageStore:
    """Files under `root/ab/cdef....png`, written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha: str) -> Path:
        if not _SHA256.match(sha):
            raise ImageMissing(sha)
        return self.root / sha[:2] / f"{sha}.png"

    def put(self, data: bytes) -> str:
        sha = digest(data)
        path = self._path(sha)
        if path.exists():
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha: str) -> bytes:
        try:
            return self._path(sha).read_bytes()
        except FileNotFoundError as error:
            raise ImageMissing(sha) from error

    def delete(self, sha: str) -> None:
        self._path(sha).unlink(missing_ok=True)

    def exists(self, sha: str) -> bool:
        return self._path(sha).exists()

    def count(self) -> tuple[int, int]:
        """(files, bytes) stored: for doctor and benchmarks."""
        files = [p for p in self.root.glob("??/*.png")]
        return len(files), sum(p.stat().st_size for p in files)


class MemoryImageStore:
    """A dict-backed store for tests and benchmarks that should not touch the disk."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        sha = digest(data)
        self.blobs.setdefault(sha, data)
        return sha

    def get(self, sha: str) -> bytes:
        try:
            return self.blobs[sha]
        except KeyError as error:
            raise ImageMissing(sha) from error

    def delete(self, sha: str) -> None:
        self.blobs.pop(sha, None)

    def exists(self, sha: str) -> bool:
        return sha in self.blobs


class DatabaseImageStore:
    """Images in the database's `images` table, so every process and host reads the same ones.

    The scaled-out default: frontends and GPU workers on other hosts share nothing but
    PostgreSQL. Blocking, like every ImageStore (callers run it in a thread); it keeps its own
    small synchronous engine so image traffic never waits behind the async pool. Another
    backend (object storage) fits behind the same four methods.
    """

    def __init__(self, url: str, pool_size: int = 4) -> None:
        parsed = sync_url(url)
        options: dict[str, object] = {"pool_pre_ping": True}
        if parsed.get_backend_name() != "sqlite":
            options |= {"pool_size": pool_size, "max_overflow": pool_size}
        self._engine = create_engine(parsed, **options)
        self._dialect = parsed.get_backend_name()

    def close(self) -> None:
        self._engine.dispose()

    def put(self, data: bytes) -> str:
        sha = digest(data)
        insert = postgresql_insert if self._dialect == "postgresql" else sqlite_insert
        with self._engine.begin() as connection:
            connection.execute(
                insert(StoredImage)
                .values(sha256=sha, data=data, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["sha256"])
            )
        return sha

    def get(self, sha: str) -> bytes:
        with self._engine.connect() as connection:
            data = connection.scalar(select(StoredImage.data).where(StoredImage.sha256 == sha))
        if data is None:
            raise ImageMissing(sha)
        return bytes(data)

    def delete(self, sha: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(StoredImage).where(StoredImage.sha256 == sha))

    def exists(self, sha: str) -> bool:
        with self._engine.connect() as connection:
            found = connection.scalar(select(StoredImage.sha256).where(StoredImage.sha256 == sha))
        return found is not None

    def count(self) -> tuple[int, int]:
        """(images, bytes) stored: for doctor and benchmarks."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(func.count(), func.coalesce(func.sum(func.length(StoredImage.data)), 0))
            ).one()
        return int(row[0]), int(row[1])
