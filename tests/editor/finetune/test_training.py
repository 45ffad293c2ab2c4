"""LoRA training on a toy task the tiny model can learn, checkpoints, and serving the adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bot.app import make_editor
from bot.config import Settings
from editor.base import EditRequest
from editor.finetune.checkpoints import LORA_FILE, latest_checkpoint
from editor.finetune.data import EditPair, to_tensor
from editor.finetune.testing import TOY_COLOURS, toy_colour_pairs
from editor.finetune.train_config import TrainConfig, TrainingError
from editor.finetune.training import Trainer, conditioning_masks
from editor.params import EditParams
from editor.pix2pix import DiffusersEditor

COLOURS = ("blue", "red")
PARAMS = EditParams(num_inference_steps=10, guidance_scale=1.0, image_guidance_scale=1.0)


def _config(model: Path, out: Path, **changes: object) -> TrainConfig:
    base: dict[str, object] = {
        "model": str(model),
        "dataset": "toy",
        "output_dir": out,
        "resolution": 32,
        "train_batch_size": 8,
        "learning_rate": 1e-2,
        "lora_rank": 16,
        "checkpointing_steps": 0,
        "random_flip": False,
        "device": "cpu",
    }
    return TrainConfig(**(base | changes))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(toy_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trainer]:
    """A LoRA trained for 400 steps (about 15-25 s on one shared core) on "make it blue/red"."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("toy-lora")
        config = _config(toy_model_dir, out, max_train_steps=400, seed=0)
        trainer = Trainer(config, toy_colour_pairs(24, colours=COLOURS, seed=0), progress=False)
        trainer.train()
        trainer.unet.eval()
        yield trainer
    finally:
        torch.set_num_threads(before)


def _latents(pipe: object, pairs: Sequence[EditPair]) -> torch.Tensor:
    with torch.no_grad():
        images, _ = pipe(  # type: ignore[operator]
            prompt=[pair.edit_prompt for pair in pairs],
            image=[pair.original_image for pair in pairs],
            num_inference_steps=PARAMS.num_inference_steps,
            guidance_scale=PARAMS.guidance_scale,
            image_guidance_scale=PARAMS.image_guidance_scale,
            generator=[torch.Generator().manual_seed(i) for i in range(len(pairs))],
            output_type="latent",
            return_dict=False,
        )
    latents: torch.Tensor = images
    return latents


def _target_latents(trainer: Trainer, colours: Sequence[str]) -> torch.Tensor:
    """Latents of the target colours, in the scaled space the pipeline denoises in."""
    images = torch.stack(
        [to_tensor(Image.new("RGB", (32, 32), TOY_COLOURS[c]), 32) for c in colours]
    )
    with torch.no_grad():
        latents = trainer.vae.encode(images).latent_dist.mode()
    return latents * trainer.vae.config.scaling_factor


def test_the_adapter_learns_the_toy_edit(trained: Trainer, toy_model_dir: Path) -> None:
    """After training, edits land near their own target colour, and nearer it than the other.

    Measured in latent space: the tiny VAE's decoder is random and squeezes every latent into
    similar pixels, so pixel distances would mostly measure the decoder.
    """
    test = toy_colour_pairs(12, colours=COLOURS, seed=1000)  # unseen input colours
    wanted = [next(c for c in COLOURS if c in pair.edit_prompt) for pair in test]
    other = [next(c for c in COLOURS if c != w) for w in wanted]
    right, wrong = _target_latents(trained, wanted), _target_latents(trained, other)

    base = Trainer(_config(toy_model_dir, trained.config.output_dir / "base"), test, progress=False)
    before = _latents(base.pipeline(), test)
    after = _latents(trained.pipeline(), test)

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b) ** 2).mean())

    # The base model (a LoRA that starts as a no-op, gaussian A and zero B) is far off.
    assert mse(after, right) < 0.7 * mse(before, right)
    # What was learnt depends on the instruction: each edit is closer to its own colour.
    assert mse(after, right) < 0.9 * mse(after, wrong)
    losses = [
        json.loads(line)["loss"] for line in (trained.config.output_dir / "train_log.jsonl").open()
    ]
    assert len(losses) == 400
    assert np.mean(losses[-50:]) < 0.85 * np.mean(losses[:10])


