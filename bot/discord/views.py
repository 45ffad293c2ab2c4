"""Persistent buttons whose custom_id names the action, the version and its owner.

Registered once at start-up as a dynamic item, so buttons on any old message keep working
after a restart, and someone else's press can be refused without asking the service.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.service.messages import render
from bot.service.replies import Action, Candidate, label_key

PREFIX = "p2c"
FORGET_NO = "forget_no"
BUTTON_ACTIONS = (
    Action.UNDO,
    Action.REDO,
    Action.REGENERATE,
    Action.FULL_RESOLUTION,
    Action.CANCEL,
    Action.VARIATIONS,
    Action.STRONGER,
    Action.SUBTLER,
)
STYLES = {Action.FORGET_CONFIRM.value: discord.ButtonStyle.danger}

PressHandler = Callable[[discord.Interaction, str, int, str], Awaitable[None]]
"""(interaction, action, version id (0 if none), owner user id)."""


def custom_id(action: str, version_id: int, owner_id: str) -> str:
    return f"{PREFIX}:{action}:{version_id}:{owner_id}"


def parse(custom: str | None) -> tuple[str, int, str] | None:
    match = re.fullmatch(rf"{PREFIX}:(\w+):(\d+):(\d+)", custom or "")
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


def make_button_class(
    on_press: PressHandler,
) -> type[discord.ui.DynamicItem[discord.ui.Button[Any]]]:
    """The dynamic button type, bound to the frontend's press handler."""

    class ActionButton(
        discord.ui.DynamicItem[discord.ui.Button[Any]],
        template=rf"{PREFIX}:(?P<action>\w+):(?P<version>\d+):(?P<owner>\d+)",
    ):
        def __init__(self, action: str, version_id: int, owner_id: str, number: int = 0) -> None:
            label = render(label_key(action), {"number": number})
            super().__init__(
                discord.ui.Button(
                    label=label,
                    style=STYLES.get(action, discord.ButtonStyle.secondary),
                    custom_id=custom_id(action, version_id, owner_id),
                )
            )
            self.action, self.version_id, self.owner_id = action, version_id, owner_id

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> ActionButton:
            return cls(match["action"], int(match["version"]), match["owner"])

        async def callback(self, interaction: discord.Interaction) -> None:
            await on_press(interaction, self.action, self.version_id, self.owner_id)

    return ActionButton


def view_for(
    button_class: type[Any], actions: Sequence[Action], version_id: int | None, owner_id: str
) -> discord.ui.View | None:
    """A view with a button per suggested action; None when there is nothing to press."""
    wanted = [action for action in actions if action in BUTTON_ACTIONS]
    if not wanted:
        return None
    view = discord.ui.View(timeout=None)
    for action in wanted:
        view.add_item(button_class(action.value, version_id or 0, owner_id))
    return view


def candidates_view(
    button_class: type[Any], candidates: Sequence[Candidate], owner_id: str
) -> discord.ui.View:
    """ "Use 1" .. "Use 4" under a set of variations: each names its candidate's version."""
    view = discord.ui.View(timeout=None)
    for candidate in candidates:
        view.add_item(
            button_class(Action.USE.value, candidate.version_id, owner_id, candidate.number)
        )
    return view


def forget_view(button_class: type[Any], owner_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(button_class(Action.FORGET_CONFIRM.value, 0, owner_id))
    view.add_item(button_class(FORGET_NO, 0, owner_id))
    return view


def version_of(message: discord.Message | None) -> int | None:
    """The version a result message shows, read from its buttons (survives restarts)."""
    if message is None:
        return None
    for row in message.components:
        for component in getattr(row, "children", []):
            parsed = parse(getattr(component, "custom_id", None))
            if (
                parsed is not None
                and parsed[1]
                and parsed[0]
                in {
                    Action.UNDO.value,
                    Action.REGENERATE.value,
                    Action.FULL_RESOLUTION.value,
                }
            ):
                return parsed[1]
    return None
