"""Text formatting the way the Bot API server does it: parse modes, entities, UTF-16 offsets.

The fake applies these rules so that tests see what a real chat would show. A bot that puts a
user's prompt into an HTML message without escaping ``<`` fails here exactly as it would fail
against Telegram, instead of passing a test and breaking in production.

Offsets and lengths of entities count UTF-16 code units, as in the Bot API; error messages count
UTF-8 bytes ("at byte offset N"), as Telegram's do.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]


class EntityParseError(ValueError):
    """A text that Telegram would refuse with "Bad Request: can't parse entities: ..."."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: characters outside the BMP (most emoji) count twice."""
    return len(text.encode("utf-16-le")) // 2


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of ``text[index]``, the unit Telegram's parse errors report."""
    return len(text[:index].encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Entities Telegram detects by itself in what users write
# ---------------------------------------------------------------------------------------------

_COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@])")


def detect_entities(text: str) -> list[JSONDict]:
    """The entities Telegram adds to what a user writes: /commands (anywhere in the text, though
    PTB's CommandHandler only reacts to one at offset 0) and @mentions.

    "/start@pix2chat_bot" is one bot_command entity, not a command plus a mention.
    """
    found = [("bot_command", m.start(), m.end()) for m in _COMMAND.finditer(text)]
    found += [("mention", m.start(), m.end()) for m in _MENTION.finditer(text)]
    return [
        _entity(kind, text, start, end) for kind, start, end in sorted(found, key=lambda f: f[1])
    ]


def _entity(kind: str, text: str, start: int, end: int, **extra: Any) -> JSONDict:
    """A MessageEntity for ``text[start:end]`` (Python indexes in, UTF-16 units out)."""
    offset = utf16_len(text[:start])
    return {"offset": offset, "length": utf16_len(text[start:end]), "type": kind, **extra}


# ---------------------------------------------------------------------------------------------
# Parse modes
# ---------------------------------------------------------------------------------------------


@dataclass
class _Open:
    """An entity whose start tag or marker has been read, but not its end yet."""

    name: str
    kind: str
    start: int  # UTF-16 offset in the output text
    source_index: int  # index in the input, for error messages
    extra: JSONDict = field(default_factory=dict)


@dataclass
class _Builder:
    """Collects plain text and finished entities while a formatted text is read."""

    parts: list[str] = field(default_factory=list)
    entities: list[JSONDict] = field(default_factory=list)
    offset: int = 0  # UTF-16 length of the text so far

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.offset += utf16_len(text)

    def close(self, opened: _Open) -> None:
        length = self.offset - opened.start
        if length > 0:  # Telegram drops empty entities
            entity = {"offset": opened.start, "length": length, "type": opened.kind}
            self.entities.append({**entity, **opened.extra})

    def result(self) -> tuple[str, list[JSONDict]]:
        return "".join(self.parts), sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))


