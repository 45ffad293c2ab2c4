"""A scheduler process for tests/bot/work/test_scheduler.py to kill in the middle of an edit.

Run as `python -m tests.bot.work.crash_child URL IMAGES PARENT_ID INSTRUCTION`: it starts the
embedded scheduler with a slow NullEditor, queues one edit of version PARENT_ID the way the
conversation service does (commit the version, then submit its job), prints
`queued <version id>` and then `progress <step>` lines, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.work.jobs import Job, JobEvent, JobProgress
from bot.work.scheduler import EmbeddedScheduler
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage import tree
from storage.database import Database
from storage.images import FileImageStore
from storage.models import Conversation, Version

PARAMS = EditParams(num_inference_steps=50, resolution=256, seed=7)
STEP_DELAY_S = 0.2  # 10 s per edit: the parent kills it after the first step
LIFETIME_S = 60.0  # exits on its own if the parent test never kills it


async def _say(event: JobEvent) -> None:
    if isinstance(event, JobProgress):
        print(f"progress {event.step}", flush=True)


async def main(url: str, folder: Path, parent_id: int, instruction: str) -> None:
    async with Database(url) as database:
        scheduler = EmbeddedScheduler(
            database, FileImageStore(folder), NullEditor(step_delay_s=STEP_DELAY_S), max_wait_ms=0
        )
        scheduler.subscribe(_say)
        await scheduler.start()
        async with database.write() as session:
            parent = await session.get(Version, parent_id)
            assert parent is not None and parent.width and parent.height
            conversation = await session.get(Conversation, parent.conversation_id)
            assert conversation is not None
            version = await tree.add_edit(session, conversation, parent, instruction, PARAMS)
            user_key = f"{conversation.platform}:{conversation.user_id}"
            size = (parent.width, parent.height)
        await scheduler.submit(Job(version.id, user_key, parent_id, size, instruction, PARAMS))
        print(f"queued {version.id}", flush=True)
        await asyncio.sleep(LIFETIME_S)
        sys.exit("crash_child was never killed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
