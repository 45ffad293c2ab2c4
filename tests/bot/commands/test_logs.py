"""PIX2CHAT_LOG_FORMAT=json: one JSON object a line, tracebacks included, nothing lost."""

from __future__ import annotations

import json
import logging
import sys

from bot.commands.logs import JsonFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad pixels")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("pix2chat.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_line_is_one_json_object_with_the_message_filled_in() -> None:
    line = JsonFormatter().format(record("edit %d failed: “%s”", 7, "make it night"))

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "edit 7 failed: “make it night”"
    assert entry["level"] == "warning" and entry["logger"] == "pix2chat.test"
    assert entry["time"].endswith("+00:00") and isinstance(entry["process"], int)
    assert "exc_info" not in entry


def test_a_traceback_stays_inside_its_line() -> None:
    line = JsonFormatter().format(record("crashed", exc=True))

    assert "\n" not in line  # newlines escaped: a collector sees one event
    entry = json.loads(line)
    assert "ValueError: bad pixels" in entry["exc_info"]
    assert entry["exc_info"].startswith("Traceback")
