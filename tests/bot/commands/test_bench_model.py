"""`pix2chat bench model` end to end on the CPU with the tiny model, and its option sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.commands.bench_model import parse_option_set
from editor.speed import SpeedOptions


def test_bench_model_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "figures" / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "model", "--model", "tiny-random", "--device", "cpu",
            "--resolutions", "64,96", "--batch-sizes", "2", "--steps", "6", "--runs", "1",
            "--options", "default", "--options", "channels_last+fuse_qkv+preview",
            "--json", str(out),
        ],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "UNet TFLOP/s" in result.output
    assert (
        "-- options: channels_last+fuse_qkv+preview (sdpa, channels_last, fuse_qkv" in result.output
    )
    report = json.loads(out.read_text())
    env = report["environment"]
    assert env["device"] == "cpu" and env["dtype"] == "float32"
    assert env["peak_tflops"] > 0  # measured matmul peak on the CPU
    rows = report["rows"]
    assert [(r["options"], r["resolution"], r["batch_size"]) for r in rows] == [
        (options, resolution, batch)
        for options in ("default", "channels_last+fuse_qkv+preview")
        for resolution in (64, 96)
        for batch in (2,)
    ]
    for row in rows:
        assert row["error"] is None
        assert row["edits_per_second"] == pytest.approx(row["batch_size"] / row["batch_seconds"])
        assert row["unet_step_ms"] > 0
        assert row["vae_encode_ms"] > 0 and row["vae_decode_ms"] > 0 and row["text_encoder_ms"] > 0
        # The parts are timed inside one edit: together they never exceed it.
        parts_ms = 6 * row["unet_step_ms"] + row["vae_encode_ms"] + row["vae_decode_ms"]
        assert row["other_ms"] >= 0 and parts_ms <= row["instrumented_seconds"] * 1000 * 1.2
        assert row["unet_tflops"] > 0 and not math.isnan(row["percent_of_peak"])
        assert row["finite_output"]
    previews = [r["previews_per_edit"] for r in rows]
    assert previews == [0, 0, 1, 1]  # previews at step 5 of 6 (every 5), with `preview` only
    # FLOPs grow with pixels: 96 px does 2.25x the work of 64 px per sample.
    assert rows[1]["unet_tflop_per_step"] == pytest.approx(
        2.25 * rows[0]["unet_tflop_per_step"], rel=0.1
    )


def test_bench_model_refuses_unknown_options() -> None:
    result = CliRunner().invoke(app, ["bench", "model", "--options", "turbo"])

    assert result.exit_code == 2
    assert "unknown option 'turbo'" in result.output
    assert "channels_last" in result.output


def test_option_sets_parse_into_speed_options() -> None:
    assert parse_option_set("default") == SpeedOptions()
    assert parse_option_set("channels_last+compile_vae+cuda_graphs") == SpeedOptions(
        channels_last=True, compile="unet+vae", cuda_graphs=True
    )
    with pytest.raises(ValueError, match="PIX2CHAT_COMPILE"):
        parse_option_set("cuda_graphs")