def test_the_saved_adapter_round_trips_through_the_editor(
    trained: Trainer, toy_model_dir: Path
) -> None:
    out = trained.config.output_dir
    assert (out / LORA_FILE).is_file()
    pairs = toy_colour_pairs(4, colours=COLOURS, seed=7)
    requests = [EditRequest(pair.original_image, pair.edit_prompt, PARAMS) for pair in pairs]
    editor = DiffusersEditor(str(toy_model_dir), lora=str(out), device="cpu")
    served = editor.edit_batch(requests)

    # The same edits from the in-memory model that was trained.
    pipe = trained.pipeline()
    with torch.no_grad():
        expected, _ = pipe(
            prompt=[r.instruction for r in requests],
            image=[r.image for r in requests],
            num_inference_steps=PARAMS.num_inference_steps,
            guidance_scale=PARAMS.guidance_scale,
            image_guidance_scale=PARAMS.image_guidance_scale,
            generator=[torch.Generator().manual_seed(PARAMS.seed) for _ in requests],
            return_dict=False,
        )
    for got, want in zip(served, expected, strict=True):
        difference = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
        assert difference.max() <= 2  # fused weights round differently, nothing more

    base = DiffusersEditor(str(toy_model_dir), device="cpu").edit_batch(requests)
    assert any(
        np.asarray(a).tolist() != np.asarray(b).tolist() for a, b in zip(base, served, strict=True)
    )


def test_the_bot_serves_the_adapter(trained: Trainer, toy_model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        model=str(toy_model_dir),
        lora=str(trained.config.output_dir),
        device="cpu",
        data_dir=tmp_path,
    )
    editor = make_editor(settings)
    assert isinstance(editor, DiffusersEditor)
    editor.load()
    assert editor.describe()["lora"] == str(trained.config.output_dir)
    pair = toy_colour_pairs(1, colours=COLOURS, seed=3)[0]
    request = EditRequest(pair.original_image, pair.edit_prompt, PARAMS)
    direct = DiffusersEditor(str(toy_model_dir), lora=str(trained.config.output_dir), device="cpu")
    assert np.array_equal(
        np.asarray(editor.edit_batch([request])[0]), np.asarray(direct.edit_batch([request])[0])
    )


