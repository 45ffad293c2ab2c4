"""Platform-neutral replies: a catalogue key plus arguments, and what a frontend may offer next."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.service.messages import render
from storage.types import Actor


class Action(enum.StrEnum):
    """Buttons or commands a frontend may offer under a reply."""

    UNDO = "undo"
    REDO = "redo"
    REGENERATE = "regenerate"
    FULL_RESOLUTION = "full"
    CANCEL = "cancel"
    FORGET_CONFIRM = "forget_confirm"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of the path root -> head."""

    version_id: int
    instruction: str | None
    params: Mapping[str, Any] | None
    status: str
    is_head: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """What the service answers; frontends render `text()` and the image of `version_id`.

    Attributes:
        key: message-catalogue key; `args` fill it.
        version_id: the version the reply is about (its image, its buttons' target).
        show_image: whether the frontend should show that version's image.
        actions: what to offer next (buttons).
        is_error: a refusal or failure; the conversation stays usable.
        history: for history replies, the path root -> head.
        settings: for settings replies, the current values.
    """

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)
    version_id: int | None = None
    show_image: bool = False
    actions: tuple[Action, ...] = ()
    is_error: bool = False
    history: tuple[HistoryEntry, ...] = ()
    settings: Mapping[str, Any] | None = None

    def text(self, locale: str = "en") -> str:
        return render(self.key, self.args, locale)


UpdateListener = Callable[[Actor, Reply], Awaitable[None]]
"""Receives progress, results and failures for chats of one platform."""
