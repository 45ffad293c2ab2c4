"""The `pix2chat` command: run, web, migrate, doctor, edit, bench."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from bot.config import Settings
from editor.images import MIN_FITTED_SIDE
from editor.params import GUIDANCE_RANGE, IMAGE_GUIDANCE_RANGE, MAX_SEED, STEPS_RANGE

app = typer.Typer(
    help="pix2chat: edit photos by chatting with an InstructPix2Pix model.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks that print figures (see docs/BENCHMARKS.md).")
app.add_typer(bench_app, name="bench")
recipe_app = typer.Typer(help="Recipes: a saved chain of edits on a catalogue of photos.")
app.add_typer(recipe_app, name="recipe")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError lists every bad variable
        typer.secho(f"Invalid configuration:\n{error}", fg="red", err=True)
        raise typer.Exit(2) from error


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Start every frontend whose token is set (the web chat if none is), plus the GPU worker."""
    _start(_settings(), verbose)


@app.command()
def web(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Start the local web chat, plus every frontend whose token is set and the GPU worker."""
    _start(_settings().model_copy(update={"web_enabled": True}), verbose)


def _start(settings: Settings, verbose: bool) -> None:
    from bot.commands.run import missing_frontends, run_frontends

    status = missing_frontends(settings)
    if status:
        raise typer.Exit(status)
    _configure_logging(verbose)
    status = run_frontends(settings)
    if status:
        raise typer.Exit(status)


@app.command()
def worker(
    gpu: Annotated[
        str | None, typer.Option(help="GPU index to use (default: PIX2CHAT_WORKER_GPU).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once = largest batch.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    null_editor: Annotated[bool, typer.Option(hidden=True)] = False,
    step_delay_ms: Annotated[int, typer.Option(hidden=True, min=0)] = 0,
) -> None:
    """Run edit jobs from the shared PostgreSQL queue on one GPU (scaled-out mode)."""
    settings = _settings()
    updates: dict[str, object] = {}
    if gpu is not None:
        updates["worker_gpu"] = gpu
    if concurrency is not None:
        updates["worker_concurrency"] = concurrency
    settings = settings.model_copy(update=updates)
    _configure_logging(verbose)
    from bot.commands.worker import run_worker

    raise typer.Exit(run_worker(settings, null_editor=null_editor, step_delay_ms=step_delay_ms))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on start)."""
    from bot.commands.migrate import migrate as run_migrate

    status = run_migrate(_settings(), typer.echo)
    if status:
        raise typer.Exit(status)


@app.command()
def doctor(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run just these checks (e.g. database, queue)."),
    ] = None,
) -> None:
    """Check the device, model, database and data folder, and say what is wrong."""
    from bot.commands.doctor import run_doctor

    status = run_doctor(_settings(), only)
    if status:
        raise typer.Exit(status)


@app.command()
def edit(
    image: Annotated[Path, typer.Argument(help="Photo to edit (JPEG, PNG, WebP, HEIC...).")],
    instruction: Annotated[str, typer.Argument(help='What to change, e.g. "make it night".')],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Result file (PNG).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Denoising steps.", min=STEPS_RANGE[0], max=STEPS_RANGE[1])
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(help="Text guidance scale.", min=GUIDANCE_RANGE[0], max=GUIDANCE_RANGE[1]),
    ] = None,
    image_guidance: Annotated[
        float | None,
        typer.Option(
            help="Image guidance scale.", min=IMAGE_GUIDANCE_RANGE[0], max=IMAGE_GUIDANCE_RANGE[1]
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed (random if omitted).", min=0, max=MAX_SEED)
    ] = None,
    resolution: Annotated[
        int | None, typer.Option(help="Long side in pixels.", min=MIN_FITTED_SIDE)
    ] = None,
) -> None:
    """Edit one photo with the real pipeline, no chat needed."""
    from bot.commands.oneshot import OneShotRequest, edit_command

    settings = _settings()
    request = OneShotRequest(
        image=image,
        instruction=instruction,
        output=output or image.with_name(f"{image.stem}-edited.png"),
        steps=steps,
        guidance=guidance,
        image_guidance=image_guidance,
        seed=seed,
        resolution=resolution,
    )
    status = edit_command(settings, request)
    if status:
        raise typer.Exit(status)


