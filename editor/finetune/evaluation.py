"""`pix2chat eval`: the base model against a fine-tuned adapter, MagicBrush-style.

Each model edits the evaluation pairs through the production editor (`DiffusersEditor`, so an
adapter is measured exactly as the bot serves it) and is scored with editor/finetune/metrics.py:

- single turn: every pair edited from its ground-truth input;
- multi-turn, for datasets whose rows carry `session` and `turn` (MagicBrush's layout, or
  `toy_colour_sessions`): "chained" feeds each turn the model's own previous output, as a chat
  user does, and "ground-truth inputs" feeds it the reference input of that turn. The gap
  between the two is the drift that builds up over a conversation.

Two tracks are scored with the same metrics, side by side:

- "raw": the model's own output, at the working resolution it was made at, resized (bicubic)
  up to the source's size (the pair's input image) before every comparison, so L1, CLIP-I and
  DINO see both tracks at the same size. This is what the bot served before the develop step.
- "developed": that output carried onto the source at the source's own size by
  `editor.develop.develop` (parent = the source, model input = the fitted image the model saw),
  exactly as the worker stores and chains it. Off with `EvalConfig.develop = False`.

Multi-turn runs two chains, one per track: the raw chain feeds each turn the previous raw
output, the developed chain the previous developed image, so the drift over the turns is
measured for each (one more model run per turn: three instead of two). "Ground-truth inputs"
edits each turn once and scores both tracks of that edit.

Results go to JSON (everything, per turn too) and a Markdown table. The JSON keeps its layout
for the raw track ("single_turn", "multi_turn") and adds "developed" with the same shape.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from PIL import Image

from editor.base import Editor, EditRequest
from editor.develop import develop
from editor.finetune.data import EditPair
from editor.finetune.metrics import (
    DEFAULT_CLIP,
    DEFAULT_DINO,
    ClipScorer,
    DinoScorer,
    clip_i,
    clip_t,
    dino,
    directional_similarity,
    l1_distance,
)
from editor.params import EditParams

METRICS = ("l1", "clip_i", "dino", "clip_t", "clip_directional")
LOWER_IS_BETTER = frozenset({"l1"})
RAW, DEVELOPED = "raw", "developed"
PerTurn = dict[int, dict[str, list[float]]]


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """What to measure and with which settings.

    Args:
        params: generation settings for every edit (steps, both guidance scales, seed); the
            resolution is the long side the inputs are fitted to.
        batch_size: edits per pipeline call.
        limit: evaluate only the first this many pairs (all if None).
        develop: also score the developed track (the output developed onto the source at its
            own size, as the bot serves it); off leaves only the raw model output.
    """

    clip_model: str = DEFAULT_CLIP
    dino_model: str = DEFAULT_DINO
    params: EditParams = field(default_factory=EditParams)
    batch_size: int = 4
    limit: int | None = None
    develop: bool = True


@dataclass(frozen=True, slots=True)
class Edited:
    """One set of edits in both tracks.

    Attributes:
        raw: the model's outputs, at the working resolution.
        developed: the outputs developed onto their inputs at the inputs' own sizes, or None
            when not asked for.
    """

    raw: list[Image.Image]
    developed: list[Image.Image] | None


@dataclass(frozen=True, slots=True)
class Scorers:
    """The measuring models, loaded once for every variant."""

    clip: ClipScorer
    dino: DinoScorer

    @classmethod
    def load(cls, config: EvalConfig, device: str = "cpu") -> Scorers:
        return cls(
            ClipScorer(config.clip_model, device=device),
            DinoScorer(config.dino_model, device=device),
        )


def fit(image: Image.Image, long_side: int) -> Image.Image:
    """`image` with its long side at `long_side`, both sides multiples of 8 (the VAE's factor)."""
    scale = long_side / max(image.size)
    width, height = (max(8, round(side * scale / 8) * 8) for side in image.size)
    size = (width, height)
    image = image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def edit_all(
    editor: Editor, inputs: Sequence[Image.Image], prompts: Sequence[str], config: EvalConfig
) -> list[Image.Image]:
    """Edit every input with its prompt, batching neighbours of equal size."""
    return edit_and_develop(editor, inputs, prompts, config, developed=False).raw


def edit_and_develop(
    editor: Editor,
    inputs: Sequence[Image.Image],
    prompts: Sequence[str],
    config: EvalConfig,
    developed: bool = True,
) -> Edited:
    """Edit every input, and (if `developed`) develop each output onto its input's own size."""
    fitted = [fit(image, config.params.resolution) for image in inputs]
    requests = [
        EditRequest(image, prompt, config.params)
        for image, prompt in zip(fitted, prompts, strict=True)
    ]
    outputs: list[Image.Image] = []
    start = 0
    while start < len(requests):
        end = start + 1
        size = requests[start].image.size
        while end < len(requests) and end - start < config.batch_size:
            if requests[end].image.size != size:
                break
            end += 1
        outputs.extend(editor.edit_batch(requests[start:end]))
        start = end
    if not developed:
        return Edited(outputs, None)
    return Edited(
        outputs,
        [
            develop(source.convert("RGB"), seen, _rgb_at(output, seen.size)).image
            for source, seen, output in zip(inputs, fitted, outputs, strict=True)
        ],
    )


def _rgb_at(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` as RGB at `size`, resampled (bicubic) only if it is not that size already."""
    image = image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def at_sources(outputs: Sequence[Image.Image], sources: Sequence[Image.Image]) -> list[Image.Image]:
    """Raw outputs resized to their sources' sizes, so both tracks are compared at one size."""
    return [_rgb_at(o, s.size) for o, s in zip(outputs, sources, strict=True)]


def score(
    scorers: Scorers,
    inputs: Sequence[Image.Image],
    outputs: Sequence[Image.Image],
    pairs: Sequence[EditPair],
) -> dict[str, list[float]]:
    """Per-sample metrics of `outputs` against the pairs' ground truth and captions."""
    truths = [pair.edited_image for pair in pairs]
    input_captions = [pair.original_prompt or pair.edit_prompt for pair in pairs]
    output_captions = [pair.edited_prompt or pair.edit_prompt for pair in pairs]
    return {
        "l1": [l1_distance(o, t) for o, t in zip(outputs, truths, strict=True)],
        "clip_i": clip_i(scorers.clip, outputs, truths),
        "dino": dino(scorers.dino, outputs, truths),
        "clip_t": clip_t(scorers.clip, outputs, output_captions),
        "clip_directional": directional_similarity(
            scorers.clip, inputs, outputs, input_captions, output_captions
        ),
    }


def _means(values: dict[str, list[float]]) -> dict[str, float]:
    result = {name: fmean(values[name]) for name in METRICS}
    result["count"] = len(values["l1"])
    return result


def evaluate(
    editor: Editor, pairs: Sequence[EditPair], scorers: Scorers, config: EvalConfig
) -> dict[str, Any]:
    """Single-turn and (where the pairs have sessions) multi-turn results of one model.

    "single_turn" and "multi_turn" are the raw track; "developed" (when `config.develop`) holds
    the same two for the developed track.
    """
    pairs = list(pairs[: config.limit] if config.limit is not None else pairs)
    inputs = [pair.original_image for pair in pairs]
    edits = edit_and_develop(editor, inputs, [p.edit_prompt for p in pairs], config, config.develop)
    raw = at_sources(edits.raw, inputs)
    result: dict[str, Any] = {"single_turn": _means(score(scorers, inputs, raw, pairs))}
    if edits.developed is not None:
        result["developed"] = {
            "single_turn": _means(score(scorers, inputs, edits.developed, pairs))
        }
    sessions: dict[str, list[EditPair]] = defaultdict(list)
    for pair in pairs:
        if pair.session:
            sessions[pair.session].append(pair)
    if sessions:
        multi = _multi_turn(editor, sessions, scorers, config)
        result["multi_turn"] = multi[RAW]
        if DEVELOPED in multi:
            result["developed"]["multi_turn"] = multi[DEVELOPED]
    return result


def _multi_turn(
    editor: Editor,
    sessions: dict[str, list[EditPair]],
    scorers: Scorers,
    config: EvalConfig,
) -> dict[str, dict[str, Any]]:
    """Per track: the chained and ground-truth-input results, each over all, final and per turn."""
    chains = [sorted(turns, key=lambda p: p.turn) for _, turns in sorted(sessions.items())]
    longest = max(len(chain) for chain in chains)
    tracks = (RAW, DEVELOPED) if config.develop else (RAW,)
    chained: dict[str, PerTurn] = {track: {} for track in tracks}
    truth: dict[str, PerTurn] = {track: {} for track in tracks}
    # One chain per track: each feeds the next turn its own previous result.
    current = {track: [chain[0].original_image for chain in chains] for track in tracks}
    for turn in range(longest):
        alive = [i for i, chain in enumerate(chains) if len(chain) > turn]
        pairs = [chains[i][turn] for i in alive]
        prompts = [pair.edit_prompt for pair in pairs]
        reference_inputs = [pair.original_image for pair in pairs]
        # Directional similarity is measured from the turn's reference input in both modes,
        # so the chained and ground-truth columns differ only by what the model was fed.
        for track in tracks:
            own_inputs = [current[track][i] for i in alive]
            edits = edit_and_develop(editor, own_inputs, prompts, config, track == DEVELOPED)
            own = edits.raw if edits.developed is None else edits.developed
            for i, image in zip(alive, own, strict=True):
                current[track][i] = image
            if edits.developed is None:
                own = at_sources(own, reference_inputs)
            chained[track][turn + 1] = score(scorers, reference_inputs, own, pairs)
        reference = edit_and_develop(editor, reference_inputs, prompts, config, config.develop)
        truth[RAW][turn + 1] = score(
            scorers, reference_inputs, at_sources(reference.raw, reference_inputs), pairs
        )
        if reference.developed is not None:
            truth[DEVELOPED][turn + 1] = score(
                scorers, reference_inputs, reference.developed, pairs
            )

    def summary(per_turn: PerTurn) -> dict[str, Any]:
        everything = {
            name: [v for turn in per_turn.values() for v in turn[name]] for name in METRICS
        }
        return {
            "all_turns": _means(everything),
            "final_turn": _means(per_turn[longest]),
            "per_turn": {str(turn): _means(values) for turn, values in per_turn.items()},
        }

    return {
        track: {"chained": summary(chained[track]), "ground_truth_inputs": summary(truth[track])}
        for track in tracks
    }


def compare(
    variants: dict[str, Callable[[], Editor]],
    pairs: Sequence[EditPair],
    scorers: Scorers,
    config: EvalConfig,
) -> dict[str, Any]:
    """Evaluate each variant (built lazily, one at a time, so only one model is in memory)."""
    results: dict[str, Any] = {}
    for name, build in variants.items():
        editor = build()
        results[name] = evaluate(editor, pairs, scorers, config)
        del editor
    return {
        "config": _config_json(config),
        "variants": results,
    }


def _config_json(config: EvalConfig) -> dict[str, Any]:
    data = asdict(config)
    data["params"] = config.params.to_dict()
    return data


def markdown(report: dict[str, Any]) -> str:
    """A table: one row per model and mode, per metric a "raw" and (if measured) a "developed"
    column side by side (arrows say which way is good); multi-turn chains also per turn."""
    variants = report["variants"]
    tracks = [RAW, DEVELOPED] if any(DEVELOPED in r for r in variants.values()) else [RAW]
    header = [
        "model",
        "mode",
        *(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'} {t}" for m in METRICS for t in tracks),
        "n",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in variants.items():
        rows: list[tuple[str, tuple[str, ...]]] = [("single turn", ("single_turn",))]
        if "multi_turn" in result:
            chained = ("multi_turn", "chained")
            rows += [
                ("multi-turn, chained (all turns)", (*chained, "all_turns")),
                ("multi-turn, chained (final turn)", (*chained, "final_turn")),
                *(
                    (f"multi-turn, chained (turn {turn})", (*chained, "per_turn", turn))
                    for turn in result["multi_turn"]["chained"]["per_turn"]
                ),
                (
                    "multi-turn, ground-truth inputs (all turns)",
                    ("multi_turn", "ground_truth_inputs", "all_turns"),
                ),
            ]
        for mode, path in rows:
            raw = _at(result, path) or {}
            by_track = {RAW: raw, DEVELOPED: _at(result.get(DEVELOPED), path) or {}}
            cells = [
                f"{by_track[t][m]:.4f}" if m in by_track[t] else "–"
                for m in METRICS
                for t in tracks
            ]
            count = raw["count"]
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {count} |")
    params = report["config"]["params"]
    lines.append("")
    lines.append(
        f"Settings: {params['num_inference_steps']} steps, guidance {params['guidance_scale']}, "
        f"image guidance {params['image_guidance_scale']}, seed {params['seed']}, long side "
        f"{params['resolution']}; CLIP {report['config']['clip_model']}, "
        f"DINO {report['config']['dino_model']}. Raw: the model's output resized to the "
        "source's size"
        + ("; developed: developed onto the source at its own size." if len(tracks) > 1 else ".")
    )
    return "\n".join(lines) + "\n"


def _at(result: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    """`result[path[0]][path[1]]...`, or None where a key is missing."""
    for key in path:
        if result is None or key not in result:
            return None
        result = result[key]
    return result


def write_report(report: dict[str, Any], output_dir: Path) -> tuple[Path, Path]:
    """eval.json and eval.md in `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "eval.json"
    md_path = output_dir / "eval.md"
    json_path.write_text(json.dumps(report, indent=2), "utf-8")
    md_path.write_text(markdown(report), "utf-8")
    return json_path, md_path
