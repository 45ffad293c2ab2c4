"""`pix2chat train`: LoRA (or full) fine-tuning of the InstructPix2Pix UNet.

The objective is InstructPix2Pix's: the UNet sees the noisy latents of the edited image
concatenated with the (unscaled, as the pipeline passes them) latents of the input image, is
conditioned on the instruction, and predicts the noise. For classifier-free guidance on both
conditions, about 5% of samples each lose the text, the image, or both.

Everything random (data order, flips, VAE sampling, noise, timesteps, dropout) comes from
generators whose state is checkpointed, so a run that is stopped and resumed ends with the same
weights as one that was not. This module holds the objective and the loop; the options live in
train_config, the model set-up in preparation, the checkpoint files in checkpoints and the
validation edits in validation.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)

from editor.finetune.checkpoints import (
    latest_checkpoint,
    read_checkpoint,
    save_lora,
    write_checkpoint,
)
from editor.finetune.data import EditPair, open_pairs, to_tensor
from editor.finetune.preparation import autocast, inference_pipeline, load_models, make_optimizer
from editor.finetune.train_config import MIXED_PRECISION, TrainConfig, TrainingError, TrainResult
from editor.finetune.validation import validation_edits
from editor.loading import select_device

log = logging.getLogger(__name__)


class Trainer:
    """Loads the model once, then trains, checkpoints, validates and saves.

    Args:
        config: the run.
        pairs: the training pairs; by default opened from `config.dataset`.
        progress: show a progress bar on stderr.
    """

    def __init__(
        self, config: TrainConfig, pairs: Sequence[EditPair] | None = None, *, progress: bool = True
    ) -> None:
        self.config = config
        self.progress = progress
        self.device = torch.device(select_device(config.device))
        self.amp_dtype = MIXED_PRECISION[config.mixed_precision]
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise TrainingError("fp16 mixed precision needs a CUDA GPU; use bf16 or no.")
        self.pairs = pairs if pairs is not None else open_pairs(config.dataset)
        if len(self.pairs) == 0:
            raise TrainingError(f"The dataset {config.dataset!r} has no pairs.")
        self.models = load_models(config, self.device, self.amp_dtype)
        self.optimizer, self.lr_scheduler = make_optimizer(self.unet, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # CPU generators: the same seed gives the same run on any device.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.null_text = self._encode_prompts([""])

    @property
    def unet(self) -> Any:
        """The UNet being trained (with its LoRA unless a full fine-tune)."""
        return self.models.unet

    @property
    def vae(self) -> Any:
        """The frozen VAE the objective encodes images with."""
        return self.models.vae

    # -- the objective -------------------------------------------------------------------

    def _encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.models.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.models.tokenizer.model_max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden: torch.Tensor = self.models.text_encoder(tokens.input_ids.to(self.device))[0]
        return hidden

    def compute_loss(
        self, original: torch.Tensor, edited: torch.Tensor, prompts: Sequence[str]
    ) -> torch.Tensor:
        """The InstructPix2Pix denoising loss of one micro-batch (images in [-1, 1])."""
        g = self.generator
        size = original.shape[0]
        with torch.no_grad():
            edited = edited.to(self.device, self.models.frozen_dtype)
            original = original.to(self.device, self.models.frozen_dtype)
            posterior = self.vae.encode(edited).latent_dist
            eps = torch.randn(posterior.mean.shape, generator=g).to(posterior.mean)
            latents = (posterior.mean + posterior.std * eps).float()
            latents = latents * self.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=g).to(self.device)
            steps = self.models.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, steps, (size,), generator=g).to(self.device)
            noisy = self.models.noise_scheduler.add_noise(latents, noise, timesteps)
            text = self._encode_prompts(prompts).float()
            image = self.vae.encode(original).latent_dist.mode().float()
            prob = self.config.conditioning_dropout_prob
            if prob > 0:
                drop_text, drop_image = conditioning_masks(torch.rand(size, generator=g), prob)
                drop_text, drop_image = drop_text.to(self.device), drop_image.to(self.device)
                null = self.null_text.float().expand_as(text)
                text = torch.where(drop_text[:, None, None], null, text)
                image = image * (~drop_image).float()[:, None, None, None]
            model_input = torch.cat([noisy, image], dim=1)
        prediction_type = self.models.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = self.models.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise TrainingError(f"Unsupported prediction type {prediction_type!r}.")
        with self._autocast():
            prediction = self.unet(model_input, timesteps, text, return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.amp_dtype)

    # -- the loop ------------------------------------------------------------------------

    def _batches(
        self, start_micro_step: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        """Micro-batches in a seeded order per epoch, from `start_micro_step` on."""
        size = self.config.train_batch_size
        count = len(self.pairs)
        per_epoch = max(count // size, 1)
        epoch, offset = divmod(start_micro_step, per_epoch)
        while True:
            order_generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
            order = torch.randperm(count, generator=order_generator).tolist()
            flips = (torch.rand(count, generator=order_generator) < 0.5).tolist()
            for index in range(offset, per_epoch):
                chosen = [order[(index * size + i) % count] for i in range(size)]
                yield self._collate(chosen, flips)
            epoch, offset = epoch + 1, 0

    def _collate(
        self, indices: list[int], flips: list[bool]
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        originals, editeds, prompts = [], [], []
        for index in indices:
            pair = self.pairs[index]
            original = to_tensor(pair.original_image, self.config.resolution)
            edited = to_tensor(pair.edited_image, self.config.resolution)
            if self.config.random_flip and flips[index]:
                original, edited = original.flip(-1), edited.flip(-1)
            originals.append(original)
            editeds.append(edited)
            prompts.append(pair.edit_prompt)
        return torch.stack(originals), torch.stack(editeds), prompts

    def train(self, resume: bool = True) -> TrainResult:
        """Train up to `max_train_steps`, resuming from the newest checkpoint when there is one."""
        from tqdm.auto import tqdm

        config = self.config
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "train_config.json").write_text(json.dumps(config.to_json(), indent=2))
        resumed_from = 0
        latest = latest_checkpoint(config.output_dir) if resume else None
        if latest is not None:
            self.load_checkpoint(latest)
            resumed_from = self.step
        result = TrainResult(
            step=self.step, output_dir=config.output_dir, resumed_from=resumed_from
        )
        accumulation = config.gradient_accumulation_steps
        batches = self._batches(self.step * accumulation)
        trainable = [p for p in self.unet.parameters() if p.requires_grad]
        bar = tqdm(
            total=config.max_train_steps,
            initial=self.step,
            desc="Training",
            unit="step",
            disable=not self.progress,
        )
        with bar, (config.output_dir / "train_log.jsonl").open("a") as log_file:
            while self.step < config.max_train_steps:
                total = 0.0
                for _ in range(accumulation):
                    original, edited, prompts = next(batches)
                    loss = self.compute_loss(original, edited, prompts) / accumulation
                    self.scaler.scale(loss).backward()
                    total += float(loss.detach())
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                result.losses.append(total)
                lr = self.lr_scheduler.get_last_lr()[0]
                log_file.write(json.dumps({"step": self.step, "loss": total, "lr": lr}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{total:.4f}")
                if config.checkpointing_steps and self.step % config.checkpointing_steps == 0:
                    self.save_checkpoint()
                if config.validation_steps and self.step % config.validation_steps == 0:
                    l1 = self.validate()
                    log_file.write(json.dumps({"step": self.step, "validation_l1": l1}) + "\n")
                    bar.write(f"step {self.step}: validation L1 {l1:.4f}")
                log_file.flush()
        self.save_model(config.output_dir)
        result.step = self.step
        return result

    # -- checkpoints and output ----------------------------------------------------------

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            name: param.detach().cpu().clone()
            for name, param in self.unet.named_parameters()
            if param.requires_grad
        }

    def save_checkpoint(self) -> Path:
        """A resumable checkpoint (weights, optimizer, RNG, step), plus a servable adapter."""
        state = {
            "step": self.step,
            "trainable": self.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
        }
        adapter = None if self.config.full_finetune else self.save_model
        return write_checkpoint(
            self.config.output_dir, self.step, state, adapter, self.config.checkpoints_total_limit
        )

    def load_checkpoint(self, folder: Path) -> None:
        state = read_checkpoint(folder, self.trainable_state())
        self.unet.load_state_dict(state["trainable"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", folder, self.step)

    def save_model(self, folder: Path) -> None:
        """The adapter in diffusers' LoRA format, or (full fine-tune) a whole pipeline."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.config.full_finetune:
            self.pipeline().save_pretrained(folder)
            return
        save_lora(self.unet, folder)

    def pipeline(self) -> StableDiffusionInstructPix2PixPipeline:
        """An inference pipeline sharing the weights being trained."""
        return inference_pipeline(self.models)

    def validate(self) -> float:
        """Edit the first validation pairs, save the results, return their mean L1 to the truth."""
        folder = self.config.output_dir / "validation" / f"step-{self.step:06d}"
        pairs = [
            self.pairs[i] for i in range(min(self.config.num_validation_images, len(self.pairs)))
        ]
        pipe = self.pipeline()
        self.unet.eval()
        try:
            return validation_edits(
                pipe,
                pairs,
                folder,
                resolution=self.config.resolution,
                inference_steps=self.config.validation_inference_steps,
                autocast=self._autocast,
            )
        finally:
            self.unet.train()


def conditioning_masks(draw: torch.Tensor, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples lose the text and which the image, from uniform draws in [0, 1).

    [0, p): text only; [p, 2p): text and image; [2p, 3p): image only; the rest keep both. The
    model so learns the unconditional and the image-only predictions that classifier-free
    guidance with two scales (`guidance_scale`, `image_guidance_scale`) needs.
    """
    return draw < 2 * prob, (draw >= prob) & (draw < 3 * prob)
