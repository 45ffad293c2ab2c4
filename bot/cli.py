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
i18n_app = typer.Typer(help="The message catalogues (Babel .po files in bot/locale/).")
app.add_typer(i18n_app, name="i18n")
recipe_app = typer.Typer(help="Recipes: a saved chain of edits on a catalogue of photos.")
app.add_typer(recipe_app, name="recipe")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError lists every bad variable
        typer.secho(f"Invalid configuration:\n{error}", fg="red", err=True)
        raise typer.Exit(2) from error


def _configure_logging(verbose: bool, log_format: str = "text") -> None:
    from bot.commands.logs import configure_logging

    configure_logging(verbose, log_format)


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
    _configure_logging(verbose, settings.log_format)
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
    model: Annotated[
        str | None,
        typer.Option(help="Serve only this PIX2CHAT_MODELS name's queue (default: every model)."),
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
    if model is not None:
        updates["worker_model"] = model
    settings = settings.model_copy(update=updates)
    _configure_logging(verbose, settings.log_format)
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


@bench_app.command("access")
def bench_access(
    rules: Annotated[int, typer.Option(help="Allow-list rules in the database.")] = 100_000,
    edits: Annotated[int, typer.Option(help="Finished edits today, for /stats.")] = 50_000,
    runs: Annotated[int, typer.Option(help="Access checks timed per case.")] = 2_000,
) -> None:
    """Running a public bot: the access gate per update, /stats on a busy day, a /metrics scrape."""
    from bot.commands.bench_access import access_benchmark_command

    access_benchmark_command(rules, edits, runs, echo=typer.echo)


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


@bench_app.command("variations")
def bench_variations(
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 10,
    size: Annotated[int, typer.Option(help="Working resolution (long side).")] = 256,
    model: Annotated[
        str | None, typer.Option(help="Model id or folder (default: tiny random).")
    ] = None,
    edits: Annotated[int, typer.Option(help="User B's edits in the fairness runs.")] = 20,
    batch_ms: Annotated[int, typer.Option(help="Simulated time per batch (fairness).")] = 100,
    telegram_runs: Annotated[int, typer.Option(help="Sets timed through the Telegram fake.")] = 3,
) -> None:
    """A set of four variations: its cost against regenerations, its delivery, its fairness."""
    from bot.commands.bench_variations import run_variations_benchmark

    run_variations_benchmark(steps, size, model, edits, batch_ms, telegram_runs, echo=typer.echo)


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
    segmenter_runs: Annotated[
        int, typer.Option(help="Tiny CLIPSeg calls timed for masks/s (0 skips the segmenter).")
    ] = 20,
    real_segmenter_runs: Annotated[
        int, typer.Option(help="CPU runs of the real CLIPSeg architecture (0: size only).")
    ] = 3,
) -> None:
    """Develop step: drift over an edit chain (on vs off), time and memory at 1-24 MP, and the
    region segmenter (masks/s, the real CLIPSeg's size)."""
    from bot.commands.bench_develop import run_develop_benchmark

    sizes = list(_positive_ints(megapixels))
    run_develop_benchmark((width, height), turns, working, sizes, runs, echo=typer.echo)
    if segmenter_runs > 0:
        from bot.commands.bench_segment import run_segmenter_benchmark

        run_segmenter_benchmark(
            segmenter_runs, real_segmenter_runs, echo=typer.echo, confine_sizes=sizes
        )


# Fine-tuning pipeline (issue 7): `dataset captions|images`, `train`, `eval` (docs/FINETUNING.md).
from bot.commands.finetune import register as _register_finetune  # noqa: E402

_register_finetune(app)


@bench_app.command("finishing")
def bench_finishing(
    upscale_sides: Annotated[
        str, typer.Option(help="Comma-separated input sides (px) the tiny upscaler is timed at.")
    ] = "128,256",
    runs: Annotated[int, typer.Option(help="Timed runs per figure (p50).")] = 3,
    photos: Annotated[int, typer.Option(help="Photos for the JPEG-85 watermark rate.")] = 50,
    photo_side: Annotated[int, typer.Option(help="Long side of those photos.")] = 1024,
    device: Annotated[
        str, typer.Option(help="cuda: also time the real ESRGAN on the GPU.")
    ] = "cpu",
) -> None:
    """Finishing tools: upscale s/MP and memory, cut-out s/image, provenance s, watermark rate."""
    from bot.commands.bench_finishing import run_finishing_benchmark

    run_finishing_benchmark(
        typer.echo,
        upscale_sides=list(_positive_ints(upscale_sides)),
        runs=runs,
        photos=photos,
        photo_side=photo_side,
        device=device,
    )


@app.command()
def verify(
    image: Annotated[Path, typer.Argument(help="an image file, e.g. a Full resolution download")],
) -> None:
    """Read back the provenance of a file: its C2PA manifest and the invisible watermark."""
    from bot.commands.verify import verify_command

    raise typer.Exit(verify_command(image, typer.echo))


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
    family: Annotated[
        str | None,
        typer.Option(
            help="A model family (instruct-pix2pix, sdxl-instruct-pix2pix, flux-kontext): "
            "parameters, FLOPs per step and memory per option of its full-size architecture, "
            "and its tiny pipeline's seconds per edit. Other options are ignored."
        ),
    ] = None,
) -> None:
    """Seconds per edit, edits/s, UNet step, VAE, memory and TFLOP/s of the real architecture."""
    if family is not None:
        from bot.commands.bench_family import bench_family_command
        from editor.errors import ModelLoadError

        try:
            bench_family_command(family, runs)
        except ModelLoadError as error:
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(2) from None
        return
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


@i18n_app.command("update")
def i18n_update(
    add: Annotated[
        list[str] | None, typer.Option(help="Start a catalogue for a new language code.")
    ] = None,
) -> None:
    """Refresh bot/locale/ from the English texts: .pot, every .po; then list what to translate."""
    from bot.commands.i18n import check, update

    for path in update(tuple(add or ())):
        typer.echo(f"updated {path}")
    problems = check()
    for problem in problems:
        typer.echo(f"to translate: {problem}")
    typer.echo(
        f"{len(problems)} text(s) to translate" if problems else "every catalogue is complete"
    )


@i18n_app.command("check")
def i18n_check() -> None:
    """Fail (exit 1) if any catalogue misses a text or has placeholders unlike the English."""
    from bot.commands.i18n import check

    problems = check()
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("every catalogue is complete")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
