"""The `pix2chat dataset captions|images`, `pix2chat train` and `pix2chat eval` commands.

Thin typer wrappers: each parses its options into the job's config object and calls the job's
module, imported inside the command so `pix2chat --help` stays fast. Problems a user can fix
(a missing file, a model that does not load, a bad option) end as one red line and exit code,
never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

dataset_app = typer.Typer(
    help="Build a product edit dataset: caption triples, then paired images.",
    no_args_is_help=True,
)

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(function: F) -> F:
    """Turn the errors a user can act on into a message and an exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except typer.Exit:
            raise
        except FileNotFoundError as error:
            typer.secho(f"No such file or folder: {error.filename or error}", fg="red", err=True)
            raise typer.Exit(2) from error
        except ValueError as error:
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(2) from error
        except Exception as error:
            # Imported only now: `dataset captions` must not pay for torch.
            from editor.errors import ModelLoadError
            from editor.finetune.train_config import TrainingError

            if isinstance(error, ModelLoadError | TrainingError):
                typer.secho(str(error), fg="red", err=True)
                raise typer.Exit(1 if isinstance(error, ModelLoadError) else 2) from error
            raise

    return wrapper  # type: ignore[return-value]


def _default(value: str | None, setting: str) -> str:
    """An option left out takes the bot's own setting (PIX2CHAT_MODEL, PIX2CHAT_DEVICE...)."""
    if value is not None:
        return value
    from bot.config import Settings

    return str(getattr(Settings(), setting))


@dataset_app.command("captions")
@_friendly
def captions(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")] = Path(
        "captions.jsonl"
    ),
    seed: Annotated[int, typer.Option(help="Same seed, same rows.")] = 0,
    categories: Annotated[
        int | None, typer.Option(help="How many product categories (default: all).", min=1)
    ] = None,
    products_per_category: Annotated[int, typer.Option(min=1)] = 2,
    variants_per_product: Annotated[
        int, typer.Option(min=1, help="Colour/material/setting draws per product.")
    ] = 2,
    values_per_family: Annotated[
        int, typer.Option(min=1, help="Targets per edit family and variant.")
    ] = 1,
    phrasings: Annotated[int, typer.Option(min=1, help="Wordings per edit.")] = 3,
    family: Annotated[
        list[str] | None, typer.Option(help="Only these edit families (repeatable).")
    ] = None,
    turns: Annotated[
        int,
        typer.Option(
            min=1, help="Turns per conversation: above 1, write multi-turn sessions instead."
        ),
    ] = 1,
    list_families: Annotated[
        bool, typer.Option("--list-families", help="Print the edit families and exit.")
    ] = False,
) -> None:
    """Synthesize (input caption, instruction, output caption) triples for product photos."""
    from editor.finetune.captions import (
        SynthesisConfig,
        synthesize,
        synthesize_sessions,
        write_jsonl,
    )
    from editor.finetune.catalogue import FAMILIES

    if list_families:
        for edit_family in FAMILIES:
            typer.echo(f"{edit_family.name:<22} sets {edit_family.slot}")
        return
    config = SynthesisConfig(
        seed=seed,
        categories=categories,
        products_per_category=products_per_category,
        variants_per_product=variants_per_product,
        families=tuple(family) if family else None,
        values_per_family=values_per_family,
        phrasings_per_edit=phrasings,
    )
    rows = synthesize(config) if turns == 1 else synthesize_sessions(config, turns)
    count = write_jsonl(rows, output)
    families = len({row.family for row in rows})
    sessions = f" in {len({row.session for row in rows})} sessions" if turns > 1 else ""
    typer.echo(f"Wrote {count} triples{sessions} ({families} edit families) to {output}")


