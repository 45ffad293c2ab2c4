"""`pix2chat dataset captions|images` and `pix2chat train` as a user runs them, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from editor.finetune.captions import read_jsonl
from editor.finetune.checkpoints import LORA_FILE
from editor.finetune.data import write_pair_folder
from editor.finetune.testing import toy_colour_pairs, toy_colour_sessions
from editor.pix2pix import DiffusersEditor

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_captions_command_writes_the_requested_rows(tmp_path: Path) -> None:
    out = tmp_path / "captions.jsonl"
    code, output = _run(
        "dataset", "captions", "-o", str(out), "--categories", "2", "--products-per-category", "1",
        "--variants-per-product", "1", "--phrasings", "2", "--seed", "4",
    )  # fmt: skip
    assert code == 0, output
    rows = read_jsonl(out)
    assert f"Wrote {len(rows)} triples (25 edit families)" in output
    assert 0.95 * 2 * 25 * 2 <= len(rows) <= 2 * 25 * 2
    code, output = _run("dataset", "captions", "-o", str(out), "--categories", "1", "--turns", "3")
    sessions = {row.session for row in read_jsonl(out)}
    assert (
        code == 0 and f"in {len(sessions)} sessions" in output and len(sessions) == 4
    )  # 2 products x 2 variants
    code, output = _run("dataset", "captions", "--list-families")
    assert code == 0 and "recolour" in output and "landmark background" in output
    code, output = _run("dataset", "captions", "-o", str(out), "--family", "teleport")
    assert code == 2 and "Unknown edit families: teleport" in output


def test_images_command_builds_a_dataset_and_resumes(
    tmp_path: Path, tiny_sd_dir: Path, tiny_clip_dir: Path
) -> None:
    captions = tmp_path / "captions.jsonl"
    _run("dataset", "captions", "-o", str(captions), "--categories", "1",
         "--products-per-category", "1", "--variants-per-product", "1", "--phrasings", "1",
         "--family", "recolour", "--family", "snow")  # fmt: skip
    common = [
        "dataset", "images", str(captions), "-o", str(tmp_path / "pairs"),
        "--model", str(tiny_sd_dir), "--clip-model", str(tiny_clip_dir), "--samples", "2",
        "--steps", "2", "--resolution", "32", "--min-clip", "-1", "--min-image-similarity", "-1",
        "--min-directional", "-1", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    code, output = _run(*common, "--limit", "1")
    assert code == 0, output
    assert (
        "1 triples done (0 already done earlier): 1 pairs kept from 2 generated samples" in output
    )
    code, output = _run(*common)
    assert "1 triples done (1 already done earlier)" in output
    rows = (tmp_path / "pairs" / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 2


def test_train_command_saves_an_adapter_the_editor_loads(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = write_pair_folder(toy_colour_pairs(4), tmp_path / "toy")
    out = tmp_path / "lora"
    args = [
        "train", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--resolution", "32",
        "--batch-size", "2", "--max-train-steps", "2", "--checkpointing-steps", "1",
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    code, output = _run(*args)
    assert code == 0, output
    assert f"Serve it with PIX2CHAT_LORA={out}" in output
    assert (out / LORA_FILE).is_file()
    assert json.loads((out / "train_config.json").read_text())["max_train_steps"] == 2
    # Asking for more steps continues the same run.
    more = [*args]
    more[more.index("--max-train-steps") + 1] = "3"
    code, output = _run(*more)
    assert "Trained to step 3 (resumed at step 2)." in output, output
    DiffusersEditor(str(tiny_model_dir), lora=str(out), device="cpu").load()


def test_train_command_refuses_bad_input_plainly(tmp_path: Path, tiny_model_dir: Path) -> None:
    code, output = _run("train", str(tmp_path), "--model", str(tiny_model_dir), "--device", "cpu")
    assert code == 2 and "has no metadata.jsonl" in output
    code, output = _run("train", "no-such-dataset", "--model", str(tiny_model_dir))
    assert code == 2 and "'no-such-dataset' is neither a pair folder" in output
    folder = write_pair_folder(toy_colour_pairs(2), tmp_path / "toy")
    code, output = _run("train", str(folder), "--model", str(tmp_path / "nope"), "--device", "cpu")
    assert code == 1 and "Could not load the InstructPix2Pix model" in output
    code, output = _run(
        "train", str(folder), "--model", str(tiny_model_dir), "--mixed-precision", "fp8"
    )
    assert code == 2 and "mixed_precision must be one of" in output


def test_eval_command_without_develop_reports_the_raw_track_only(
    tmp_path: Path, tiny_model_dir: Path, tiny_clip_dir: Path, tiny_dino_dir: Path
) -> None:
    folder = write_pair_folder(toy_colour_sessions(1, turns=2), tmp_path / "toy")
    out = tmp_path / "eval"
    code, output = _run(
        "eval", str(folder), "--model", str(tiny_model_dir), "--clip-model", str(tiny_clip_dir),
        "--dino-model", str(tiny_dino_dir), "--steps", "1", "--resolution", "32",
        "--device", "cpu", "--no-develop", "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    report = json.loads((out / "eval.json").read_text())
    assert report["config"]["develop"] is False
    base = report["variants"]["base"]
    assert "developed" not in base and set(base["multi_turn"]) == {"chained", "ground_truth_inputs"}
    assert "l1 ↓ raw" in output and "developed" not in output
