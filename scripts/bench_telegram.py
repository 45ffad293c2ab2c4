"""Telegram benchmark: many users chaining instructions through the fake Bot API.

The bot runs in its own process exactly as `pix2chat run` wires it (production object graph,
python-telegram-bot long polling), with the null editor or the tiny random-weight model; this
process plays Telegram with the loopback fake Bot API from the test suite. Keeping them apart
means the bot's CPU time is its own, not the fake server's. Prints, for a burst of
USERS x INSTRUCTIONS chained instructions sent at once: latency from update to result photo,
the bot process's CPU time per edit, Bot API calls per edit and the fairness spread, plus the
latency of one edit on an idle bot. Usage, from the repository root:

    .venv/bin/python scripts/bench_telegram.py [--users 50] [--instructions 5] [--steps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.commands.bench_service import product_photo  # noqa: E402
from tests.fakes.telegram_api import FakeBotAPI  # noqa: E402

TOKEN = "123456:BENCH"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ----- the bot process ---------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    """Run the Telegram frontend on the production graph until SIGTERM."""
    from telegram.ext import AIORateLimiter

    from bot.app import build
    from bot.config import Settings
    from bot.telegram.frontend import TelegramFrontend
    from editor.base import Editor
    from editor.testing.doubles import NullEditor

    editor: Editor = NullEditor()
    if args.model:
        from editor.pix2pix import DiffusersEditor

        editor = DiffusersEditor(args.model, device="cpu")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token=TOKEN,
        telegram_api_url=args.api_url,
        telegram_file_url=args.file_url,
        telegram_poll_timeout=1,
        data_dir=Path(args.data_dir),
        default_steps=args.steps,
        default_resolution=256,
        max_pending_per_user=args.instructions,
        rate_burst=args.instructions,
        rate_per_minute=60.0,
        queue_cap=args.users * args.instructions,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # Telegram's own flood limits would dominate a burst from 50 private chats at once.
    limiter = AIORateLimiter(overall_max_rate=0, group_max_rate=0)
    async with build(settings, editor=editor) as components:
        await TelegramFrontend(settings, limiter).run(components, stop)


# ----- the driver ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def photos_done(api: FakeBotAPI, pushed: dict[str, float], since: int) -> dict[str, float]:
    """Wait until every pushed instruction's result photo arrived; when each did."""
    done_at: dict[str, float] = {}
    seen = since
    while len(done_at) < len(pushed):
        await api.wait_for("sendPhoto", timeout=900, since=seen)
        now = time.perf_counter()
        for call in api.calls_to("sendPhoto", since=seen):
            caption = str(call.params.get("caption", ""))
            text = caption.partition("“")[2].partition("”")[0]
            if call.ok and text in pushed:
                done_at.setdefault(text, now)
        seen = len(api.calls)
    return done_at


async def drive(label: str, args: argparse.Namespace, model: str | None) -> None:
    users, instructions = args.users, args.instructions
    photo = io.BytesIO()
    product_photo(320).save(photo, "JPEG", quality=90)
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as folder:
        async with FakeBotAPI(token=TOKEN) as api:
            command = [
                sys.executable,
                __file__,
                "--serve",
                f"--api-url={api.base_url}",
                f"--file-url={api.base_file_url}",
                f"--data-dir={folder}",
                f"--steps={args.steps}",
                f"--users={users}",
                f"--instructions={instructions}",
                *([f"--model={model}"] if model else []),
            ]
            bot = await asyncio.create_subprocess_exec(*command, cwd=ROOT)
            try:
                await api.wait_for("getUpdates", timeout=300)
                warm_up_user = users + 1  # not one of the measured users
                for user in range(1, warm_up_user + 1):
                    api.send_photo(user, user, photo.getvalue())
                await api.wait_for(
                    "sendMessage", lambda p: "Got your photo" in p["text"], 120, count=users + 1
                )
                # One edit on an idle bot (twice, the first warms up).
                idle = []
                for attempt in range(2):
                    text = f"warm-up {attempt}"
                    since = len(api.calls)
                    pushed = {text: time.perf_counter()}
                    api.send_text(warm_up_user, warm_up_user, text)
                    idle.append((await photos_done(api, pushed, since))[text] - pushed[text])
                # The burst: every user sends all instructions at once, each on the last.
                await asyncio.sleep(1.0)
                since = len(api.calls)
                cpu_before = cpu_seconds(bot.pid)
                pushed = {}
                started = time.perf_counter()
                for round_number in range(instructions):
                    for user in range(1, users + 1):
                        text = f"edit {round_number} of user {user}"
                        pushed[text] = time.perf_counter()
                        api.send_text(user, user, text)
                done_at = await photos_done(api, pushed, since)
                elapsed = time.perf_counter() - started
                await asyncio.sleep(1.0)  # let the last status messages be deleted
                cpu = cpu_seconds(bot.pid) - cpu_before
                calls = [c for c in api.calls[since:] if c.method.lower() != "getupdates"]
            finally:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 120)
    total = users * instructions
    latencies = [done_at[text] - pushed[text] for text in pushed]
    per_user = [
        max(done_at[f"edit {r} of user {u}"] for r in range(instructions)) - started
        for u in range(1, users + 1)
    ]
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    detail = ", ".join(f"{name} {count / total:.2f}" for name, count in sorted(by_method.items()))
    figures = {
        "label": label,
        "edits": total,
        "seconds": elapsed,
        "idle_latency_s": idle[-1],
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "bot_cpu_ms_per_edit": cpu / total * 1000,
        "api_calls_per_edit": len(calls) / total,
        "fairness_min_s": min(per_user),
        "fairness_max_s": max(per_user),
    }
    print(f"== {label}: {users} users x {instructions} instructions, {args.steps} steps, 256 px ==")
    print(f"one edit, idle bot        {idle[-1]:.2f} s from update to result photo")
    print(
        f"burst                     {total} edits in {elapsed:.1f} s ({total / elapsed:.1f} edits/s)"
    )
    print(f"update -> result photo    p50 {figures['p50_s']:.2f} s   p95 {figures['p95_s']:.2f} s")
    print(
        f"bot process CPU           {figures['bot_cpu_ms_per_edit']:.1f} ms per edit"
        + ("" if model is None else " (includes the model's own CPU time)")
    )
    print(f"Bot API calls per edit    {len(calls) / total:.2f}   ({detail})")
    print(
        f"fairness spread           last result per user: min {min(per_user):.2f} s, "
        f"max {max(per_user):.2f} s, max/min {max(per_user) / min(per_user):.2f}"
    )
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--instructions", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--skip-model", action="store_true", help="null editor only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--file-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        profile = os.environ.get("PIX2CHAT_BENCH_PROFILE")
        if profile:  # where the bot's own CPU goes: cProfile of the bot process
            import cProfile

            cProfile.runctx("asyncio.run(serve(args))", globals(), locals(), profile)
        else:
            asyncio.run(serve(args))
        return
    asyncio.run(drive("null editor", args, None))
    if not args.skip_model:
        from editor.testing.tiny import build_tiny_pipeline

        with tempfile.TemporaryDirectory(prefix="pix2chat-tiny-") as folder:
            model = build_tiny_pipeline(Path(folder) / "tiny")
            asyncio.run(drive("tiny model (CPU)", args, str(model)))


if __name__ == "__main__":
    main()