@dataset_app.command("images")
@_friendly
def images(
    captions_file: Annotated[Path, typer.Argument(help="JSONL from `dataset captions`.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Dataset folder.")] = Path(
        "pairs"
    ),
    model: Annotated[str | None, typer.Option(help="Stable Diffusion text-to-image model.")] = None,
    clip_model: Annotated[str | None, typer.Option(help="CLIP model for the filter.")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples per triple.")] = 4,
    keep: Annotated[int, typer.Option(min=1, help="Best passing samples kept per triple.")] = 1,
    steps: Annotated[int, typer.Option(min=1)] = 50,
    guidance: Annotated[float, typer.Option(min=1.0)] = 7.5,
    resolution: Annotated[int, typer.Option(min=8)] = 512,
    min_clip: Annotated[float, typer.Option(help="Image-caption similarity to pass.")] = 0.2,
    min_image_similarity: Annotated[
        float, typer.Option(help="Input-edited image similarity to pass.")
    ] = 0.75,
    min_directional: Annotated[float, typer.Option(help="Directional similarity to pass.")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many triples.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps or cpu.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate paired images with Prompt-to-Prompt and keep those CLIP accepts (resumable)."""
    from editor.finetune.captions import read_jsonl
    from editor.finetune.metrics import DEFAULT_CLIP, ClipScorer
    from editor.finetune.pairs import (
        DEFAULT_TEXT_TO_IMAGE,
        PairConfig,
        PairGenerator,
        Thresholds,
        load_text_to_image,
    )
    from editor.loading import select_device

    triples = read_jsonl(captions_file)
    resolved = select_device(_default(device, "device"))
    config = PairConfig(
        model=model or DEFAULT_TEXT_TO_IMAGE,
        clip_model=clip_model or DEFAULT_CLIP,
        samples_per_triple=samples,
        keep_per_triple=keep,
        num_inference_steps=steps,
        guidance_scale=guidance,
        resolution=resolution,
        thresholds=Thresholds(min_clip, min_image_similarity, min_directional),
        seed=seed,
        limit=limit,
        device=resolved,
    )
    pipe = load_text_to_image(config.model, resolved)
    clip = ClipScorer(config.clip_model, device=resolved)
    report = PairGenerator(config, pipe, clip).run(triples, output_dir, progress=progress)
    typer.echo(
        f"{report.triples_done} triples done ({report.triples_skipped} already done earlier): "
        f"{report.kept} pairs kept from {report.samples} generated samples, in {output_dir}"
    )


@_friendly
def train(
    dataset: Annotated[
        str, typer.Argument(help="Pair folder from `dataset images`, or a hub dataset id.")
    ],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")] = Path("pix2chat-lora"),
    model: Annotated[
        str | None, typer.Option(help="InstructPix2Pix model (default: PIX2CHAT_MODEL).")
    ] = None,
    resolution: Annotated[int, typer.Option(min=8)] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    gradient_accumulation_steps: Annotated[int, typer.Option(min=1)] = 1,
    max_train_steps: Annotated[int, typer.Option(min=1)] = 1000,
    learning_rate: Annotated[float, typer.Option()] = 1e-4,
    lr_warmup_steps: Annotated[int, typer.Option(min=0)] = 0,
    lora_rank: Annotated[int, typer.Option(min=1)] = 16,
    full_finetune: Annotated[
        bool, typer.Option(help="Train every UNet weight (large GPUs only).")
    ] = False,
    mixed_precision: Annotated[str, typer.Option(help="no, fp16 (CUDA) or bf16.")] = "no",
    gradient_checkpointing: Annotated[bool, typer.Option()] = False,
    checkpointing_steps: Annotated[int, typer.Option(min=0)] = 500,
    validation_steps: Annotated[int, typer.Option(min=0)] = 0,
    conditioning_dropout_prob: Annotated[float, typer.Option()] = 0.05,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps or cpu.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fine-tune the InstructPix2Pix UNet (LoRA by default) on edit pairs."""
    from editor.finetune.checkpoints import LORA_FILE
    from editor.finetune.train_config import TrainConfig
    from editor.finetune.training import Trainer

    config = TrainConfig(
        model=_default(model, "model"),
        dataset=dataset,
        output_dir=output_dir,
        resolution=resolution,
        train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        max_train_steps=max_train_steps,
        learning_rate=learning_rate,
        lr_warmup_steps=lr_warmup_steps,
        full_finetune=full_finetune,
        lora_rank=lora_rank,
        conditioning_dropout_prob=conditioning_dropout_prob,
        mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing,
        checkpointing_steps=checkpointing_steps,
        validation_steps=validation_steps,
        seed=seed,
        device=_default(device, "device"),
    )
    result = Trainer(config, progress=progress).train(resume=resume)
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    typer.echo(f"Trained to step {result.step}{resumed}.")
    if full_finetune:
        typer.echo(f"Serve it with PIX2CHAT_MODEL={output_dir}")
    else:
        typer.echo(f"Adapter: {output_dir / LORA_FILE}\nServe it with PIX2CHAT_LORA={output_dir}")


@_friendly
def evaluate(
    dataset: Annotated[str, typer.Argument(help="Pair folder or hub dataset to measure on.")],
    lora: Annotated[
        list[str] | None,
        typer.Option(
            help="Adapter folder or hub id to compare, NAME=PATH to label it (repeatable)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Base model (default: PIX2CHAT_MODEL).")] = None,
    base: Annotated[bool, typer.Option(help="Include the base model.")] = True,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")] = Path("pix2chat-eval"),
    clip_model: Annotated[str | None, typer.Option()] = None,
    dino_model: Annotated[str | None, typer.Option()] = None,
    steps: Annotated[int, typer.Option(min=1)] = 20,
    guidance: Annotated[float, typer.Option(min=1.0)] = 7.5,
    image_guidance: Annotated[float, typer.Option(min=1.0)] = 1.5,
    seed: Annotated[int, typer.Option()] = 0,
    resolution: Annotated[int, typer.Option(min=8, help="Long side of the inputs.")] = 512,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps or cpu.")] = None,
    develop: Annotated[
        bool,
        typer.Option(
            help="Also score the developed output (at the source's own size), beside the raw."
        ),
    ] = True,
) -> None:
    """Measure the base model and adapters: L1, CLIP-I, DINO, CLIP-T, directional similarity.

    Each for the raw model output and the output developed onto the source, side by side."""
    from editor.base import Editor
    from editor.finetune.data import open_pairs
    from editor.finetune.evaluation import EvalConfig, Scorers, compare, markdown, write_report
    from editor.finetune.metrics import DEFAULT_CLIP, DEFAULT_DINO
    from editor.loading import select_device
    from editor.params import EditParams
    from editor.pix2pix import DiffusersEditor

    base_model = _default(model, "model")
    resolved = select_device(_default(device, "device"))
    variants: dict[str, Callable[[], Editor]] = {}
    if base:
        variants["base"] = lambda: DiffusersEditor(base_model, device=resolved)
    for entry in lora or []:
        name, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
        label = name or Path(path).name or path
        variants[label] = functools.partial(DiffusersEditor, base_model, lora=path, device=resolved)
    if not variants:
        raise ValueError("Nothing to evaluate: give --lora or leave --base on.")
    config = EvalConfig(
        clip_model=clip_model or DEFAULT_CLIP,
        dino_model=dino_model or DEFAULT_DINO,
        params=EditParams(
            num_inference_steps=steps,
            guidance_scale=guidance,
            image_guidance_scale=image_guidance,
            seed=seed,
            resolution=resolution,
        ),
        batch_size=batch_size,
        limit=limit,
        develop=develop,
    )
    pairs = open_pairs(dataset)
    report = compare(variants, pairs, Scorers.load(config, device=resolved), config)
    json_path, md_path = write_report(report, output_dir)
    typer.echo(markdown(report))
    typer.echo(f"Wrote {json_path} and {md_path}")


def register(app: typer.Typer) -> None:
    """Add the fine-tuning commands to the `pix2chat` app."""
    app.add_typer(dataset_app, name="dataset")
    app.command("train")(train)
    app.command("eval")(evaluate)
