"""Evaluation: known cases with deterministic editors, and `pix2chat eval` end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from bot.cli import app
from editor.base import EditRequest, ProgressCallback
from editor.finetune.data import EditPair, open_pairs, write_pair_folder
from editor.finetune.evaluation import EvalConfig, Scorers, evaluate, fit, markdown
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
    # The adapter is really applied: its edits, and so its scores, differ from the base's.
    assert base["single_turn"]["l1"] != adapter["single_turn"]["l1"]
    table = (out / "eval.md").read_text()
    assert table == markdown(report)
    assert (
        "| product | single turn |" in table
        and "| base | multi-turn, chained (final turn) |" in table
    )


def test_pix2chat_eval_with_a_missing_dataset_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "empty"), "--model", "x"])
    assert result.exit_code == 2
    assert "has no metadata.jsonl" in result.output
    assert "Traceback" not in result.output