def apply_parse_mode(text: str, parse_mode: str | None) -> tuple[str, list[JSONDict]]:
    """Plain text and entities for ``text`` sent with ``parse_mode`` (None: text unchanged).

    Legacy "Markdown" is passed through unparsed: it is deprecated and pix2chat does not use it.
    """
    mode = (parse_mode or "").lower()
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode in ("", "markdown"):
        return text, []
    raise EntityParseError(f"Unsupported parse_mode {parse_mode!r}")


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG_NAME = re.compile(r"[A-Za-z0-9-]*")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});")


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: the tags it supports, and its errors for everything else."""
    out = _Builder()
    stack: list[_Open] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<" and text.startswith("</", i):
            i = _html_end_tag(text, i, stack, out)
        elif char == "<":
            i = _html_start_tag(text, i, stack, out)
        elif char == "&":
            i = _html_entity(text, i, out)
        else:
            out.add(char)
            i += 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.result()


def _html_start_tag(text: str, i: int, stack: list[_Open], out: _Builder) -> int:
    name_match = _TAG_NAME.match(text, i + 1)
    assert name_match is not None  # the pattern matches the empty string
    name = name_match.group(0).lower()
    end = text.find(">", name_match.end())
    if name not in _HTML_TAGS:
        raise EntityParseError(
            f'Unsupported start tag "{name}" at byte offset {byte_offset(text, i)}'
        )
    if end < 0:
        raise EntityParseError(f"Unclosed start tag at byte offset {byte_offset(text, i)}")
    attributes = {
        m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTRIBUTE.finditer(text[name_match.end() : end])
        if m.group(1)
    }
    kind, extra = _html_entity_kind(name, attributes, stack)
    if kind is None:
        raise EntityParseError(
            f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(text, i)}'
        )
    stack.append(_Open(name, kind, out.offset, i, extra))
    return end + 1


def _html_entity_kind(
    name: str, attributes: dict[str, str], stack: list[_Open]
) -> tuple[str | None, JSONDict]:
    """Entity type and extra fields for a start tag; None for a span that is no spoiler."""
    kind = _HTML_TAGS[name]
    if name == "span" and attributes.get("class") != "tg-spoiler":
        return None, {}
    if name == "a":
        return "text_link", {"url": attributes.get("href", "")}
    if name == "tg-emoji":
        return kind, {"custom_emoji_id": attributes.get("emoji-id", "")}
    if name == "blockquote" and "expandable" in attributes:
        return "expandable_blockquote", {}
    if name == "code" and stack and stack[-1].name == "pre":
        language = attributes.get("class", "").removeprefix("language-")
        if language:
            stack[-1].extra["language"] = language
    return kind, {}


def _html_end_tag(text: str, i: int, stack: list[_Open], out: _Builder) -> int:
    end = text.find(">", i)
    if end < 0:
        raise EntityParseError(f"Unclosed end tag at byte offset {byte_offset(text, i)}")
    name = text[i + 2 : end].strip().lower()
    if not stack:
        raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset(text, i)}")
    if stack[-1].name != name:
        raise EntityParseError(
            f"Unmatched end tag at byte offset {byte_offset(text, i)}, "
            f'expected "</{stack[-1].name}>", found "</{name}>"'
        )
    out.close(stack.pop())
    return end + 1


def _html_entity(text: str, i: int, out: _Builder) -> int:
    """Decode ``&lt;``-style entities; a bare ``&`` stays literal, as Telegram tolerates it."""
    match = _HTML_ENTITY.match(text, i)
    if match:
        decoded = html.unescape(match.group(0))
        if decoded != match.group(0):
            out.add(decoded)
            return match.end()
    out.add("&")
    return i + 1


_MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough"}
_MDV2_MARKERS["||"] = "spoiler"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2: markers, code, links, and the "is reserved" error for the rest."""
    out = _Builder()
    stack: list[_Open] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.add(text[i + 1])
            i += 2
        elif char == "`":
            i = _mdv2_code(text, i, out)
        elif char == "[":
            stack.append(_Open("[", "text_link", out.offset, i))
            i += 1
        elif char == "]" and stack and stack[-1].name == "[":
            i = _mdv2_link_end(text, i, stack.pop(), out)
        elif (marker := _mdv2_marker(text, i)) is not None:
            _mdv2_toggle(marker, i, stack, out)
            i += len(marker)
        elif char in _MDV2_RESERVED:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        else:
            out.add(char)
            i += 1
    if stack:
        opened = stack[-1]
        name = _MDV2_NAMES.get(opened.kind, opened.kind)
        raise EntityParseError(
            f"Can't find end of {name} entity at byte offset "
            f"{byte_offset(text, opened.source_index)}"
        )
    return out.result()


def _mdv2_marker(text: str, i: int) -> str | None:
    for marker in ("__", "||", "*", "_", "~"):
        if text.startswith(marker, i):
            return marker
    return None


def _mdv2_toggle(marker: str, i: int, stack: list[_Open], out: _Builder) -> None:
    """Close the innermost open entity of this marker's kind, or open a new one."""
    kind = _MDV2_MARKERS[marker]
    for position in range(len(stack) - 1, -1, -1):
        if stack[position].kind == kind:
            out.close(stack.pop(position))
            return
    stack.append(_Open(marker, kind, out.offset, i))


def _mdv2_code(text: str, i: int, out: _Builder) -> int:
    """Inline `code` or a ```pre``` block, inside which only ` and \\ are escaped."""
    fence = "```" if text.startswith("```", i) else "`"
    body_start = i + len(fence)
    j = body_start
    body: list[str] = []
    while j < len(text) and not text.startswith(fence, j):
        if text[j] == "\\" and j + 1 < len(text):
            j += 1
        body.append(text[j])
        j += 1
    if j >= len(text):
        name = "Pre" if fence == "```" else "Code"
        raise EntityParseError(
            f"Can't find end of {name} entity at byte offset {byte_offset(text, i)}"
        )
    content = "".join(body)
    extra: JSONDict = {}
    if fence == "```":
        first_line, newline, rest = content.partition("\n")
        if newline and first_line and " " not in first_line:
            extra["language"] = first_line
            content = rest
    start = out.offset
    out.add(content)
    out.close(_Open(fence, "pre" if fence == "```" else "code", start, i, extra))
    return j + len(fence)


def _mdv2_link_end(text: str, i: int, opened: _Open, out: _Builder) -> int:
    """At the ``]`` of ``[label](url)``: read the URL and finish the text_link entity."""
    if not text.startswith("(", i + 1):
        raise EntityParseError(
            "Character ']' is reserved and must be escaped with the preceding '\\'"
        )
    j = i + 2
    url: list[str] = []
    while j < len(text) and text[j] != ")":
        if text[j] == "\\" and j + 1 < len(text):
            j += 1
        url.append(text[j])
        j += 1
    if j >= len(text):
        raise EntityParseError(f"Can't find end of a URL at byte offset {byte_offset(text, i + 1)}")
    opened.extra["url"] = "".join(url)
    out.close(opened)
    return j + 1


def strip_text(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Trim surrounding whitespace and shift entities to match, as Telegram does with texts."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    limit = utf16_len(stripped)
    kept: list[JSONDict] = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, limit)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept
