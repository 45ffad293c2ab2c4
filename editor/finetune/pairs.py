"""`pix2chat dataset images`: paired images for caption triples, kept when CLIP agrees.

For each triple, several samples (seeds, and a random share of attention-sharing steps, as the
InstructPix2Pix paper draws p ~ U(0.1, 0.9)) are generated with Prompt-to-Prompt; a sample is
kept when both images match their captions, the two images are still alike, and the image change
points the way the caption change does (CLIP directional similarity). The best `keep` samples
by directional similarity are written.

Multi-turn sessions (rows with `session` and `turn`, from `dataset captions --turns N`) are
generated as one unit: the first caption and every turn's output caption in one batch, each
sharing the first one's noise and attention maps, so turn k's edited image is turn k+1's input.
A session is kept only when every turn passes.

The output folder is a Hugging Face imagefolder (see editor/finetune/data.py). Work is resumable:
`progress.jsonl` records every finished triple, so an interrupted run starts where it stopped,
and rows of a triple that was cut off half-way are dropped before it is redone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from editor.errors import ModelLoadError
from editor.finetune.captions import CaptionTriple
from editor.finetune.data import METADATA
from editor.finetune.metrics import DEFAULT_CLIP, ClipScorer, clip_i, clip_t, directional_similarity
from editor.finetune.prompt2prompt import PairSettings, generate_session
from editor.loading import DTYPES, select_device

PROGRESS = "progress.jsonl"
DEFAULT_TEXT_TO_IMAGE = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The InstructPix2Pix paper's CLIP filter (ViT-L/14): a sample must pass all four."""

    image_caption: float = 0.2  # each image against its own caption
    image_image: float = 0.75  # the input image against the edited one
    directional: float = 0.2  # image change against caption change


@dataclass(frozen=True, slots=True)
class PairConfig:
    """One `dataset images` run.

    Args:
        model: Stable Diffusion text-to-image hub id or folder.
        clip_model: CLIP for the filter (hub id or folder).
        samples_per_triple: samples generated per caption triple.
        keep_per_triple: at most this many samples that pass are written.
        cross_replace_range: the share of steps with shared attention is drawn from this range.
        limit: stop after this many triples (all if None).
    """

    model: str = DEFAULT_TEXT_TO_IMAGE
    clip_model: str = DEFAULT_CLIP
    samples_per_triple: int = 4
    keep_per_triple: int = 1
    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    resolution: int = 512
    cross_replace_range: tuple[float, float] = (0.1, 0.9)
    self_replace_share: float = 0.5  # of the cross-attention share
    thresholds: Thresholds = field(default_factory=Thresholds)
    seed: int = 0
    limit: int | None = None
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.samples_per_triple < 1 or self.keep_per_triple < 1:
            raise ValueError("samples_per_triple and keep_per_triple must be at least 1.")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, not {self.resolution}.")
        low, high = self.cross_replace_range
        if not 0 <= low <= high <= 1:
            raise ValueError("cross_replace_range must be two fractions, low <= high.")


@dataclass(frozen=True, slots=True)
class Sample:
    """One generated sample of a unit: its images and the CLIP scores of each turn.

    For a single triple, `images` is (input, edited) and `scores` has one entry; for a session
    of n turns, n + 1 images where turn k goes from image k to image k + 1.
    """

    images: tuple[Image.Image, ...]
    seed: int
    cross_replace_steps: float
    scores: tuple[dict[str, float], ...]

    @property
    def directional(self) -> float:
        return sum(turn["clip_directional"] for turn in self.scores) / len(self.scores)


def units(triples: Sequence[CaptionTriple]) -> list[list[CaptionTriple]]:
    """Triples grouped into what is generated together: single rows, or whole sessions in turn order."""
    grouped: dict[str, list[CaptionTriple]] = {}
    result: list[list[CaptionTriple]] = []
    for triple in triples:
        if not triple.session:
            result.append([triple])
        elif triple.session in grouped:
            grouped[triple.session].append(triple)
        else:
            grouped[triple.session] = [triple]
            result.append(grouped[triple.session])
    for unit in result:
        unit.sort(key=lambda t: t.turn)
    return result


def unit_id(unit: Sequence[CaptionTriple]) -> str:
    """The key `progress.jsonl` records a unit under."""
    return f"session:{unit[0].session}" if unit[0].session else unit[0].id


@dataclass(slots=True)
class PairReport:
    """What a run did."""

    triples_done: int = 0
    triples_skipped: int = 0  # finished in an earlier run
    samples: int = 0
    kept: int = 0


def load_text_to_image(
    model: str, device: str = "auto", dtype: str = "auto"
) -> StableDiffusionPipeline:
    """The Stable Diffusion pipeline, on the device, without the NSFW checker's black images."""
    resolved = select_device(device)
    torch_dtype = (
        DTYPES[dtype]
        if dtype != "auto"
        else (torch.float16 if resolved == "cuda" else torch.float32)
    )
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            model, dtype=torch_dtype, safety_checker=None, requires_safety_checker=False
        )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the text-to-image model {model!r}: {exc}\n"
            "Give a Stable Diffusion hub id or a folder written by save_pretrained."
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(resolved)


class PairGenerator:
    """Generates, scores and writes pairs; models are passed in so tests can use tiny ones."""

    def __init__(self, config: PairConfig, pipe: StableDiffusionPipeline, clip: ClipScorer) -> None:
        self.config = config
        self.pipe = pipe
        self.clip = clip

    def samples(self, unit: Sequence[CaptionTriple]) -> list[Sample]:
        """All samples of one unit, scored; deterministic for the run's seed and the unit."""
        config = self.config
        rng = random.Random(f"{config.seed}:{unit_id(unit)}")
        captions = [unit[0].original_prompt, *(triple.edited_prompt for triple in unit)]
        drawn = []
        for _ in range(config.samples_per_triple):
            seed = rng.randrange(2**32)
            share = rng.uniform(*config.cross_replace_range)
            settings = PairSettings(
                seed=seed,
                num_inference_steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                cross_replace_steps=share,
                self_replace_steps=share * config.self_replace_share,
                height=config.resolution,
                width=config.resolution,
            )
            drawn.append((tuple(generate_session(self.pipe, captions, settings)), seed, share))
        # Score every turn of every sample in one batch per measure.
        originals = [images[k] for images, _, _ in drawn for k in range(len(unit))]
        editeds = [images[k + 1] for images, _, _ in drawn for k in range(len(unit))]
        captions_in = [triple.original_prompt for _ in drawn for triple in unit]
        captions_out = [triple.edited_prompt for _ in drawn for triple in unit]
        columns = {
            "clip_original": clip_t(self.clip, originals, captions_in),
            "clip_edited": clip_t(self.clip, editeds, captions_out),
            "clip_image": clip_i(self.clip, originals, editeds),
            "clip_directional": directional_similarity(
                self.clip, originals, editeds, captions_in, captions_out
            ),
        }
        samples = []
        for index, (images, seed, share) in enumerate(drawn):
            rows = range(index * len(unit), (index + 1) * len(unit))
            scores = tuple({name: values[i] for name, values in columns.items()} for i in rows)
            samples.append(Sample(images, seed, share, scores))
        return samples

    def passes(self, scores: dict[str, float]) -> bool:
        """The InstructPix2Pix filter for one turn."""
        t = self.config.thresholds
        return (
            scores["clip_original"] >= t.image_caption
            and scores["clip_edited"] >= t.image_caption
            and scores["clip_image"] >= t.image_image
            and scores["clip_directional"] >= t.directional
        )

    def keep(self, samples: Sequence[Sample]) -> list[Sample]:
        """Samples whose every turn passes, best (mean) directional similarity first, at most `keep`."""
        passed = [s for s in samples if all(self.passes(turn) for turn in s.scores)]
        passed.sort(key=lambda s: s.directional, reverse=True)
        return passed[: self.config.keep_per_triple]

    def run(
        self,
        triples: Sequence[CaptionTriple],
        output_dir: Path,
        *,
        progress: bool = True,
    ) -> PairReport:
        """Generate pairs for every triple not done yet and append them to `output_dir`."""
        from tqdm.auto import tqdm

        (output_dir / "images").mkdir(parents=True, exist_ok=True)
        done = _finished(output_dir)
        _drop_unfinished_rows(output_dir, done)
        (output_dir / "pairs_config.json").write_text(json.dumps(_jsonable(self.config), indent=2))
        report = PairReport()
        groups = units(triples)
        todo = [unit for unit in groups if unit_id(unit) not in done]
        report.triples_skipped = sum(len(unit) for unit in groups) - sum(len(u) for u in todo)
        if self.config.limit is not None:
            todo = todo[: self.config.limit]
        with (
            (output_dir / METADATA).open("a", encoding="utf-8") as metadata,
            (output_dir / PROGRESS).open("a", encoding="utf-8") as finished,
            tqdm(todo, desc="Pairs", unit="unit", disable=not progress) as bar,
        ):
            for unit in bar:
                samples = self.samples(unit)
                kept = self.keep(samples)
                for rank, sample in enumerate(kept):
                    for row in self._write(unit, rank, sample, output_dir):
                        metadata.write(json.dumps(row) + "\n")
                metadata.flush()
                finished.write(json.dumps({"id": unit_id(unit), "kept": len(kept)}) + "\n")
                finished.flush()
                report.triples_done += len(unit)
                report.samples += len(samples)
                report.kept += len(kept) * len(unit)
                bar.set_postfix(kept=report.kept)
        return report

    @staticmethod
    def _write(
        unit: Sequence[CaptionTriple], rank: int, sample: Sample, output_dir: Path
    ) -> list[dict[str, Any]]:
        key = unit[0].session or unit[0].id
        names = [f"images/{key}-{rank}-{index}.png" for index in range(len(sample.images))]
        for name, image in zip(names, sample.images, strict=True):
            image.save(output_dir / name)
        rows = []
        for turn, (triple, scores) in enumerate(zip(unit, sample.scores, strict=True)):
            row: dict[str, Any] = {
                "original_image_file_name": names[turn],
                "edited_image_file_name": names[turn + 1],
                "id": triple.id,
                "original_prompt": triple.original_prompt,
                "edit_prompt": triple.edit_prompt,
                "edited_prompt": triple.edited_prompt,
                "category": triple.category,
                "family": triple.family,
                "seed": sample.seed,
                "cross_replace_steps": round(sample.cross_replace_steps, 4),
                **{name: round(value, 5) for name, value in scores.items()},
            }
            if triple.session:
                # A session's rows share one sample: row k's edited image is row k+1's input.
                row |= {"session": f"{triple.session}-{rank}", "turn": turn}
            rows.append(row)
        return rows


def _finished(output_dir: Path) -> set[str]:
    path = output_dir / PROGRESS
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text("utf-8").splitlines():
        try:
            done.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            continue  # a line cut off by a crash: that triple is redone
    return done


def _drop_unfinished_rows(output_dir: Path, done: set[str]) -> None:
    """Rows of a triple whose progress line was never written (a crash mid-triple) go."""
    path = output_dir / METADATA
    if not path.exists():
        return
    lines = path.read_text("utf-8").splitlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
            session = str(row.get("session", ""))
            unit = f"session:{session.rsplit('-', 1)[0]}" if session else row["id"]
        except (ValueError, KeyError):
            continue
        if unit in done:
            keep.append(line)
    if len(keep) != len(lines):
        path.write_text("".join(line + "\n" for line in keep), "utf-8")


def _jsonable(config: PairConfig) -> dict[str, Any]:
    data = asdict(config)
    data["cross_replace_range"] = list(config.cross_replace_range)
    return data
