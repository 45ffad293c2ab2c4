"""Evaluation: known cases with deterministic editors, and `pix2chat eval` end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from bot.cli import app
from editor.base import EditRequest, ProgressCallback
from editor.finetune.data import EditPair, open_pairs, write_pair_folder
from editor.finetune.evaluation import (
    METRICS,
    EvalConfig,
    Scorers,
    compare,
    evaluate,
    fit,
    markdown,
)
from editor.finetune.metrics import ClipScorer, DinoScorer
from editor.finetune.testing import TOY_COLOURS, toy_colour_sessions
from editor.params import EditParams

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = EvalConfig(params=EditParams(resolution=32), batch_size=3)


class Oracle:
    """Paints the colour the instruction names: what a perfect toy model would do."""

    def edit_batch(
        self, requests: Sequence[EditRequest], progress: ProgressCallback | None = None
    ) -> list[Image.Image]:
        return [
            Image.new("RGB", r.image.size, TOY_COLOURS[r.instruction.split()[-1]]) for r in requests
        ]


class Dimmer:
    """Darkens its input by a tenth and otherwise ignores the instruction."""

    def edit_batch(
        self, requests: Sequence[EditRequest], progress: ProgressCallback | None = None
    ) -> list[Image.Image]:
        return [ImageEnhance.Brightness(r.image).enhance(0.9) for r in requests]


@pytest.fixture(scope="module")
def scorers(tiny_clip_dir: Path, tiny_dino_dir: Path) -> Scorers:
    return Scorers(ClipScorer(str(tiny_clip_dir)), DinoScorer(str(tiny_dino_dir)))


def test_a_perfect_editor_scores_perfectly(scorers: Scorers) -> None:
    sessions = toy_colour_sessions(3, turns=3)
    result = evaluate(Oracle(), sessions, scorers, CONFIG)
    single = result["single_turn"]
    assert single["count"] == 9
    assert single["l1"] == 0.0
    assert single["clip_i"] == pytest.approx(1.0, abs=1e-5)
    assert single["dino"] == pytest.approx(1.0, abs=1e-5)
    chained = result["multi_turn"]["chained"]
    assert chained["all_turns"]["l1"] == 0.0
    assert sorted(chained["per_turn"]) == ["1", "2", "3"]


def test_chaining_accumulates_drift_that_ground_truth_inputs_do_not(scorers: Scorers) -> None:
    # Each turn's target is its input, so a model that keeps the image is right: the dimmer's
    # error is one dimming from ground-truth inputs, and compounds when fed its own outputs.
    steady = []
    for session in range(2):
        image = Image.new("RGB", (32, 32), (200, 180 - 40 * session, 160))
        for turn in range(3):
            steady.append(EditPair(image, "keep it", image, session=f"s{session}", turn=turn))
    multi = evaluate(Dimmer(), steady, scorers, CONFIG)["multi_turn"]
    own = [multi["chained"]["per_turn"][t]["l1"] for t in ("1", "2", "3")]
    truth = [multi["ground_truth_inputs"]["per_turn"][t]["l1"] for t in ("1", "2", "3")]
    assert own[0] == pytest.approx(truth[0])
    assert own[0] < own[1] < own[2]
    assert truth == pytest.approx([truth[0]] * 3)
    assert multi["chained"]["final_turn"]["l1"] == pytest.approx(own[2])


def test_inputs_are_fitted_to_multiples_of_eight() -> None:
    assert fit(Image.new("RGB", (1000, 750)), 512).size == (512, 384)
    assert fit(Image.new("RGB", (30, 61)), 32).size == (16, 32)


def test_pix2chat_eval_compares_base_and_adapter(
    tiny_model_dir: Path,
    tiny_lora_dir: Path,
    tiny_clip_dir: Path,
    tiny_dino_dir: Path,
    tmp_path: Path,
) -> None:
    folder = write_pair_folder(toy_colour_sessions(2, turns=2), tmp_path / "toy")
    assert len(open_pairs(folder)) == 4
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(folder),
            "--model", str(tiny_model_dir),
            "--lora", f"product={tiny_lora_dir}",
            "--clip-model", str(tiny_clip_dir),
            "--dino-model", str(tiny_dino_dir),
            "--steps", "2",
            "--resolution", "32",
            "--device", "cpu",
            "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert set(report["variants"]) == {"base", "product"}
    base, adapter = report["variants"]["base"], report["variants"]["product"]
    assert base["single_turn"]["count"] == adapter["single_turn"]["count"] == 4
    assert set(base["multi_turn"]) == {"chained", "ground_truth_inputs"}
    assert set(base["developed"]) == set(adapter["developed"]) == {"single_turn", "multi_turn"}
    assert adapter["developed"]["single_turn"]["count"] == 4
    # The adapter is really applied: its edits, and so its scores, differ from the base's.
    assert base["single_turn"]["l1"] != adapter["single_turn"]["l1"]
    table = (out / "eval.md").read_text()
    assert table == markdown(report)
    assert (
        "| product | single turn |" in table
        and "| base | multi-turn, chained (final turn) |" in table
    )
    assert "l1 ↓ raw" in table and "l1 ↓ developed" in table


def test_pix2chat_eval_with_a_missing_dataset_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "empty"), "--model", "x"])
    assert result.exit_code == 2
    assert "has no metadata.jsonl" in result.output
    assert "Traceback" not in result.output


class Speck:
    """Paints a small white square at working resolution and adds +-2 levels of noise everywhere,
    as a VAE round trip does: an edit that changes little."""

    def edit_batch(
        self, requests: Sequence[EditRequest], progress: ProgressCallback | None = None
    ) -> list[Image.Image]:
        outputs = []
        for index, request in enumerate(requests):
            pixels = np.asarray(request.image, dtype=np.int16)
            noise = np.random.default_rng(index).integers(-2, 3, pixels.shape)
            pixels = np.clip(pixels + noise, 0, 255)
            pixels[8:16, 8:16] = 255
            outputs.append(Image.fromarray(pixels.astype(np.uint8)))
        return outputs


def _textured(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_the_report_has_both_tracks_with_every_metric(scorers: Scorers) -> None:
    sessions = toy_colour_sessions(2, turns=3)
    result = evaluate(Oracle(), sessions, scorers, CONFIG)
    developed = result["developed"]
    assert set(developed) == {"single_turn", "multi_turn"}
    assert set(developed["multi_turn"]) == {"chained", "ground_truth_inputs"}
    for track in (result, developed):
        assert set(track["single_turn"]) == {*METRICS, "count"}
        for mode in ("chained", "ground_truth_inputs"):
            summary = track["multi_turn"][mode]
            assert sorted(summary["per_turn"]) == ["1", "2", "3"]
            assert set(summary["all_turns"]) == set(summary["final_turn"]) == {*METRICS, "count"}
    # A perfect editor is perfect in both tracks.
    assert developed["single_turn"]["l1"] == 0.0
    assert developed["multi_turn"]["chained"]["all_turns"]["l1"] == 0.0
    raw_only = evaluate(Oracle(), sessions, scorers, replace(CONFIG, develop=False))
    assert "developed" not in raw_only
    assert raw_only["single_turn"] == result["single_turn"]


def test_developing_keeps_untouched_pixels_so_l1_drops(scorers: Scorers) -> None:
    # A full-size textured photo edited at a 64 px working size: the raw output, resized back,
    # has lost the texture everywhere; the developed one keeps every untouched pixel.
    pairs = []
    for session in range(2):
        image = _textured(192, 128, session)
        for turn in range(2):
            pairs.append(EditPair(image, "add a speck", image, session=f"s{session}", turn=turn))
    config = EvalConfig(params=EditParams(resolution=64), batch_size=2)
    result = evaluate(Speck(), pairs, scorers, config)
    raw, developed = result, result["developed"]
    assert developed["single_turn"]["l1"] < raw["single_turn"]["l1"] / 4
    for mode in ("chained", "ground_truth_inputs"):
        for turn in ("1", "2"):
            assert (
                developed["multi_turn"][mode]["per_turn"][turn]["l1"]
                <= raw["multi_turn"][mode]["per_turn"][turn]["l1"]
            )


def test_the_markdown_shows_raw_and_developed_side_by_side(scorers: Scorers) -> None:
    sessions = toy_colour_sessions(2, turns=2)
    report = compare({"oracle": Oracle}, sessions, scorers, CONFIG)
    table = markdown(report)
    header = table.splitlines()[0]
    for metric in METRICS:
        assert f"{metric} ↓ raw" in header or f"{metric} ↑ raw" in header
        assert f"{metric} ↓ developed" in header or f"{metric} ↑ developed" in header
    row = next(line for line in table.splitlines() if line.startswith("| oracle | single turn |"))
    assert row.count("|") == header.count("|")
    assert "| oracle | multi-turn, chained (turn 2) |" in table
    raw_only = markdown(
        compare({"oracle": Oracle}, sessions, scorers, replace(CONFIG, develop=False))
    )
    assert "developed |" not in raw_only.splitlines()[0] and "l1 ↓ raw" in raw_only
