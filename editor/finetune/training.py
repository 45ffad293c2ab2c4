"""`pix2chat train`: LoRA (or full) fine-tuning of the InstructPix2Pix UNet.

The objective is InstructPix2Pix's: the UNet sees the noisy latents of the edited image
concatenated with the (unscaled, as the pipeline passes them) latents of the input image, is
conditioned on the instruction, and predicts the noise. For classifier-free guidance on both
conditions, about 5% of samples each lose the text, the image, or both.

Everything random (data order, flips, VAE sampling, noise, timesteps, dropout) comes from
generators whose state is checkpointed, so a run that is stopped and resumed ends with the same
weights as one that was not. The adapter is saved in diffusers' LoRA format, which
`DiffusersEditor(model, lora=folder)` (and so the bot's LoRA setting) fuses at load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from editor.errors import ModelLoadError
from editor.finetune.data import EditPair, open_pairs, to_tensor
from editor.finetune.metrics import l1_distance
from editor.loading import select_device
from editor.lora import LORA_TARGET_MODULES

log = logging.getLogger(__name__)

MIXED_PRECISION: dict[str, torch.dtype | None] = {
    "no": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
STATE_FILE = "training_state.pt"
LORA_FILE = "pytorch_lora_weights.safetensors"


class TrainingError(Exception):
    """The training run cannot start as configured (bad option, unusable dataset)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run; names follow diffusers' train_instruct_pix2pix options.

    Args:
        model: InstructPix2Pix hub id or folder to fine-tune.
        dataset: pair folder from `pix2chat dataset images`, or a hub dataset with
            original_image / edit_prompt / edited_image columns.
        output_dir: where the adapter, checkpoints, validation images and the log go.
        full_finetune: train every UNet weight instead of a LoRA (needs a large GPU).
        lora_rank, lora_alpha: LoRA size and scale (alpha defaults to the rank).
        conditioning_dropout_prob: share of samples that lose the text, the image, or both.
        mixed_precision: "no", "fp16" (CUDA) or "bf16".
        checkpointing_steps: save a resumable checkpoint every this many optimizer steps.
        validation_steps: edit the validation pairs every this many steps (0: never).
    """

    model: str
    dataset: str
    output_dir: Path
    resolution: int = 256
    train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 1000
    learning_rate: float = 1e-4
    lr_warmup_steps: int = 0
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    full_finetune: bool = False
    lora_rank: int = 16
    lora_alpha: int | None = None
    conditioning_dropout_prob: float = 0.05
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    validation_steps: int = 0
    num_validation_images: int = 4
    validation_inference_steps: int = 20
    random_flip: bool = True
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise TrainingError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"not {self.mixed_precision!r}."
            )
        for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.resolution % 8:
            raise TrainingError(f"resolution must be a multiple of 8, not {self.resolution}.")
        if not 0 <= self.conditioning_dropout_prob <= 1 / 3:
            raise TrainingError("conditioning_dropout_prob must be between 0 and 1/3.")
        if not self.full_finetune and self.lora_rank < 1:
            raise TrainingError(f"lora_rank must be at least 1, not {self.lora_rank}.")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


@dataclass(slots=True)
class TrainResult:
    """What a run did: the step it reached and where its output is."""

    step: int
    output_dir: Path
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0


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
        self._load_models()
        trainable = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            trainable, lr=config.learning_rate, weight_decay=config.adam_weight_decay
        )
        warmup = max(config.lr_warmup_steps, 0)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # CPU generators: the same seed gives the same run on any device.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.null_text = self._encode_prompts([""])

    def _load_models(self) -> None:
        config = self.config
        # Frozen parts run in the mixed-precision dtype on CUDA; trained weights stay float32.
        frozen = self.amp_dtype if self.device.type == "cuda" and self.amp_dtype else torch.float32
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(config.model, subfolder="tokenizer")
            self.text_encoder = CLIPTextModel.from_pretrained(
                config.model, subfolder="text_encoder"
            )
            self.vae = AutoencoderKL.from_pretrained(config.model, subfolder="vae")
            self.unet = UNet2DConditionModel.from_pretrained(config.model, subfolder="unet")
            self.noise_scheduler = DDPMScheduler.from_pretrained(
                config.model, subfolder="scheduler"
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the InstructPix2Pix model {config.model!r} to train: {exc}"
            ) from exc
        if self.unet.config.in_channels != 8:
            raise TrainingError(
                f"{config.model!r} has a {self.unet.config.in_channels}-channel UNet; training "
                "needs an InstructPix2Pix model (8 input channels), e.g. timbrooks/instruct-pix2pix."
            )
        self.vae.requires_grad_(False).to(self.device)
        self.text_encoder.requires_grad_(False)
        self.text_encoder.to(self.device)  # type: ignore[arg-type]
        if frozen != torch.float32:
            self.vae.to(dtype=frozen)
            self.text_encoder.to(dtype=frozen)  # type: ignore[call-arg]
        self.frozen_dtype = frozen
        self.unet.requires_grad_(config.full_finetune)
        if not config.full_finetune:
            # LoRA's A matrix starts random: seeded, so two runs with one seed start alike.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self._add_lora()
        self.unet.to(self.device)
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.unet.train()

    def _add_lora(self) -> None:
        config = self.config
        self.unet.add_adapter(
            LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha or config.lora_rank,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGET_MODULES,
            )
        )

    # -- the objective -------------------------------------------------------------------

    def _encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden: torch.Tensor = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return hidden

    def compute_loss(
        self, original: torch.Tensor, edited: torch.Tensor, prompts: Sequence[str]
    ) -> torch.Tensor:
        """The InstructPix2Pix denoising loss of one micro-batch (images in [-1, 1])."""
        g = self.generator
        size = original.shape[0]
        with torch.no_grad():
            edited = edited.to(self.device, self.frozen_dtype)
            original = original.to(self.device, self.frozen_dtype)
            posterior = self.vae.encode(edited).latent_dist
            eps = torch.randn(posterior.mean.shape, generator=g).to(posterior.mean)
            latents = (posterior.mean + posterior.std * eps).float()
            latents = latents * self.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=g).to(self.device)
            steps = self.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, steps, (size,), generator=g).to(self.device)
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
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
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise TrainingError(f"Unsupported prediction type {prediction_type!r}.")
        with self._autocast():
            prediction = self.unet(model_input, timesteps, text, return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

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
        folder = self.config.output_dir / "checkpoints" / f"step-{self.step:06d}"
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        state = {
            "step": self.step,
            "trainable": self.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
        }
        torch.save(state, partial / STATE_FILE)
        if not self.config.full_finetune:
            self.save_model(partial)
        # Renamed only once complete, so a crash mid-save never leaves a checkpoint to resume.
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        self._prune_checkpoints()
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        current = self.trainable_state()
        saved = state["trainable"]
        if set(current) != set(saved) or any(
            saved[name].shape != value.shape for name, value in current.items()
        ):
            raise TrainingError(
                f"The checkpoint {folder} does not match this run (LoRA rank or full fine-tune "
                "changed?): train into another --output-dir, or pass --no-resume."
            )
        self.unet.load_state_dict(state["trainable"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", folder, self.step)

    def _prune_checkpoints(self) -> None:
        limit = self.config.checkpoints_total_limit
        if limit is None:
            return
        for old in _checkpoints(self.config.output_dir)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def save_model(self, folder: Path) -> None:
        """The adapter in diffusers' LoRA format, or (full fine-tune) a whole pipeline."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.config.full_finetune:
            self.pipeline().save_pretrained(folder)
            return
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        StableDiffusionInstructPix2PixPipeline.save_lora_weights(folder, unet_lora_layers=layers)

    def pipeline(self) -> StableDiffusionInstructPix2PixPipeline:
        """An inference pipeline sharing the weights being trained."""
        components: dict[str, Any] = {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "tokenizer": self.tokenizer,
            "unet": self.unet,
            "scheduler": EulerAncestralDiscreteScheduler.from_config(self.noise_scheduler.config),
            "safety_checker": None,
            "feature_extractor": None,
        }
        pipe = StableDiffusionInstructPix2PixPipeline(**components, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self) -> float:
        """Edit the first validation pairs, save the results, return their mean L1 to the truth."""
        folder = self.config.output_dir / "validation" / f"step-{self.step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        pairs = [
            self.pairs[i] for i in range(min(self.config.num_validation_images, len(self.pairs)))
        ]
        pipe = self.pipeline()
        self.unet.eval()
        distances = []
        try:
            for index, pair in enumerate(pairs):
                image = _square(pair.original_image, self.config.resolution)
                with torch.inference_mode(), self._autocast():
                    images, _ = pipe(
                        prompt=pair.edit_prompt,
                        image=image,
                        num_inference_steps=self.config.validation_inference_steps,
                        generator=torch.Generator().manual_seed(index),
                        return_dict=False,
                    )
                output: Image.Image = images[0]
                output.save(folder / f"{index:02d}.png")
                distances.append(
                    l1_distance(output, _square(pair.edited_image, self.config.resolution))
                )
        finally:
            self.unet.train()
        return sum(distances) / len(distances)


def conditioning_masks(draw: torch.Tensor, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples lose the text and which the image, from uniform draws in [0, 1).

    [0, p): text only; [p, 2p): text and image; [2p, 3p): image only; the rest keep both. The
    model so learns the unconditional and the image-only predictions that classifier-free
    guidance with two scales (`guidance_scale`, `image_guidance_scale`) needs.
    """
    return draw < 2 * prob, (draw >= prob) & (draw < 3 * prob)


def _square(image: Image.Image, resolution: int) -> Image.Image:
    array = ((to_tensor(image, resolution).permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    return Image.fromarray(array.to(torch.uint8).numpy())


def _checkpoints(output_dir: Path) -> list[Path]:
    folder = output_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.endswith(".partial") and (p / STATE_FILE).is_file()
    )


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, if any."""
    found = _checkpoints(output_dir)
    return found[-1] if found else None
