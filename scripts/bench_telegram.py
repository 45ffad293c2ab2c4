"""Telegram benchmark: many users chaining instructions through the fake Bot API.

Runs the real frontend (python-telegram-bot, long polling) against the loopback fake Bot API
from the test suite, on the production object graph, with the null editor and with the tiny
random-weight model. Prints latency from update to result photo, bot-side overhead per edit,
Bot API calls per edit and the fairness spread. Usage (from the repository root):

    .venv/bin/python scripts/bench_telegram.py [--users 50] [--instructions 5] [--steps 4]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image
from telegram.ext import AIORateLimiter

from bot.app import build
from bot.bench import product_photo
from bot.config import Settings
from bot.telegram.frontend import TelegramFrontend
from editor.base import Editor, EditRequest, NullEditor, ProgressCallback
from tests.fakes.telegram_api import FakeBotAPI

TOKEN = "123456:BENCH"


class TimedEditor:
    """Wraps an editor and adds up the time spent in the model."""

    def __init__(self, inner: Editor) -> None:
        self.inner = inner
        self.max_instruction_tokens = inner.max_instruction_tokens
        self.model_s = 0.0

    def load(self) -> None:
        self.inner.load()

    def count_tokens(self, instruction: str) -> int:
        return self.inner.count_tokens(instruction)

    def edit_batch(
        self, requests: Sequence[EditRequest], progress: ProgressCallback | None = None
    ) -> list[Image.Image]:
        started = time.perf_counter()
        try:
            return self.inner.edit_batch(requests, progress)
        finally:
            self.model_s += time.perf_counter() - started

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def _run(label: str, inner: Editor, users: int, instructions: int, steps: int) -> None:
    editor = TimedEditor(inner)
    photo = io.BytesIO()
    product_photo(320).save(photo, "JPEG", quality=90)
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as folder:
        async with FakeBotAPI(token=TOKEN) as api:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                telegram_token=TOKEN,
                telegram_api_url=api.base_url,
                telegram_file_url=api.base_file_url,
                telegram_poll_timeout=1,
                data_dir=Path(folder),
                default_steps=steps,
                default_resolution=256,
                max_pending_per_user=instructions,
                rate_burst=instructions,
                queue_cap=users * instructions,
            )
            stop = asyncio.Event()
            limiter = AIORateLimiter(overall_max_rate=0, group_max_rate=0)
            async with build(settings, editor=editor) as components:
                task = asyncio.create_task(
                    TelegramFrontend(settings, limiter).run(components, stop)
                )
                await api.wait_for("getUpdates", timeout=30)
                for user in range(1, users + 1):
                    api.send_photo(user, user, photo.getvalue())
                await api.wait_for(
                    "sendMessage", lambda p: "Got your photo" in p["text"], 60, count=users
                )
                since = len(api.calls)
                editor.model_s = 0.0
                pushed: dict[str, float] = {}
                started = time.perf_counter()
                for round_number in range(instructions):
                    for user in range(1, users + 1):
                        text = f"edit {round_number} of user {user}"
                        pushed[text] = time.perf_counter()
                        api.send_text(user, user, text)
                total = users * instructions
                done_at: dict[str, float] = {}
                seen = since
                while len(done_at) < total:
                    await api.wait_for("sendPhoto", timeout=600, since=seen)
                    now = time.perf_counter()
                    for call in api.calls_to("sendPhoto", since=seen):
                        caption = str(call.params.get("caption", ""))
                        text = caption.partition("“")[2].partition("”")[0]
                        if call.ok and text in pushed:
                            done_at.setdefault(text, now)
                    seen = len(api.calls)
                elapsed = time.perf_counter() - started
                await asyncio.sleep(1.0)  # let the last status messages be deleted
                calls = [c for c in api.calls[since:] if c.method.lower() != "getupdates"]
                stop.set()
                await task
    latencies = [done_at[text] - pushed[text] for text in pushed]
    per_user = [
        max(done_at[f"edit {r} of user {u}"] for r in range(instructions)) - started
        for u in range(1, users + 1)
    ]
    overhead_ms = (elapsed - editor.model_s) / total * 1000
    print(f"== {label}: {users} users x {instructions} instructions, {steps} steps, 256 px ==")
    print(f"edits                     {total} in {elapsed:.1f} s ({total / elapsed:.1f} edits/s)")
    print(
        f"update -> result photo    p50 {statistics.median(latencies):.2f} s   "
        f"p95 {_percentile(latencies, 0.95):.2f} s"
    )
    print(
        f"bot-side overhead         {overhead_ms:.1f} ms per edit "
        f"(wall time minus model time {editor.model_s:.1f} s, divided by edits)"
    )
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    detail = ", ".join(f"{name} {count / total:.2f}" for name, count in sorted(by_method.items()))
    print(f"Bot API calls per edit    {len(calls) / total:.2f}   ({detail})")
    print(
        f"fairness spread           per-user completion min {min(per_user):.2f} s, "
        f"max {max(per_user):.2f} s, max/min {max(per_user) / min(per_user):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--instructions", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--skip-model", action="store_true", help="null editor only")
    args = parser.parse_args()
    asyncio.run(_run("null editor", NullEditor(), args.users, args.instructions, args.steps))
    if not args.skip_model:
        from editor.pix2pix import DiffusersEditor
        from editor.testing import build_tiny_pipeline

        with tempfile.TemporaryDirectory(prefix="pix2chat-tiny-") as folder:
            model = build_tiny_pipeline(Path(folder) / "tiny")
            tiny = DiffusersEditor(str(model), device="cpu")
            asyncio.run(_run("tiny model (CPU)", tiny, args.users, args.instructions, args.steps))


if __name__ == "__main__":
    main()
