"""Shared test set-up: offline hub, and fixtures from the modules listed below."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fixtures_model",
    "tests.fixtures_families",
    "tests.fixtures_finetune",
    "tests.fixtures_db",
    "tests.fixtures_queue",
    "tests.fixtures_pgserver",
    "tests.fixtures_finishing",
]
