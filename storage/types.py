"""Small named types shared by storage, the scheduler and the conversation service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: in a group chat every user has their own conversation."""

    platform: str
    chat_id: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat_id}:{self.user_id}"
