"""`pix2chat bench develop` at a small size: its figures say what the develop step promises."""

from __future__ import annotations

from bot.commands.bench_develop import drift, run_develop_benchmark


def test_develop_keeps_untouched_pixels_and_plain_upsampling_does_not() -> None:
    on = drift((600, 400), turns=3, working=240, develop_on=True)
    off = drift((600, 400), turns=3, working=240, develop_on=False)
    assert on.sizes_kept and off.sizes_kept
    assert on.identical_beyond_feather == 1.0
    assert on.identical > 0.9
    assert off.identical < 0.05  # the +-2 noise of every turn reaches every pixel


def test_the_benchmark_prints_a_row_per_chain_size_and_mode() -> None:
    lines: list[str] = []
    results, timings = run_develop_benchmark(
        (480, 320), turns=2, working=240, megapixels=(1,), runs=1, echo=lines.append
    )
    assert results[True].identical_beyond_feather == 1.0
    assert [(t.megapixels, t.mode) for t in timings] == [(1, "local"), (1, "global")]
    assert all(t.p50_ms > 0 and t.peak_mb > 0 for t in timings)
    assert any(line.startswith("on ") for line in lines)
    assert any("1 MP 1224x816" in line and "global" in line for line in lines)


def test_the_cli_command_runs_the_benchmark_with_its_options() -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    args = (
        "bench develop --width 480 --height 320 --turns 1 --working 240 --megapixels 1 --runs 1"
        " --segmenter-runs 0"
    )
    result = CliRunner().invoke(app, args.split())
    assert result.exit_code == 0, result.output
    assert "1 turns" not in result.output and "1 local edits on a 480x320 photo" in result.output
