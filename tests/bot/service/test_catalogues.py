"""The gettext catalogues: complete in every language, placeholders intact, plural forms by
language, fresh (a stale .mo never wins), and compiled into the wheel by the build hook."""

from __future__ import annotations

import gettext
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from bot.commands import i18n
from bot.service import catalogues
from bot.service.messages import ENGLISH, Key, Phrase, render
from bot.service.replies import wait_phrase

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def locale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch copy of bot/locale that the catalogue code reads instead."""
    copy = tmp_path / "locale"
    shutil.copytree(catalogues.LOCALE_DIR, copy, ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(catalogues, "LOCALE_DIR", copy)
    catalogues.available.cache_clear()
    catalogues.translations.cache_clear()
    yield copy
    catalogues.available.cache_clear()
    catalogues.translations.cache_clear()


def _edit_po(locale: str, change: object) -> None:
    path = catalogues.po_path(locale)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    change(catalog)  # type: ignore[operator]
    buffer = io.BytesIO()
    write_po(buffer, catalog)
    path.write_bytes(buffer.getvalue())
    catalogues.translations.cache_clear()


def test_english_arabic_and_spanish_are_there() -> None:
    assert {"en", "ar", "es"} <= set(catalogues.available())
    assert catalogues.available()[0] == "en"


def test_every_key_is_in_every_catalogue_with_its_placeholders() -> None:
    """Fails when a Key has no translation in some language, a fuzzy one, a plural with the
    wrong number of forms, or placeholders unlike the English: run `pix2chat i18n update`,
    then translate what it lists."""
    problems = i18n.check()
    assert not problems, "\n".join(str(p) for p in problems)


def test_the_template_is_up_to_date_with_the_english_texts() -> None:
    """A Key added or reworded without `pix2chat i18n update` fails here."""
    buffer = io.BytesIO()
    write_po(buffer, i18n.template(), width=100, ignore_obsolete=True, include_previous=True)
    assert catalogues.template_path().read_bytes() == buffer.getvalue()


def test_the_check_finds_missing_fuzzy_and_broken_entries(locale_copy: Path) -> None:
    def damage_spanish(catalog: object) -> None:
        catalog.delete(ENGLISH[Key.UNDO_DONE], context=Key.UNDO_DONE.value)  # type: ignore[attr-defined]
        edit = catalog.get(ENGLISH[Key.EDIT_QUEUED], context=Key.EDIT_QUEUED.value)  # type: ignore[attr-defined]
        edit.string = "En marcha: “{instrucción}”."  # a translated placeholder
        catalog.get(ENGLISH[Key.RESET_DONE], context=Key.RESET_DONE.value).flags.add("fuzzy")  # type: ignore[attr-defined]

    _edit_po("es", damage_spanish)
    found = {(p.locale, p.key) for p in i18n.check()}
    assert found == {("es", Key.UNDO_DONE), ("es", Key.EDIT_QUEUED), ("es", Key.RESET_DONE)}
    # what the check reports missing is rendered in English, not lost
    assert render(Key.UNDO_DONE, locale="es") == ENGLISH[Key.UNDO_DONE]


def test_a_new_key_is_reported_until_translated(
    locale_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ENGLISH, "help", ENGLISH[Key.HELP] + " Have fun!")  # reworded
    changed = i18n.update()
    assert str(catalogues.template_path()) in changed
    problems = {(p.locale, p.key, p.what.split(" ")[0]) for p in i18n.check()}
    assert problems == {("ar", "help", "fuzzy"), ("es", "help", "fuzzy")}
    assert "Have fun!" in render(Key.HELP, locale="en")  # English follows the source at once


def test_rendering_in_arabic_and_spanish() -> None:
    assert render(Key.UNDO_DONE, locale="ar") == "عدنا إلى النسخة السابقة."
    assert render(Key.UNDO_DONE, locale="es") == "De vuelta a la versión anterior."
    queued = render(Key.EDIT_QUEUED, {"instruction": "add snow", "position": 2}, "es")
    assert queued == "En marcha: “add snow”. Vas el n.º 2 en la cola."


@pytest.mark.parametrize(
    ("count", "arabic"),
    [
        (0, "لم يُلغَ أي تعديل منتظر."),
        (1, "أُلغي تعديل واحد منتظر."),
        (2, "أُلغي تعديلان منتظران."),
        (3, "أُلغيت 3 تعديلات منتظرة."),
        (11, "أُلغي 11 تعديلًا منتظرًا."),
        (100, "أُلغي 100 تعديل منتظر."),
    ],
)
def test_arabic_has_its_six_plural_forms(count: int, arabic: str) -> None:
    assert render(Key.CANCEL_DONE, {"count": count}, "ar") == arabic


def test_english_and_spanish_plurals() -> None:
    assert render(Key.CANCEL_DONE, {"count": 1}, "en") == "Cancelled 1 queued edit."
    assert render(Key.CANCEL_DONE, {"count": 4}, "en") == "Cancelled 4 queued edits."
    assert render(Key.CANCEL_DONE, {"count": 1}, "es") == "He cancelado 1 edición en cola."
    assert render(Key.CANCEL_DONE, {"count": 4}, "es") == "He cancelado 4 ediciones en cola."


def test_phrases_inside_a_message_follow_its_language() -> None:
    args = {"wait": wait_phrase(150)}
    assert render(Key.ERROR_RATE_LIMITED, args, "en").endswith(
        "wait 2 minutes before the next edit."
    )
    assert "دقيقتين" in render(Key.ERROR_RATE_LIMITED, args, "ar")
    assert "2 minutos" in render(Key.ERROR_RATE_LIMITED, args, "es")
    seed = {"name": "seed mode", "allowed": Phrase(Key.OPTION_SEED_MODE)}
    assert render(Key.ERROR_INVALID_SETTING, seed, "es") == (
        "seed mode debe ser random (aleatoria) o fixed (fija)."
    )


def test_unknown_locales_and_keys_fall_back() -> None:
    assert render(Key.UNDO_DONE, locale="fr") == ENGLISH[Key.UNDO_DONE]
    assert render(Key.UNDO_DONE, locale="../../etc") == ENGLISH[Key.UNDO_DONE]
    assert render("no.such_key", locale="es") == render(Key.ERROR_GENERIC, locale="es")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["ar"], "ar"),
        (["es-419"], "es"),
        (["es_ES"], "es"),
        (["AR-EG"], "ar"),
        (["en-GB"], "en"),
        (["fr", "es"], "es"),
        (["fr", "de"], None),
        ([None, ""], None),
        (["<script>"], None),
    ],
)
def test_platform_tags_are_negotiated(tags: list[str | None], expected: str | None) -> None:
    assert catalogues.negotiate(tags) == expected


def test_accept_language_is_read_in_order_of_preference() -> None:
    header = "fr-CH, fr;q=0.9, es;q=0.95, de;q=0, *;q=0.5"
    assert catalogues.parse_accept_language(header) == ["fr-CH", "es", "fr"]
    assert catalogues.parse_accept_language(None) == []
    assert catalogues.parse_accept_language("ar;q=oops, es") == ["es"]


def test_right_to_left_languages() -> None:
    assert catalogues.is_right_to_left("ar")
    assert not catalogues.is_right_to_left("es")
    assert not catalogues.is_right_to_left("no-such")


def test_a_stale_mo_is_ignored_and_a_fresh_one_is_used(locale_copy: Path) -> None:
    po = catalogues.po_path("es")
    mo = po.with_suffix(".mo")

    def reword(catalog: object) -> None:
        undo = catalog.get(ENGLISH[Key.UNDO_DONE], context=Key.UNDO_DONE.value)  # type: ignore[attr-defined]
        undo.string = "Versión anterior (vieja)."

    old = po.read_bytes()
    _edit_po("es", reword)
    mo.write_bytes(catalogues.compile_po(po))
    po.write_bytes(old)
    os.utime(mo, (po.stat().st_mtime - 60, po.stat().st_mtime - 60))  # .po edited after
    catalogues.translations.cache_clear()
    assert render(Key.UNDO_DONE, locale="es") == "De vuelta a la versión anterior."

    os.utime(mo, (po.stat().st_mtime + 60, po.stat().st_mtime + 60))  # compiled after
    catalogues.translations.cache_clear()
    assert render(Key.UNDO_DONE, locale="es") == "Versión anterior (vieja)."


def test_the_build_hook_compiles_every_catalogue(tmp_path: Path) -> None:
    """setup.py's build_py (what `pip install .` and the Dockerfile run) writes the .mo files."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.mo")
    for package in ("bot", "editor", "storage"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    built = tmp_path / "build"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "-d", str(built)],
        cwd=source,
        check=True,
        capture_output=True,
    )
    for locale in ("en", "ar", "es"):
        mo = built / "bot" / "locale" / locale / "LC_MESSAGES" / "pix2chat.mo"
        with mo.open("rb") as handle:
            compiled = gettext.GNUTranslations(handle)
        text = compiled.pgettext(Key.UNDO_DONE.value, ENGLISH[Key.UNDO_DONE])
        assert text == render(Key.UNDO_DONE, locale=locale)
        assert (mo.parent / "pix2chat.po").exists()
