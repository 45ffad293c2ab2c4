"""The Prometheus endpoint, scraped over HTTP after real edits through the Telegram frontend.

`pix2chat run`'s object graph (`bot.app.build`) with PIX2CHAT_METRICS_PORT=0 (a free port)
and the fake Bot API; the values are read back with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.work.metrics import Metrics, MetricsServer
from editor.testing.doubles import GatedEditor
from tests.bot.telegram.test_telegram import (
    TOKEN,
    jpeg,
    next_photo,
    next_text,
    result_of,
    running_bot,
)
from tests.fakes.telegram_api import FakeBotAPI

ALICE, BOB, CAROL, ADMIN = 1001, 1002, 1003, 9001


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, bot_username="pix2chat_bot") as server:
        yield server


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, labels): value} from /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_after_a_few_edits(api: FakeBotAPI, tmp_path: Path) -> None:
    editor = GatedEditor(fail_on="explode")
    settings = {
        "metrics_port": 0,
        "metrics_refresh_s": 0.1,
        "access": "allowlist",
        "admins": [f"telegram:{ADMIN}", f"telegram:{ALICE}", f"telegram:{BOB}"],
        "daily_quota": 3,
    }
    async with running_bot(api, tmp_path / "data", editor, **settings) as components:
        port = components.metrics_port
        assert port is not None and port > 0
        before = await scrape(port)
        assert before[("pix2chat_edits_total", (("outcome", "done"),))] == 0
        assert before[("pix2chat_model_ready", ())] == 1

        since = len(api.calls)
        api.send_photo(ALICE, ALICE, jpeg(), caption="make it night")
        await next_photo(api, ALICE, since)
        await result_of(api, ALICE, ALICE, "add snow")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "explode")
        await next_text(api, ALICE, since, contains="failed")
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add a hat")  # the failed edit was refunded: 3rd of 3
        await next_photo(api, ALICE, since)
        since = len(api.calls)
        api.send_text(ALICE, ALICE, "add a dog")
        await next_text(api, ALICE, since, contains="today's 3 edits")
        since = len(api.calls)
        api.send_text(CAROL, CAROL, "/start")  # not allowed
        await next_text(api, CAROL, since, contains="private")

        # Bob's result cannot be delivered: he blocked the bot while it was being made.
        editor.gate.clear()
        since = len(api.calls)
        api.send_photo(BOB, BOB, jpeg(shade=80), caption="make it pink")
        await next_text(api, BOB, since, contains="On it")
        await asyncio.sleep(0.3)  # running, waiting at the gate
        waiting_now = await scrape(port)
        assert waiting_now[("pix2chat_edits_running", ())] == 1
        assert waiting_now[("pix2chat_edits_running_total", ())] == 1
        api.block_chat(BOB)
        editor.gate.set()

        async def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            while True:
                found = await scrape(port)
                failed = found[("pix2chat_deliveries_failed_total", (("platform", "telegram"),))]
                if failed >= 1 and found[("pix2chat_edits_running_total", ())] == 0:
                    return found
                await asyncio.sleep(0.05)

        after = await asyncio.wait_for(settled(), 10)

    assert after[("pix2chat_edits_total", (("outcome", "done"),))] == 4
    assert after[("pix2chat_edits_total", (("outcome", "failed"),))] == 1
    assert after[("pix2chat_refusals_total", (("reason", "quota"),))] == 1
    assert after[("pix2chat_refusals_total", (("reason", "access"),))] == 1
    assert after[("pix2chat_refusals_total", (("reason", "rate"),))] == 0
    assert after[("pix2chat_deliveries_failed_total", (("platform", "telegram"),))] == 1
    assert after[("pix2chat_edits_waiting", ())] == 0
    assert after[("pix2chat_edits_running", ())] == 0
    assert after[("pix2chat_batch_size_count", ())] == 5
    assert after[("pix2chat_batch_size_sum", ())] == 5  # one at a time: nobody else waited
    assert after[("pix2chat_queue_wait_seconds_count", ())] == 5
    assert after[("pix2chat_edit_duration_seconds_count", ())] == 4
    assert after[("pix2chat_gpu_seconds_total", ())] > 0
    assert after[("pix2chat_edit_duration_seconds_sum", ())] <= 60


def test_the_endpoint_is_off_by_default_and_on_loopback_when_asked() -> None:
    from bot.config import Settings

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.metrics_port is None and settings.metrics_host == "127.0.0.1"

    metrics = Metrics()
    metrics.refusals.labels(reason="rate").inc(2)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    port = server.start()
    try:
        samples = asyncio.run(scrape(port))
    finally:
        server.stop()
    assert samples[("pix2chat_refusals_total", (("reason", "rate"),))] == 2


def test_the_dashboard_queries_only_exported_metrics() -> None:
    import json
    import re

    dashboard = json.loads(
        (Path(__file__).resolve().parents[3] / "docs" / "grafana-dashboard.json").read_text()
    )
    exported = {
        sample.name for family in Metrics().registry.collect() for sample in family.samples
    } | {
        f"{name}_bucket"
        for name in ("pix2chat_queue_wait_seconds", "pix2chat_edit_duration_seconds")
    }
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"pix2chat_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 8
    assert queried and queried <= exported, queried - exported
