"""`dataset images`: pairs from caption triples, CLIP filter, resumable imagefolder output."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import datasets
import pytest
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from editor.finetune.captions import CaptionTriple, SynthesisConfig, synthesize, synthesize_sessions
from editor.finetune.data import METADATA, open_pairs
from editor.finetune.metrics import ClipScorer, clip_t, directional_similarity
from editor.finetune.pairs import (
    PROGRESS,
    PairConfig,
    PairGenerator,
    Sample,
    Thresholds,
    load_text_to_image,
)
from editor.finetune.train_config import TrainConfig
from editor.finetune.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ACCEPT_ALL = Thresholds(image_caption=-1.0, image_image=-1.0, directional=-1.0)


@pytest.fixture(scope="module")
def pipe(tiny_sd_dir: Path) -> StableDiffusionPipeline:
    return load_text_to_image(str(tiny_sd_dir), device="cpu")


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path) -> ClipScorer:
    return ClipScorer(str(tiny_clip_dir))


@pytest.fixture(scope="module")
def triples() -> list[CaptionTriple]:
    rows = synthesize(
        SynthesisConfig(
            categories=1,
            products_per_category=1,
            variants_per_product=1,
            families=("recolour", "season", "outdoor placement"),
            phrasings_per_edit=1,
        )
    )
    assert len(rows) == 3
    return rows


def _config(**changes: object) -> PairConfig:
    base: dict[str, object] = {
        "samples_per_triple": 2,
        "keep_per_triple": 1,
        "num_inference_steps": 3,
        "resolution": 32,
        "thresholds": ACCEPT_ALL,
        "device": "cpu",
    }
    return PairConfig(**(base | changes))  # type: ignore[arg-type]


def _rows(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / METADATA).read_text().splitlines()]


def test_pairs_resume_and_load_with_datasets(
    pipe: StableDiffusionPipeline,
    clip: ClipScorer,
    triples: list[CaptionTriple],
    tmp_path: Path,
    tiny_model_dir: Path,
) -> None:
    out = tmp_path / "pairs"
    first = PairGenerator(_config(limit=2), pipe, clip).run(triples, out, progress=False)
    assert (first.triples_done, first.samples, first.kept) == (2, 4, 2)
    # A crash after a triple's rows but before its progress line: that row must not survive.
    with (out / METADATA).open("a") as file:
        file.write(json.dumps({"id": triples[2].id, "edit_prompt": "half-written"}) + "\n")
    second = PairGenerator(_config(), pipe, clip).run(triples, out, progress=False)
    assert (second.triples_skipped, second.triples_done) == (2, 1)
    rows = _rows(out)
    assert [row["id"] for row in rows] == [t.id for t in triples]
    assert all(row["edit_prompt"] != "half-written" for row in rows)
    assert len((out / PROGRESS).read_text().splitlines()) == 3

    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert {"original_image", "edited_image", "edit_prompt", "clip_directional"} <= set(
        loaded.column_names
    )
    assert len(loaded) == 3
    assert sorted(loaded["edit_prompt"]) == sorted(t.edit_prompt for t in triples)
    assert loaded[0]["original_image"].size == (32, 32)

    # Stored scores are the metrics of the stored (lossless) images.
    row = rows[0]
    assert "session" not in row
    original = Image.open(out / str(row["original_image_file_name"]))
    edited = Image.open(out / str(row["edited_image_file_name"]))
    triple = triples[0]
    assert row["clip_edited"] == pytest.approx(
        clip_t(clip, [edited], [triple.edited_prompt])[0], abs=1e-4
    )
    direction = directional_similarity(
        clip, [original], [edited], [triple.original_prompt], [triple.edited_prompt]
    )[0]
    assert row["clip_directional"] == pytest.approx(direction, abs=1e-4)

    # The folder is a training set as it is.
    pairs = open_pairs(out)
    assert [p.edit_prompt for p in pairs] == [t.edit_prompt for t in triples]
    config = TrainConfig(
        model=str(tiny_model_dir),
        dataset=str(out),
        output_dir=tmp_path / "lora",
        resolution=32,
        train_batch_size=2,
        max_train_steps=1,
        checkpointing_steps=0,
        device="cpu",
    )
    assert Trainer(config, progress=False).train().step == 1


def test_the_filter_drops_pairs_that_fail_and_keeps_the_best(
    pipe: StableDiffusionPipeline, clip: ClipScorer, triples: list[CaptionTriple], tmp_path: Path
) -> None:
    strict = _config(thresholds=Thresholds(directional=1.01))
    report = PairGenerator(strict, pipe, clip).run(triples[:1], tmp_path, progress=False)
    assert (report.samples, report.kept) == (2, 0)
    assert (tmp_path / METADATA).read_text() == ""
    assert json.loads((tmp_path / PROGRESS).read_text()) == {"id": triples[0].id, "kept": 0}

    image = Image.new("RGB", (8, 8))

    def turn(directional: float, image_image: float = 0.9) -> dict[str, float]:
        return {
            "clip_original": 0.3,
            "clip_edited": 0.3,
            "clip_image": image_image,
            "clip_directional": directional,
        }

    def sample(*turns: dict[str, float]) -> Sample:
        return Sample((image,) * (len(turns) + 1), 0, 0.5, turns)

    generator = PairGenerator(_config(keep_per_triple=2, thresholds=Thresholds()), pipe, clip)
    candidates = [
        sample(turn(0.25)),
        sample(turn(0.1)),
        sample(turn(0.4)),
        sample(turn(0.5, image_image=0.5)),
        sample(turn(0.3)),
    ]
    kept = generator.keep(candidates)
    assert [s.directional for s in kept] == [0.4, 0.3]
    # A session is kept only if every turn passes; it ranks by its mean.
    sessions = [
        sample(turn(0.9), turn(0.1)),
        sample(turn(0.3), turn(0.35)),
        sample(turn(0.25), turn(0.2)),
    ]
    assert [s.directional for s in generator.keep(sessions)] == pytest.approx([0.325, 0.225])


def test_samples_are_deterministic_and_draw_their_own_seeds(
    pipe: StableDiffusionPipeline, clip: ClipScorer, triples: list[CaptionTriple]
) -> None:
    generator = PairGenerator(_config(), pipe, clip)
    first, again = generator.samples(triples[:1]), generator.samples(triples[:1])
    assert [s.seed for s in first] == [s.seed for s in again]
    assert len({s.seed for s in first}) == 2
    assert all(0.1 <= s.cross_replace_steps <= 0.9 for s in first)
    assert first[0].images[1].tobytes() == again[0].images[1].tobytes()


def test_sessions_chain_their_images_and_load_as_multi_turn_pairs(
    pipe: StableDiffusionPipeline, clip: ClipScorer, tmp_path: Path
) -> None:
    config = SynthesisConfig(categories=2, products_per_category=1, variants_per_product=1)
    turns = synthesize_sessions(config, turns=3)
    assert len(turns) == 6
    report = PairGenerator(_config(limit=1), pipe, clip).run(turns, tmp_path, progress=False)
    assert (report.triples_done, report.kept) == (3, 3)
    rows = _rows(tmp_path)
    assert [row["turn"] for row in rows] == [0, 1, 2]
    assert len({row["session"] for row in rows}) == 1
    # Each turn starts from the image the previous turn produced.
    for before, after in itertools.pairwise(rows):
        assert after["original_image_file_name"] == before["edited_image_file_name"]
        assert after["original_prompt"] == before["edited_prompt"]
    # Resuming skips the finished session and generates the other one.
    again = PairGenerator(_config(), pipe, clip).run(turns, tmp_path, progress=False)
    assert (again.triples_skipped, again.triples_done) == (3, 3)
    pairs = open_pairs(tmp_path)
    assert [(p.turn, bool(p.session)) for p in pairs] == [(t, True) for t in (0, 1, 2)] * 2
