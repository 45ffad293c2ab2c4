"""Web chat benchmark: many browsers chaining instructions over HTTP and server-sent events.

The web chat runs exactly as `pix2chat run` wires it without a token (production object graph,
uvicorn on loopback) with the null editor, so what is measured is pix2chat's own overhead. Each
simulated browser has its own cookie, uploads a photo, keeps an event stream open and sends its
instructions one after another, each when the previous result arrived; an edit counts as shown
when the result event came and its image was fetched. The clients run in the same process
(httpx), so the figures are upper bounds on the server's cost. Usage, from the repository root:

    .venv/bin/python scripts/bench_web.py [--users 50] [--instructions 5] [--steps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from bot.app import build  # noqa: E402
from bot.commands.bench_service import product_photo  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.web.frontend import WebFrontend  # noqa: E402
from editor.testing.doubles import NullEditor  # noqa: E402


async def results(response: httpx.Response, inbox: asyncio.Queue[dict[str, Any]]) -> None:
    """Put every result/failure event of one browser's stream into its inbox."""
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:") and name in ("result", "failure", "ready"):
            await inbox.put({"event": name, **json.loads(line.removeprefix("data:"))})


async def browser(
    url: str, photo: bytes, instructions: int, timings: list[float], loads: list[float]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await client.post("/api/session")
        await client.post("/api/photo", content=photo)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        async with client.stream("GET", "/api/events") as stream:
            reader = asyncio.create_task(results(stream, inbox))
            assert (await inbox.get())["event"] == "ready"
            for number in range(instructions):
                begun = time.perf_counter()
                queued = (
                    await client.post("/api/instruct", json={"text": f"edit {number}"})
                ).json()
                while True:
                    event = await asyncio.wait_for(inbox.get(), 120)
                    if event.get("version_id") == queued["version_id"]:
                        break
                assert event["event"] == "result", event
                image = await client.get(event["image"])
                assert image.status_code == 200
                timings.append(time.perf_counter() - begun)
            reader.cancel()
        begun = time.perf_counter()
        await client.get("/")
        await client.get("/static/app.js")
        state = await client.get("/api/state")
        history = state.json()["history"]["history"]
        await asyncio.gather(*(client.get(entry["thumbnail"]) for entry in history))
        loads.append(time.perf_counter() - begun)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(users: int, instructions: int, steps: int) -> None:
    buffer = io.BytesIO()
    product_photo(320).save(buffer, "JPEG", quality=90)
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as folder:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(folder),
            default_steps=steps,
            default_resolution=256,
            max_wait_ms=0,
            rate_burst=instructions * 4,
            rate_per_minute=6000.0,
            daily_quota=0,
            max_pending_per_user=instructions * 4,
            queue_cap=users * instructions * 4,
            web_port=0,
        )
        frontend = WebFrontend(settings, announce=lambda _text: None)
        stop = asyncio.Event()
        async with build(settings, editor=NullEditor()) as components:
            await frontend.preflight()
            task = asyncio.create_task(frontend.run(components, stop))
            url = frontend.url()
            await asyncio.sleep(0.2)
            for label, count, rounds in (
                ("1 browser", 1, instructions * 4),
                (f"{users} browsers at once", users, instructions),
            ):
                timings: list[float] = []
                loads: list[float] = []
                cpu, started = time.process_time(), time.perf_counter()
                await asyncio.gather(
                    *(browser(url, buffer.getvalue(), rounds, timings, loads) for _ in range(count))
                )
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu
                edits = count * rounds
                print(
                    f"{label} x {rounds} instructions: {edits} edits in {elapsed:.1f} s "
                    f"({edits / elapsed:.1f} edits/s); instruction -> result shown "
                    f"p50 {statistics.median(timings) * 1000:.0f} ms, "
                    f"p95 {percentile(timings, 0.95) * 1000:.0f} ms; "
                    f"process CPU per edit {cpu / edits * 1000:.1f} ms (clients included); "
                    f"page reload with history p50 {statistics.median(loads) * 1000:.0f} ms"
                )
            stop.set()
            await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--instructions", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.users, args.instructions, args.steps))


if __name__ == "__main__":
    main()
