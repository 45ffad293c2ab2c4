"""`pix2chat eval`: the base model against a fine-tuned adapter, MagicBrush-style.

Each model edits the evaluation pairs through the production editor (`DiffusersEditor`, so an
adapter is measured exactly as the bot serves it) and is scored with editor/finetune/metrics.py:

- single turn: every pair edited from its ground-truth input;
- multi-turn, for datasets whose rows carry `session` and `turn` (MagicBrush's layout, or
  `toy_colour_sessions`): "chained" feeds each turn the model's own previous output, as a chat
  user does, and "ground-truth inputs" feeds it the reference input of that turn. The gap
  between the two is the drift that builds up over a conversation.

Results go to JSON (everything, per turn too) and a Markdown table.
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


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """What to measure and with which settings.

    Args:
        params: generation settings for every edit (steps, both guidance scales, seed); the
            resolution is the long side the inputs are fitted to.
        batch_size: edits per pipeline call.
        limit: evaluate only the first this many pairs (all if None).
    """

    clip_model: str = DEFAULT_CLIP
    dino_model: str = DEFAULT_DINO
    params: EditParams = field(default_factory=EditParams)
    batch_size: int = 4
    limit: int | None = None


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
    outputs: list[Image.Image] = []
    requests = [
        EditRequest(fit(image, config.params.resolution), prompt, config.params)
        for image, prompt in zip(inputs, prompts, strict=True)
    ]
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
    return outputs


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
    """Single-turn and (where the pairs have sessions) multi-turn results of one model."""
    pairs = list(pairs[: config.limit] if config.limit is not None else pairs)
    inputs = [pair.original_image for pair in pairs]
    outputs = edit_all(editor, inputs, [p.edit_prompt for p in pairs], config)
    result: dict[str, Any] = {"single_turn": _means(score(scorers, inputs, outputs, pairs))}
    sessions: dict[str, list[EditPair]] = defaultdict(list)
    for pair in pairs:
        if pair.session:
            sessions[pair.session].append(pair)
    if sessions:
        result["multi_turn"] = _multi_turn(editor, sessions, scorers, config)
    return result


def _multi_turn(
    editor: Editor,
    sessions: dict[str, list[EditPair]],
    scorers: Scorers,
    config: EvalConfig,
) -> dict[str, Any]:
    chains = [sorted(turns, key=lambda p: p.turn) for _, turns in sorted(sessions.items())]
    longest = max(len(chain) for chain in chains)
    chained: dict[int, dict[str, list[float]]] = {}
    truth: dict[int, dict[str, list[float]]] = {}
    current = [chain[0].original_image for chain in chains]
    for turn in range(longest):
        alive = [i for i, chain in enumerate(chains) if len(chain) > turn]
        pairs = [chains[i][turn] for i in alive]
        prompts = [pair.edit_prompt for pair in pairs]
        own_inputs = [current[i] for i in alive]
        own = edit_all(editor, own_inputs, prompts, config)
        for i, image in zip(alive, own, strict=True):
            current[i] = image
        reference_inputs = [pair.original_image for pair in pairs]
        reference = edit_all(editor, reference_inputs, prompts, config)
        # Directional similarity is measured from the turn's reference input in both modes,
        # so the two columns differ only by what the model was fed.
        chained[turn + 1] = score(scorers, reference_inputs, own, pairs)
        truth[turn + 1] = score(scorers, reference_inputs, reference, pairs)

    def summary(per_turn: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
        everything = {
            name: [v for turn in per_turn.values() for v in turn[name]] for name in METRICS
        }
        return {
            "all_turns": _means(everything),
            "final_turn": _means(per_turn[longest]),
            "per_turn": {str(turn): _means(values) for turn, values in per_turn.items()},
        }

    return {"chained": summary(chained), "ground_truth_inputs": summary(truth)}


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
    """A table: one row per model and mode, one column per metric (arrows say which way is good)."""
    header = [
        "model",
        "mode",
        *(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in METRICS),
        "n",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in report["variants"].items():
        rows = [("single turn", result["single_turn"])]
        if "multi_turn" in result:
            multi = result["multi_turn"]
            rows += [
                ("multi-turn, chained (all turns)", multi["chained"]["all_turns"]),
                ("multi-turn, chained (final turn)", multi["chained"]["final_turn"]),
                (
                    "multi-turn, ground-truth inputs (all turns)",
                    multi["ground_truth_inputs"]["all_turns"],
                ),
            ]
        for mode, values in rows:
            cells = [f"{values[m]:.4f}" for m in METRICS]
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {values['count']} |")
    params = report["config"]["params"]
    lines.append("")
    lines.append(
        f"Settings: {params['num_inference_steps']} steps, guidance {params['guidance_scale']}, "
        f"image guidance {params['image_guidance_scale']}, seed {params['seed']}, long side "
        f"{params['resolution']}; CLIP {report['config']['clip_model']}, "
        f"DINO {report['config']['dino_model']}."
    )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output_dir: Path) -> tuple[Path, Path]:
    """eval.json and eval.md in `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "eval.json"
    md_path = output_dir / "eval.md"
    json_path.write_text(json.dumps(report, indent=2), "utf-8")
    md_path.write_text(markdown(report), "utf-8")
    return json_path, md_path
