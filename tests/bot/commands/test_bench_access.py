"""`pix2chat bench access` runs and prints its figures (small sizes: the figures are in
docs/BENCHMARKS.md)."""

from __future__ import annotations

import re

from bot.commands.bench_access import access_benchmark_command


def test_the_access_benchmark_prints_every_figure() -> None:
    lines: list[str] = []
    access_benchmark_command(rules=50, edits=40, runs=10, echo=lines.append)

    text = "\n".join(lines)
    assert "50 allow-list rules" in text
    assert len(re.findall(r"p50 +[\d.]+ ms +p99 +[\d.]+ ms", text)) == 6
    assert "/stats with 40 edits today" in text and "/metrics scrape" in text
