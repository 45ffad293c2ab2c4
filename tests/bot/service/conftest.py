"""Fixtures of the service tests: a running service on SQLite with the gated NullEditor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot.service.harness import Harness, running_service


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    return tmp_path / "images"


@pytest.fixture
async def h(sqlite_url: str, images_dir: Path) -> AsyncIterator[Harness]:
    async with running_service(sqlite_url, images_dir) as harness:
        yield harness
