"""A process's database step: migrate on start, or wait for `pix2chat migrate` when told to."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from storage.migrate import SchemaTooOld, current, head, upgrade
from storage.startup import prepare_schema


def test_migrates_on_start_by_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    prepare_schema(url, wait_s=0, migrate=True, notify=print)
    assert current(url) == head()


def test_without_migrate_an_older_schema_is_refused_after_the_wait(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0001")
    said: list[str] = []
    with pytest.raises(SchemaTooOld) as raised:
        prepare_schema(url, wait_s=0.3, migrate=False, notify=said.append)
    expected = f"The database schema is at revision 0001, this pix2chat needs {head()}: "
    assert str(raised.value) == expected + "run `pix2chat migrate`"
    assert said == [expected + "run `pix2chat migrate`; waiting for it for up to 0.3 s"]
    assert current(url) == "0001"


def test_without_migrate_the_process_goes_on_once_someone_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0001")
    timer = threading.Timer(0.5, upgrade, args=(url,))
    timer.start()
    prepare_schema(url, wait_s=30, migrate=False, notify=print)
    timer.join()
    assert current(url) == head()
