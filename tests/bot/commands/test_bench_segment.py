"""The segmenter section of `pix2chat bench develop`: its figures come from real runs."""

from __future__ import annotations

from bot.commands.bench_segment import real_architecture, run_segmenter_benchmark


def test_the_real_clipseg_architecture_is_counted_without_a_download() -> None:
    parameters, float32_mb, float16_mb, milliseconds = real_architecture(runs=0)
    assert 140e6 < parameters < 160e6  # CLIPSeg rd64: CLIP ViT-B/16 + a 64-wide decoder
    assert float32_mb == 2 * float16_mb == parameters * 4 / 2**20
    assert milliseconds is None


def test_the_section_prints_masks_per_second_of_the_tiny_model() -> None:
    lines: list[str] = []
    figures = run_segmenter_benchmark(runs=2, real_runs=0, echo=lines.append, confine_sizes=(1,))
    assert figures.tiny_masks_per_s > 0
    assert figures.confine_ms[1] > 0
    assert any("masks/s" in line for line in lines)
    assert any("M parameters" in line and "float16" in line for line in lines)
    assert any("1 MP p50" in line for line in lines)


def test_the_cli_runs_the_segmenter_section() -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    args = (
        "bench develop --width 480 --height 320 --turns 1 --working 240 --megapixels 1 --runs 1"
        " --segmenter-runs 1 --real-segmenter-runs 0"
    )
    result = CliRunner().invoke(app, args.split())
    assert result.exit_code == 0, result.output
    assert "segmenter" in result.output and "masks/s" in result.output
