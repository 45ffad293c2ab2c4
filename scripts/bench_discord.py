"""Discord benchmark: 50 users x 5 instructions through the fake Discord, null editor.

The real discord.py client (gateway + REST + app commands) runs on the production object graph
with the null editor, against the loopback fake of Discord from the test suite, in one process
(so the figures include the fake's own work: an upper bound on the bot's). Each user runs
/edit, then sends their instructions one after another with /instruct, waiting for each
result: the time from dispatching an interaction to its result is pix2chat's overhead per edit
(the model takes no time). Usage, from the repository root:

    .venv/bin/python scripts/bench_discord.py [--users 50] [--instructions 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.app import build
from bot.commands.bench_service import product_photo
from bot.config import Settings
from bot.discord.frontend import DiscordFrontend
from editor.testing.doubles import NullEditor
from tests.fakes.discord_api import FakeDiscord, GuildSpec

GUILD, CHANNEL = 111, 222


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class ResultWatcher:
    """Notices, in one pass over new requests, when an interaction's response gets a picture.

    (Polling each interaction separately would spend the benchmark's CPU in the watcher.)
    """

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.seen = 0
        self.waiting: dict[str, asyncio.Event] = {}

    async def watch(self) -> None:
        while True:
            requests = self.fake.requests
            for request in requests[self.seen :]:
                if request.method == "PATCH" and request.files:
                    token = request.path.split("/")[3] if request.path.count("/") >= 3 else ""
                    event = self.waiting.get(token)
                    if event is not None:
                        event.set()
            self.seen = len(requests)
            await asyncio.sleep(0.002)

    async def result_of(self, interaction: Any) -> None:
        event = self.waiting.setdefault(interaction.token, asyncio.Event())
        await event.wait()


async def user_session(
    fake: FakeDiscord,
    watcher: ResultWatcher,
    user: int,
    photo: bytes,
    instructions: int,
    timings: list[float],
) -> None:
    started = fake.slash(
        "edit", user, CHANNEL, {"instruction": "edit 0"}, attachments={"image": ("p.jpg", photo)}
    )
    begun = time.perf_counter()
    await watcher.result_of(started)
    timings.append(time.perf_counter() - begun)
    for number in range(1, instructions):
        interaction = fake.slash("instruct", user, CHANNEL, {"text": f"edit {number}"})
        begun = time.perf_counter()
        await watcher.result_of(interaction)
        timings.append(time.perf_counter() - begun)


async def run(users: int, instructions: int) -> None:
    buffer = io.BytesIO()
    product_photo(320).save(buffer, "JPEG", quality=90)
    user_ids = list(range(1000, 1000 + users))
    guild = GuildSpec(GUILD, channels={CHANNEL: "edits"})
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as folder:
        async with FakeDiscord(guilds=[guild], users={u: f"user{u}" for u in user_ids}) as fake:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                discord_token=fake.token,
                data_dir=Path(folder),
                default_steps=4,
                default_resolution=256,
                max_wait_ms=0,
                rate_burst=instructions,
                rate_per_minute=60.0,
                queue_cap=users * instructions,
            )
            stop = asyncio.Event()
            async with build(settings, editor=NullEditor()) as components:
                frontend = DiscordFrontend(settings, {"guild_ready_timeout": 0.05})
                task = asyncio.create_task(frontend.run(components, stop))
                await fake.wait_for("PUT", r"/applications/\d+/commands", timeout=60)
                await fake.wait_for_gateway(2, timeout=60)
                await asyncio.sleep(0.5)
                since = fake.mark()
                timings: list[float] = []
                watcher = ResultWatcher(fake)
                watching = asyncio.create_task(watcher.watch())
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        user_session(fake, watcher, u, buffer.getvalue(), instructions, timings)
                        for u in user_ids
                    )
                )
                elapsed = time.perf_counter() - started
                watching.cancel()
                await asyncio.sleep(0.5)
                requests = fake.requests[since:]
                stop.set()
                await task
    total = users * instructions
    by_kind: dict[str, int] = {}
    for request in requests:
        kind = f"{request.method} {_route(request.path)}"
        by_kind[kind] = by_kind.get(kind, 0) + 1
    detail = ", ".join(f"{kind} {count / total:.2f}" for kind, count in sorted(by_kind.items()))
    print(f"== Discord, null editor: {users} users x {instructions} instructions, paced ==")
    print(f"edits                     {total} in {elapsed:.1f} s ({total / elapsed:.1f} edits/s)")
    print(
        f"overhead per edit         p50 {statistics.median(timings) * 1000:.0f} ms   "
        f"p95 {percentile(timings, 0.95) * 1000:.0f} ms   (interaction -> result, model time 0)"
    )
    print(f"REST calls per edit       {len(requests) / total:.2f}   ({detail})")


def _route(path: str) -> str:
    """/channels/123/messages -> /channels/:id/messages (group calls by endpoint)."""
    parts = ["{id}" if part.isdigit() or len(part) > 40 else part for part in path.split("/")]
    return "/".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--instructions", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.users, args.instructions))


if __name__ == "__main__":
    main()
