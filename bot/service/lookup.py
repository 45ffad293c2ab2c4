"""Finding the actor's conversation, shared by the commands and the image accessors."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage import tree
from storage.errors import NoImageYet
from storage.models import Conversation
from storage.types import Actor


async def started_conversation(session: AsyncSession, actor: Actor) -> Conversation:
    """The actor's conversation, which must have a photo (else NoImageYet, a friendly refusal)."""
    conversation = await tree.find_conversation(session, actor)
    if conversation is None or conversation.head_id is None:
        raise NoImageYet()
    return conversation
