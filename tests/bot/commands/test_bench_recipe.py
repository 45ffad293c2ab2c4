"""`pix2chat bench recipe` runs end to end and prints its figures (small, null editor)."""

from __future__ import annotations

import re

from bot.commands.bench_recipe import run_recipe_benchmark


def test_prints_throughput_and_the_other_users_waits() -> None:
    lines: list[str] = []
    run_recipe_benchmark(
        photos=3,
        steps=2,
        editors=["null"],
        samples=2,
        size=64,
        denoising_steps=1,
        step_delay_ms=0,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert re.search(r"3 photos x 2 steps in +[\d.]+ s = +[\d.]+ photos/s", text), text
    assert re.search(r"idle bot +p50 +[\d.]+ ms +max +[\d.]+ ms +\(n=2\)", text), text
    assert re.search(r"recipe running p50 +[\d.]+ ms +max +[\d.]+ ms +\(n=\d+\)", text), text
