"""Inline keyboards and their callback data.

Callback data names a stored version and its owner ("undo:42:1001"), so buttons keep working
after a restart and on old messages, and a group member pressing someone else's button can be
told so without asking the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.service.messages import Key, render
from bot.service.replies import Action, Candidate, label_key

RESULT_ACTIONS = (
    Action.UNDO,
    Action.REGENERATE,
    Action.FULL_RESOLUTION,
    Action.VARIATIONS,
    Action.STRONGER,
    Action.SUBTLER,
    Action.UPSCALE,
)
ROW_WIDTH = 3
"""Buttons per row when a reply offers more than four."""
FORGET_NO = "forget_no"
SETTING = "set"
DEFAULTS = "defaults"

SETTING_CHOICES: tuple[tuple[str, str, Sequence[Any]], ...] = (
    # (setting name, button label template, values)
    ("num_inference_steps", "{} steps", (10, 20, 30, 50)),
    ("guidance_scale", "text {}", (5.0, 7.5, 10.0, 12.5)),
    ("image_guidance_scale", "image {}", (1.0, 1.5, 2.0, 3.0)),
    ("seed_mode", "seed {}", ("random", "fixed")),
    ("resolution", "{} px", (384, 512, 768)),
    ("candidates", "best of {}", (1, 2, 3, 4)),
)


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """A decoded callback: what to do, on which version (0 if none), for which user."""

    action: str
    version_id: int
    owner_id: str
    value: str = ""


def encode(action: str, version_id: int, owner_id: str, value: str = "") -> str:
    data = f"{action}:{version_id}:{owner_id}" + (f":{value}" if value else "")
    if len(data.encode()) > 64:  # Telegram's limit for callback data
        raise ValueError(f"callback data too long: {data!r}")
    return data


def decode(data: str | None) -> ButtonPress | None:
    """The press, or None for data this bot did not make (or an older format)."""
    parts = (data or "").split(":", 3)
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return ButtonPress(parts[0], int(parts[1]), parts[2], parts[3] if len(parts) > 3 else "")


def for_actions(
    actions: Sequence[Action], version_id: int | None, owner_id: str
) -> InlineKeyboardMarkup | None:
    """Buttons for a reply's suggested actions (those a chat button can do)."""
    buttons = [
        InlineKeyboardButton(
            render(label_key(action)),
            callback_data=encode(action.value, version_id or 0, owner_id),
        )
        for action in actions
        if action in (*RESULT_ACTIONS, Action.REDO, Action.CANCEL)
    ]
    if not buttons:
        return None
    if len(buttons) > 4:
        return InlineKeyboardMarkup(
            [buttons[i : i + ROW_WIDTH] for i in range(0, len(buttons), ROW_WIDTH)]
        )
    return InlineKeyboardMarkup([buttons[:2], buttons[2:]] if len(buttons) > 2 else [buttons])


def for_candidates(candidates: Sequence[Candidate], owner_id: str) -> InlineKeyboardMarkup:
    """ "Use 1" .. "Use 4" under a set of variations: each names its candidate's version."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    render(label_key(Action.USE), {"number": candidate.number}),
                    callback_data=encode(Action.USE.value, candidate.version_id, owner_id),
                )
                for candidate in candidates
            ]
        ]
    )


def forget_confirmation(owner_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    render(Key.BUTTON_FORGET_YES),
                    callback_data=encode(Action.FORGET_CONFIRM.value, 0, owner_id),
                ),
                InlineKeyboardButton(
                    render(Key.BUTTON_FORGET_NO), callback_data=encode(FORGET_NO, 0, owner_id)
                ),
            ]
        ]
    )


def settings(current: Mapping[str, Any], owner_id: str) -> InlineKeyboardMarkup:
    """One row per setting, the current value ticked, plus a defaults button."""
    rows = []
    for name, label, values in SETTING_CHOICES:
        if name not in current:  # the user's model has no such setting (issue 19)
            continue
        row = []
        for value in values:
            shown = label.format(f"{value:g}" if isinstance(value, float) else value)
            ticked = str(current.get(name)) == str(value) or current.get(name) == value
            row.append(
                InlineKeyboardButton(
                    ("✓ " if ticked else "") + shown,
                    callback_data=encode(SETTING, 0, owner_id, f"{_short(name)}={value}"),
                )
            )
        rows.append(row)
    rows.append(
        [
            InlineKeyboardButton(
                render(Key.BUTTON_DEFAULTS), callback_data=encode(DEFAULTS, 0, owner_id)
            )
        ]
    )
    return InlineKeyboardMarkup(rows)


_SHORT_NAMES = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "image_guidance_scale": "image_guidance",
    "seed_mode": "seed_mode",
    "resolution": "resolution",
    "candidates": "candidates",
}


def _short(name: str) -> str:
    """Setting aliases the service understands, short enough for callback data."""
    return _SHORT_NAMES[name]


def version_of(message: Message | None) -> int | None:
    """The version a result message shows, read from its own buttons (survives restarts)."""
    markup = message.reply_markup if message is not None else None
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            data = button.callback_data if isinstance(button.callback_data, str) else None
            press = decode(data)
            if (
                press is not None
                and press.version_id
                and press.action in {a.value for a in RESULT_ACTIONS}
            ):
                return press.version_id
    return None