def test_resuming_ends_where_an_uninterrupted_run_ends(
    toy_model_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    pairs = toy_colour_pairs(8, colours=COLOURS, seed=5)
    common = {"train_batch_size": 2, "gradient_accumulation_steps": 2, "random_flip": True}
    straight = Trainer(
        _config(toy_model_dir, tmp_path / "straight", max_train_steps=4, **common),
        pairs,
        progress=False,
    )
    straight.train()

    interrupted = tmp_path / "interrupted"
    first = Trainer(
        _config(
            toy_model_dir,
            interrupted,
            max_train_steps=2,
            checkpointing_steps=2,
            validation_steps=2,
            num_validation_images=2,
            validation_inference_steps=2,
            **common,
        ),
        pairs,
        progress=False,
    )
    first.train()
    assert latest_checkpoint(interrupted) == interrupted / "checkpoints" / "step-000002"
    second = Trainer(
        _config(toy_model_dir, interrupted, max_train_steps=4, checkpointing_steps=2, **common),
        pairs,
        progress=False,
    )
    result = second.train()
    assert (result.resumed_from, result.step) == (2, 4)
    for name, value in straight.trainable_state().items():
        torch.testing.assert_close(second.trainable_state()[name], value)
    # Validation edits were saved and scored at step 2.
    assert sorted(p.name for p in (interrupted / "validation" / "step-000002").iterdir()) == [
        "00.png",
        "01.png",
    ]
    # A checkpoint of another LoRA size is refused plainly, not loaded half-way.
    other = _config(toy_model_dir, interrupted, max_train_steps=6, lora_rank=4, **common)
    with pytest.raises(TrainingError, match="does not match this run"):
        Trainer(other, pairs, progress=False).train()
    logged = [json.loads(line) for line in (interrupted / "train_log.jsonl").open()]
    assert [entry["step"] for entry in logged if "validation_l1" in entry] == [2]
    assert [entry["step"] for entry in logged if "loss" in entry] == [1, 2, 3, 4]


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    toy_model_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    pairs = toy_colour_pairs(4, colours=COLOURS)
    trainer = Trainer(_config(toy_model_dir, tmp_path, train_batch_size=4), pairs, progress=False)
    original, edited, prompts = trainer._collate([0, 1, 2, 3], [False] * 4)
    state = trainer.generator.get_state()

    def loss_and_grads() -> tuple[float, list[torch.Tensor]]:
        trainer.generator.set_state(state)
        trainer.unet.zero_grad()
        loss = trainer.compute_loss(original, edited, prompts)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.unet.parameters() if p.grad is not None]
        return float(loss.detach()), grads

    plain_loss, plain_grads = loss_and_grads()
    trainer.unet.enable_gradient_checkpointing()
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    assert checkpointed_loss == pytest.approx(plain_loss, rel=1e-5)
    assert len(plain_grads) == len(checkpointed_grads) > 0
    for a, b in zip(plain_grads, checkpointed_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_mixed_precision_trains_on_the_cpu(
    toy_model_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    pairs = toy_colour_pairs(4, colours=COLOURS)
    config = _config(
        toy_model_dir, tmp_path, max_train_steps=2, train_batch_size=2, mixed_precision="bf16"
    )
    result = Trainer(config, pairs, progress=False).train()
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    with pytest.raises(TrainingError, match="fp16 mixed precision needs a CUDA GPU"):
        Trainer(_config(toy_model_dir, tmp_path, mixed_precision="fp16"), pairs, progress=False)


def test_a_full_fine_tune_saves_a_servable_pipeline(
    toy_model_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    pairs = toy_colour_pairs(4, colours=COLOURS)
    out = tmp_path / "full"
    config = _config(toy_model_dir, out, max_train_steps=1, train_batch_size=2, full_finetune=True)
    trainer = Trainer(config, pairs, progress=False)
    before = {k: v.clone() for k, v in trainer.unet.state_dict().items()}
    trainer.train()
    changed = [k for k, v in trainer.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)  # not just a few layers: every UNet weight trains
    request = EditRequest(pairs[0].original_image, pairs[0].edit_prompt, PARAMS)
    assert DiffusersEditor(str(out), device="cpu").edit_batch([request])[0].size == (32, 32)


def test_conditioning_dropout_drops_text_image_and_both_about_five_percent_each() -> None:
    draw = torch.linspace(0, 1, 10_001)[:-1]
    drop_text, drop_image = conditioning_masks(draw, 0.05)
    share = {
        "text only": float((drop_text & ~drop_image).float().mean()),
        "image only": float((drop_image & ~drop_text).float().mean()),
        "both": float((drop_text & drop_image).float().mean()),
        "neither": float((~drop_text & ~drop_image).float().mean()),
    }
    assert share == pytest.approx(
        {"text only": 0.05, "image only": 0.05, "both": 0.05, "neither": 0.85}, abs=1e-3
    )


def test_bad_options_are_refused(toy_model_dir: Path, tiny_sd_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="multiple of 8"):
        _config(toy_model_dir, tmp_path, resolution=30)
    with pytest.raises(TrainingError, match="mixed_precision"):
        _config(toy_model_dir, tmp_path, mixed_precision="fp8")
    with pytest.raises(TrainingError, match="4-channel UNet"):
        Trainer(_config(tiny_sd_dir, tmp_path), toy_colour_pairs(2), progress=False)
