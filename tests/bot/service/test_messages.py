"""The message catalogue: every key the code uses exists, every entry is used, and every
`UserError` names a real entry.

Keys are written as `Key` constants in `bot`; layers below it (`bot.work`, `storage`, `editor`)
spell them as string literals, so the source tree is scanned for both.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import bot
import editor
import storage
from bot.service.messages import ENGLISH, Key, render
from bot.service.replies import BUTTON_LABELS, Action
from editor.errors import UserError

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "bot", ROOT / "storage", ROOT / "editor"]
CATALOGUE_MODULE = ROOT / "bot" / "service" / "messages.py"
PREFIXES = sorted({key.split(".")[0] for key in ENGLISH if "." in key})
LITERAL = re.compile(r"""["'](?P<key>(?:""" + "|".join(PREFIXES) + r""")\.[a-z_]+)["']""")
FILE_SUFFIXES = {"db", "py", "js", "css", "html", "json", "png", "jpg", "jpeg", "txt", "toml"}
"""Literals like "history.db" are file names, not keys."""
CONSTANT = re.compile(r"\bKey\.(?P<name>[A-Z_]+)\b")


def _sources() -> dict[Path, str]:
    """Python sources and the web page's script, except the catalogue itself."""
    files = [p for folder in SOURCES for p in [*folder.rglob("*.py"), *folder.rglob("*.js")]]
    return {p: p.read_text(encoding="utf-8") for p in files if p != CATALOGUE_MODULE}


def _literal_keys() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path, text in _sources().items():
        for match in LITERAL.finditer(text):
            if match["key"].rsplit(".", 1)[1] in FILE_SUFFIXES:
                continue
            found.setdefault(match["key"], []).append(path)
    return found


def _constant_names() -> set[str]:
    return {m["name"] for text in _sources().values() for m in CONSTANT.finditer(text)}


def _user_errors() -> set[type[UserError]]:
    """Every UserError subclass in the three packages (imported, so none is missed)."""
    for package in (bot, storage, editor):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".testing" in module.name or module.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(module.name)
            except ImportError:  # optional extras (e.g. a chat library) may be missing
                continue
    found: set[type[UserError]] = set()
    todo = [UserError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_the_catalogue_is_exactly_the_named_keys() -> None:
    assert set(ENGLISH) == {key.value for key in Key}
    for key in Key:
        assert key.name == key.value.upper().replace(".", "_"), key


def test_every_key_written_as_a_literal_exists() -> None:
    unknown = {k: v for k, v in _literal_keys().items() if k not in ENGLISH}
    assert not unknown, unknown


def test_every_key_constant_exists() -> None:
    unknown = _constant_names() - {key.name for key in Key}
    assert not unknown, unknown


def test_every_user_error_names_a_catalogue_entry() -> None:
    errors = _user_errors()
    assert len(errors) > 20  # the scan found the subclasses of every package
    missing = {cls.__qualname__: cls.key for cls in errors if cls.key not in ENGLISH}
    assert not missing, missing


def test_every_button_label_exists() -> None:
    assert set(BUTTON_LABELS) == set(Action)
    assert set(BUTTON_LABELS.values()) <= set(Key)


def test_every_catalogue_entry_is_used() -> None:
    used = set(_literal_keys()) | {Key[name].value for name in _constant_names()}
    unused = sorted(set(ENGLISH) - used)
    assert not unused, f"catalogue entries nothing refers to: {unused}"


@pytest.mark.parametrize("key", list(Key))
def test_every_entry_renders_without_arguments(key: Key) -> None:
    """A missing argument leaves the template as it is instead of failing."""
    assert render(key)
