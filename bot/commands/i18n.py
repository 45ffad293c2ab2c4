"""`pix2chat i18n update|check`: keep the Babel catalogues in step with the English texts.

The English texts in bot/service/messages.py are the source. `update` builds the gettext
template (bot/locale/pix2chat.pot: msgctxt = the key, msgid = the English text) and merges it
into every language's .po with Babel's own update (changed English texts become fuzzy, new
ones untranslated, removed ones dropped); the English .po is filled from the source. `check`
lists what is missing, fuzzy or has placeholders that differ from the English text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po, write_po

from bot.service import catalogues
from bot.service.messages import ENGLISH, Plural, placeholders, source_texts

PROJECT = "pix2chat"
STAMP = datetime(2026, 1, 1, tzinfo=UTC)
"""Fixed header dates, so a refresh that changes no text changes no file."""
HEADER = (
    "# pix2chat's messages.\n"
    "# Made by `pix2chat i18n update` from the English texts in bot/service/messages.py;\n"
    "# translate the empty msgstr entries, keep every {placeholder} as it is.\n"
    "#"
)
HEADER_FIELDS = {
    "project": PROJECT,
    "version": "1",
    "copyright_holder": "the pix2chat authors",
    "msgid_bugs_address": "see README.md",
    "last_translator": "the pix2chat authors",
    "creation_date": STAMP,
    "revision_date": STAMP,
    "header_comment": HEADER,
    "fuzzy": False,
}


def template() -> Catalog:
    """The .pot: every English text, its key as the context, its placeholders as a comment."""
    catalog = Catalog(**HEADER_FIELDS)  # type: ignore[arg-type]
    for key, source in ENGLISH.items():
        msgid: str | tuple[str, str] = (
            (source.singular, source.plural) if isinstance(source, Plural) else source
        )
        names = sorted(set().union(*(placeholders(t) for t in source_texts(key))))
        comments = [f"placeholders: {', '.join('{' + n + '}' for n in names)}"] if names else []
        if isinstance(source, Plural):
            comments.append(f"plural by {{{source.number}}}")
        catalog.add(msgid, context=str(key), auto_comments=comments)
    return catalog


def load(locale: str) -> Catalog:
    path = catalogues.po_path(locale)
    if not path.exists():
        catalog = Catalog(locale=Locale.parse(locale), **HEADER_FIELDS)  # type: ignore[arg-type]
        catalog.language_team = catalogues.display_name(locale)
        return catalog
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _write(catalog: Catalog, path: Path) -> bool:
    """Write if the text changed; True if it did."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, ignore_obsolete=True, include_previous=True)
    data = buffer.getvalue()
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def update(new_locales: tuple[str, ...] = ()) -> list[str]:
    """Refresh the .pot and every .po (plus `new_locales`); returns what changed, for printing."""
    pot = template()
    changed = []
    if _write(pot, catalogues.template_path()):
        changed.append(str(catalogues.template_path()))
    for locale in sorted(set(catalogues.available()) | set(new_locales)):
        catalog = load(locale)
        catalog.update(template(), update_header_comment=False)  # update() shares its messages
        catalog.revision_date = STAMP
        if locale == catalogues.SOURCE_LOCALE:
            _fill_from_source(catalog)
        if _write(catalog, catalogues.po_path(locale)):
            changed.append(str(catalogues.po_path(locale)))
    catalogues.available.cache_clear()
    catalogues.translations.cache_clear()
    return changed


def _fill_from_source(catalog: Catalog) -> None:
    """The English catalogue says what the source says (so it is complete by construction)."""
    for message in catalog:
        if not message.id:
            continue
        if isinstance(message.id, tuple | list):
            singular, plural = message.id
            forms = catalog.num_plurals
            message.string = tuple([singular] + [plural] * (forms - 1))
        else:
            message.string = message.id
        message.flags.discard("fuzzy")
        message.previous_id = []


@dataclass(frozen=True, slots=True)
class Problem:
    locale: str
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.locale}: {self.key}: {self.what}"


def check() -> list[Problem]:
    """Every key missing, untranslated, fuzzy or with wrong placeholders, in every catalogue."""
    problems: list[Problem] = []
    for locale in catalogues.available():
        if not catalogues.po_path(locale).exists():
            problems.append(Problem(locale, "-", "no catalogue file"))
            continue
        catalog = load(locale)
        for key, source in ENGLISH.items():
            problems += _check_entry(locale, catalog, key, source)
    return problems


def _check_entry(locale: str, catalog: Catalog, key: str, source: str | Plural) -> list[Problem]:
    texts = source_texts(key)
    message: Message | None = catalog.get(texts[0], context=str(key))
    if message is None:
        return [Problem(locale, key, "missing")]
    if message.fuzzy:
        return [Problem(locale, key, "fuzzy (the English text changed): check the translation")]
    if isinstance(source, Plural) != isinstance(message.id, tuple | list):
        return [Problem(locale, key, "singular/plural mismatch: run `pix2chat i18n update`")]
    if isinstance(source, Plural) and tuple(message.id) != texts:
        return [Problem(locale, key, "English plural changed: run `pix2chat i18n update`")]
    string = message.string
    forms = [str(f or "") for f in string] if isinstance(string, tuple | list) else [string or ""]
    if not all(forms) or (isinstance(source, Plural) and len(forms) != catalog.num_plurals):
        return [Problem(locale, key, "not translated")]
    expected = set().union(*(placeholders(t) for t in texts))
    problems = []
    for form in forms:
        found = placeholders(form)
        # a plural form may leave its number out ("one edit", "تعديلان"), nothing else
        optional = {source.number} if isinstance(source, Plural) else set()
        if not (expected - optional <= found <= expected):
            problems.append(
                Problem(locale, key, f"placeholders {sorted(found)} != {sorted(expected)}")
            )
    return problems