@recipe_app.command("apply")
def recipe_apply(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (JSON, from /recipe export).")],
    photos: Annotated[list[Path], typer.Argument(help="Photos and folders of photos.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for results.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    null_editor: Annotated[bool, typer.Option(hidden=True)] = False,
    step_delay_ms: Annotated[int, typer.Option(hidden=True, min=0)] = 0,
) -> None:
    """Apply a recipe to every photo: full-resolution PNGs plus report.csv; reruns resume."""
    from bot.commands.recipe import apply_command

    if verbose:
        _configure_logging(verbose)
    else:  # the progress bar, and only what went wrong
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    status = apply_command(
        _settings(), recipe, photos, output, null_editor=null_editor, step_delay_ms=step_delay_ms
    )
    if status:
        raise typer.Exit(status)


@bench_app.command("recipe")
def bench_recipe(
    photos: Annotated[int, typer.Option(min=1, help="Photos in the catalogue.")] = 50,
    steps: Annotated[int, typer.Option(min=1, max=20, help="Recipe steps.")] = 3,
    editors: Annotated[str, typer.Option(help="null and/or tiny, comma list.")] = "null,tiny",
    samples: Annotated[int, typer.Option(min=1, help="Idle single edits timed.")] = 20,
    size: Annotated[int, typer.Option(min=64, help="Side of each photo.")] = 512,
    denoising_steps: Annotated[int, typer.Option(min=1, help="Denoising steps per edit.")] = 4,
    step_delay_ms: Annotated[
        int, typer.Option(min=0, help="Null editor: time per denoising step.")
    ] = 0,
) -> None:
    """A recipe on a catalogue (photos/s), and another user's single-edit wait meanwhile."""
    from bot.commands.bench_recipe import run_recipe_benchmark

    chosen = [name.strip() for name in editors.split(",") if name.strip()]
    if not chosen or any(name not in ("null", "tiny") for name in chosen):
        typer.secho("--editors takes null and/or tiny", fg="red", err=True)
        raise typer.Exit(2)
    run_recipe_benchmark(
        photos, steps, chosen, samples, size, denoising_steps, step_delay_ms, echo=typer.echo
    )


@bench_app.command("service")
def bench_service(
    conversations: Annotated[
        int, typer.Option(help="Conversations in the history table.")
    ] = 10_000,
    versions: Annotated[int, typer.Option(help="Versions per conversation.")] = 100,
    edits: Annotated[int, typer.Option(help="Edits timed end to end.")] = 500,
    jobs: Annotated[int, typer.Option(help="Jobs for the dispatch rate.")] = 20_000,
) -> None:
    """Service overhead, scheduler dispatch and history latency with a null editor."""
    from bot.commands.bench_service import service_benchmark_command

    service_benchmark_command(conversations, versions, edits, jobs, echo=typer.echo)


@bench_app.command("batch")
def bench_batch(
    size: Annotated[int, typer.Option(help="Long side of the test image.")] = 256,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 10,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Model id or folder (default: tiny random).")
    ] = None,
) -> None:
    """Throughput of one batched pipeline call against the same edits one by one."""
    from bot.commands.bench_service import run_batch_benchmark

    run_batch_benchmark(size, steps, batch, model, echo=typer.echo)


@bench_app.command("finetune")
def bench_finetune(
    toy_steps: Annotated[int, typer.Option(help="Toy LoRA training steps to time.")] = 100,
) -> None:
    """Fine-tuning pipeline: parameter and memory counts, tiny-model stage timings."""
    from bot.commands.bench_finetune import run_finetune_benchmark

    run_finetune_benchmark(typer.echo, toy_steps=toy_steps)


@bench_app.command("develop")
def bench_develop(
    width: Annotated[int, typer.Option(help="Width of the drift chain's photo.")] = 3000,
    height: Annotated[int, typer.Option(help="Height of the drift chain's photo.")] = 2000,
    turns: Annotated[int, typer.Option(help="Edits in the drift chain.")] = 10,
    working: Annotated[int, typer.Option(help="Working resolution (long side).")] = 768,
    megapixels: Annotated[
        str, typer.Option(help="Comma-separated sizes to time (of 1, 6, 12, 24).")
    ] = "1,6,12,24",
    runs: Annotated[int, typer.Option(help="Timed runs per size and mode (p50).")] = 5,
) -> None:
    """Develop step: drift over an edit chain (on vs off), time and memory at 1-24 MP."""
    from bot.commands.bench_develop import run_develop_benchmark

    sizes = list(_positive_ints(megapixels))
    run_develop_benchmark((width, height), turns, working, sizes, runs, echo=typer.echo)


# Fine-tuning pipeline (issue 7): `dataset captions|images`, `train`, `eval` (docs/FINETUNING.md).
from bot.commands.finetune import register as _register_finetune  # noqa: E402

_register_finetune(app)


@bench_app.command("queue")
def bench_queue(
    workers: Annotated[str, typer.Option(help="Worker process counts to measure.")] = "1,2,4",
    jobs: Annotated[int, typer.Option(help="Jobs per throughput run.")] = 2000,
    concurrency: Annotated[int, typer.Option(help="Jobs at once per worker.")] = 8,
    samples: Annotated[int, typer.Option(help="Edits for the idle latency.")] = 200,
    stalled_timeout: Annotated[float, typer.Option(help="Seconds until a worker is dead.")] = 5.0,
    admin_url: Annotated[
        str, typer.Option(help="PostgreSQL to create a scratch database on.")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    analyze: Annotated[
        bool, typer.Option(help="ANALYZE the queue after enqueueing the backlog.")
    ] = True,
) -> None:
    """The procrastinate queue with the null editor: jobs/s, idle latency, SIGKILL recovery."""
    from bot.commands.bench_queue import run_queue_benchmark

    counts = list(_positive_ints(workers))
    asyncio.run(
        run_queue_benchmark(
            admin_url,
            counts,
            jobs,
            concurrency,
            samples,
            stalled_timeout,
            echo=typer.echo,
            analyze=analyze,
        )
    )


@bench_app.command("model")
def bench_model(
    model: Annotated[
        str,
        typer.Option(
            help="sd15-random (full-size InstructPix2Pix, random weights), tiny-random, "
            "or a model folder / hub id."
        ),
    ] = "sd15-random",
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (fp16 on CUDA), float16, bfloat16 or float32.")
    ] = "auto",
    resolutions: Annotated[str, typer.Option(help="Square image sides, comma list.")] = "512,768",
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes, comma list.")] = "1,2,4,8",
    steps: Annotated[int, typer.Option(help="Denoising steps.", min=1)] = 20,
    runs: Annotated[int, typer.Option(help="Timed runs per configuration (median).", min=1)] = 3,
    options: Annotated[
        list[str] | None,
        typer.Option(
            "--options",
            help="Speed options to measure, words joined by '+' (default, classic, "
            "channels_last, fuse_qkv, compile, compile_vae, max_autotune, cuda_graphs, "
            "preview); repeat to compare sets.",
        ),
    ] = None,
    preview_model: Annotated[
        str | None, typer.Option(help="TAESD weights for 'preview' (default: random).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
    ] = None,
) -> None:
    """Seconds per edit, edits/s, UNet step, VAE, memory and TFLOP/s of the real architecture."""
    from bot.commands.bench_model import bench_model_command, parse_config

    try:
        config = parse_config(
            model=model,
            device=device,
            dtype=dtype,
            resolutions=resolutions,
            batch_sizes=batch_sizes,
            steps=steps,
            runs=runs,
            option_sets=tuple(options or ["default"]),
            preview_model=preview_model,
        )
    except ValueError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from error
    status = bench_model_command(config, json_out, echo=typer.echo)
    if status:
        raise typer.Exit(status)


def _positive_ints(text: str) -> tuple[int, ...]:
    """A comma list option; bad input ends the command with one line and status 2."""
    from bot.commands.options import positive_ints

    try:
        return positive_ints(text)
    except ValueError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from error


def main() -> None:
    app()


if __name__ == "__main__":
    main()
