"""Slash-command descriptions in the user's language, from the same catalogues as replies.

Descriptions are written as `described(key)`: a discord.py `locale_str` whose message is the
English text and whose `key` extra names the catalogue entry; discord.py asks the
`CatalogueTranslator` for every Discord locale when it syncs the commands.
"""

from __future__ import annotations

from discord import Locale
from discord.app_commands import TranslationContextTypes, Translator, locale_str

from bot.service import catalogues
from bot.service.messages import SOURCE_LOCALE, Key, render


def described(key: Key) -> locale_str:
    """A command or option description: English for Discord, the key for the translator."""
    return locale_str(render(key, locale=SOURCE_LOCALE), key=key.value)


def catalogue_locale(locale: Locale | str | None) -> str | None:
    """The catalogue locale for a Discord locale ("es-ES", "es-419" -> "es"), if any."""
    if locale is None:
        return None
    return catalogues.negotiate([locale.value if isinstance(locale, Locale) else locale])


class CatalogueTranslator(Translator):
    """Translates `described` strings; Discord shows English where this returns None."""

    async def translate(
        self, string: locale_str, locale: Locale, context: TranslationContextTypes
    ) -> str | None:
        key = string.extras.get("key")
        target = catalogue_locale(locale)
        if key is None or target is None or target == SOURCE_LOCALE:
            return None
        return render(key, locale=target)
