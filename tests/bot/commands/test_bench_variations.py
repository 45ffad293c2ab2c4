"""`pix2chat bench variations`: its fairness part runs quickly with the NullEditor; the CLI
knows the command and its options (the model parts are timed by the lead, not in tests)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from bot.commands.bench_variations import measure_fairness


async def test_fairness_part_measures_b_with_and_without_a(tmp_path: Path) -> None:
    result = await measure_fairness(tmp_path, edits=3, batch_s=0.02, sets_ahead=1)
    assert len(result.alone) == 3 and len(result.beside_variations) == 3
    assert all(wait > 0 for wait in [*result.alone, *result.beside_variations])
    assert result.sets_run >= 1  # A's variations really ran beside B's edits
    assert result.ahead_alone == [0, 0, 0]
    assert max(result.ahead_beside) <= 1  # at most one of A's batches before each of B's


def test_the_cli_offers_the_benchmark() -> None:
    result = CliRunner().invoke(app, ["bench", "variations", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--steps", "--edits", "--batch-ms", "--telegram-runs"):
        assert option in result.output
