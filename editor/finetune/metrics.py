"""Edit-quality measures: L1, CLIP-I, DINO, CLIP-T and CLIP directional similarity.

The MagicBrush benchmark's measures, plus the InstructPix2Pix paper's directional similarity:

- L1 (lower is closer): mean absolute pixel difference to the ground truth, pixels in [0, 1].
- CLIP-I and DINO (higher is closer): cosine similarity of the output's and the ground truth's
  CLIP image embedding / DINO CLS token.
- CLIP-T (higher is closer): cosine similarity of the output's CLIP image embedding and the
  output caption's CLIP text embedding.
- Directional similarity: cosine of the image change (input -> output) and the caption change
  (input caption -> output caption) in CLIP space; it says whether the edit went the right way.

Edit strength and preservation trade off, so report them together. Models are loaded by hub id
or folder (`from_pretrained`), as the editor loads its model; tests use tiny random ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPModel

from editor.errors import ModelLoadError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # the InstructPix2Pix paper's CLIP filter
DEFAULT_DINO = "facebook/dino-vits16"  # MagicBrush's DINO


def l1_distance(output: Image.Image, target: Image.Image) -> float:
    """Mean absolute difference of RGB pixels in [0, 1]; `target` is resized to `output`'s size."""
    a = np.asarray(output.convert("RGB"), dtype=np.float32) / 255.0
    if target.size != output.size:
        target = target.resize(output.size, Image.Resampling.BICUBIC)
    b = np.asarray(target.convert("RGB"), dtype=np.float32) / 255.0
    return float(np.abs(a - b).mean())


def _load(kind: str, name: str, loader: Any) -> Any:
    try:
        return loader.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the {kind} {name!r}: {exc}\n"
            "Give a Hugging Face hub id (already in the cache when HF_HUB_OFFLINE is set) or a "
            "folder written by save_pretrained."
        ) from exc


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class ClipScorer:
    """CLIP image and text embeddings, unit length, from a hub id or a local folder.

    Args:
        model: e.g. "openai/clip-vit-large-patch14" or a folder with config, weights,
            tokenizer and preprocessor_config.json.
        device: where the model runs ("cpu", "cuda", ...).
        batch_size: images or texts per forward pass.
    """

    def __init__(self, model: str = DEFAULT_CLIP, *, device: str = "cpu", batch_size: int = 16):
        self.name = model
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model: CLIPModel = _load("CLIP model", model, CLIPModel).to(self.device).eval()
        self.tokenizer = _load("CLIP tokenizer", model, AutoTokenizer)
        self.processor = _load("CLIP image processor", model, AutoImageProcessor)

    @torch.inference_mode()
    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, D) unit image embeddings."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            output = self.model.get_image_features(pixel_values=pixels.to(self.device))
            chunks.append(_unit(_pooled(output).float()))
        return torch.cat(chunks).cpu()

    @torch.inference_mode()
    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit text embeddings; texts longer than CLIP's 77 tokens are truncated."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding="max_length",
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="pt",
            )
            output = self.model.get_text_features(
                input_ids=tokens.input_ids.to(self.device),
                attention_mask=tokens.attention_mask.to(self.device),
            )
            chunks.append(_unit(_pooled(output).float()))
        return torch.cat(chunks).cpu()


class DinoScorer:
    """DINO (ViT or DINOv2) CLS-token embeddings, unit length, from a hub id or a local folder."""

    def __init__(self, model: str = DEFAULT_DINO, *, device: str = "cpu", batch_size: int = 16):
        self.name = model
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = _load("DINO model", model, AutoModel).to(self.device).eval()
        self.processor = _load("DINO image processor", model, AutoImageProcessor)

    @torch.inference_mode()
    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, D) unit CLS embeddings."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            hidden = self.model(pixel_values=pixels.to(self.device)).last_hidden_state
            chunks.append(_unit(hidden[:, 0].float()))
        return torch.cat(chunks).cpu()


def _pooled(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is projected; 4.x a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled: torch.Tensor = output.pooler_output
    return pooled


def cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Row-wise cosine similarity of two (N, D) tensors."""
    values: list[float] = torch.nn.functional.cosine_similarity(a, b, dim=-1).tolist()
    return values


def clip_i(
    clip: ClipScorer, outputs: Sequence[Image.Image], targets: Sequence[Image.Image]
) -> list[float]:
    """CLIP image similarity of each output to its ground truth."""
    return cosine(clip.images(outputs), clip.images(targets))


def clip_t(
    clip: ClipScorer, outputs: Sequence[Image.Image], captions: Sequence[str]
) -> list[float]:
    """CLIP image-text similarity of each output to its (output) caption."""
    return cosine(clip.images(outputs), clip.texts(captions))


def dino(
    scorer: DinoScorer, outputs: Sequence[Image.Image], targets: Sequence[Image.Image]
) -> list[float]:
    """DINO similarity of each output to its ground truth."""
    return cosine(scorer.images(outputs), scorer.images(targets))


def directional_similarity(
    clip: ClipScorer,
    inputs: Sequence[Image.Image],
    outputs: Sequence[Image.Image],
    input_captions: Sequence[str],
    output_captions: Sequence[str],
) -> list[float]:
    """cos(E(output) - E(input), E(output caption) - E(input caption)) per sample.

    Positive when the image moved towards the output caption, negative when away from it, and 0
    when the image did not change at all.
    """
    image_change = clip.images(outputs) - clip.images(inputs)
    text_change = clip.texts(output_captions) - clip.texts(input_captions)
    return cosine(image_change, text_change)
