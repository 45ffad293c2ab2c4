"""The gettext catalogues (Babel .po files in bot/locale/), loaded once per locale.

A wheel carries .mo files compiled by the build hook in setup.py. A source checkout or an
editable install may have none, or stale ones: a .mo older than its .po is ignored and the
.po is compiled in memory instead (a few milliseconds), so a catalogue is never out of date.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
from collections.abc import Iterable
from pathlib import Path

from babel import Locale, negotiate_locale
from babel.core import UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "pix2chat"
SOURCE_LOCALE = "en"
"""The language of the msgids (the English texts in bot/service/messages.py)."""


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def template_path() -> Path:
    return LOCALE_DIR / f"{DOMAIN}.pot"


@functools.cache
def available() -> tuple[str, ...]:
    """Every locale with a catalogue, English first."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return tuple(sorted(set(found) | {SOURCE_LOCALE}, key=lambda c: (c != SOURCE_LOCALE, c)))


@functools.cache
def translations(locale: str) -> gettext.NullTranslations:
    """The catalogue of `locale`; an unknown locale gets the English source texts."""
    if locale not in available():
        return gettext.NullTranslations()
    po = po_path(locale)
    if not po.exists():
        return gettext.NullTranslations()
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return gettext.GNUTranslations(handle)
    return gettext.GNUTranslations(io.BytesIO(compile_po(po)))


def compile_po(po: Path) -> bytes:
    """A .po file compiled to .mo bytes with Babel (fuzzy entries left out)."""
    with po.open("rb") as handle:
        catalog = read_po(handle)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def display_name(locale: str) -> str:
    """A language's own name for itself ("español", "العربية"), as its speakers read it."""
    return language_name(locale, locale)


def language_name(code: str, reader: str) -> str:
    """The name of language `code` in the language `reader` reads."""
    try:
        return Locale.parse(code).get_display_name(reader) or code
    except (ValueError, UnknownLocaleError):
        return code


_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")


def negotiate(preferred: Iterable[str | None]) -> str | None:
    """The first of `preferred` (BCP 47 tags: "es-419", "pt_BR", "AR") we have a catalogue for.

    A regional tag falls back to its language ("es-419" -> "es"); None if nothing matches.
    """
    tags = [t.strip().replace("_", "-") for t in preferred if t and _TAG.match(t.strip())]
    candidates = [c for tag in tags for c in (tag.lower(), tag.split("-")[0].lower())]
    return negotiate_locale(candidates, list(available()), sep="-")


def parse_accept_language(header: str | None) -> list[str]:
    """The tags of an Accept-Language header, most preferred first (q=0 means "not this")."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def is_right_to_left(locale: str) -> bool:
    """Whether the language is written right to left (Arabic, Hebrew, Persian...)."""
    try:
        return Locale.parse(locale).character_order == "right-to-left"
    except (ValueError, UnknownLocaleError):
        return False
