"""The CLIP candidate scorer: how well each follows the instruction and keeps the photo.

The score of a candidate is CLIP directional similarity (does the change from the parent to
the candidate point the way the instruction does?) plus `KEEP_WEIGHT` times CLIP image
similarity between the candidate and its parent (does it still look like the photo?):

    score = cos(E(candidate) - E(parent), T(instruction))
            + KEEP_WEIGHT * cos(E(candidate), E(parent))

E is CLIP's image embedding and T its text embedding, each scaled to unit length. Higher is
better; scores compare candidates of the same instruction on the same parent, never different
edits. The model is loaded on
first use, in the thread that scores (the schedulers' model thread), and never before a set
needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from editor.errors import ModelLoadError
from editor.loading import check_local_path, offline_hint, select_device

KEEP_WEIGHT = 0.5
"""How much keeping the parent counts against following the instruction."""


class ClipScorer:
    """CLIP directional similarity plus image similarity, from a hub id or a local folder.

    Args:
        model: a CLIP checkpoint (`openai/clip-vit-large-patch14` in production).
        device: where to run it ("cpu", "cuda", ...).
    """

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.model_name = model
        self.device = device
        """A torch device, or "auto" (the fastest present, as for the editor)."""
        self._model: Any = None
        self._processor: Any = None
        self._failed: ModelLoadError | None = None
        self.loaded_in: str | None = None
        """The thread that loaded the model (the schedulers' model thread, by design)."""
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model once (the first `score` calls this).

        A failure is remembered and raised again at once: candidates stay unranked until the
        process restarts, rather than every set waiting for the hub again.
        """
        with self._lock:
            if self._model is not None:
                return
            if self._failed is not None:
                raise self._failed
            check_local_path(self.model_name, "scorer_model")
            try:
                model = CLIPModel.from_pretrained(self.model_name)
                processor = CLIPProcessor.from_pretrained(self.model_name)
            except Exception as exc:
                self._failed = ModelLoadError(
                    f"Could not load the candidate scorer {self.model_name!r}: {exc}\n"
                    "The scorer is a CLIP model (e.g. openai/clip-vit-large-patch14)."
                    + offline_hint(),
                    option="scorer_model",
                    value=self.model_name,
                )
                raise self._failed from exc
            if self.device == "auto":
                self.device = select_device("auto")
            model.eval().to(self.device)
            self._processor = processor
            self._model = model
            self.loaded_in = threading.current_thread().name

    @torch.inference_mode()
    def score(
        self, parent: Image.Image, candidates: Sequence[Image.Image], text: str
    ) -> list[float]:
        if not candidates:
            return []
        self.load()
        images = self._processor(images=[parent, *candidates], return_tensors="pt")
        pixels = images["pixel_values"].to(self.device)
        image_features = _features(self._model.get_image_features(pixel_values=pixels))
        tokens = self._processor.tokenizer(
            [text], padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        text_features = _features(self._model.get_text_features(**tokens))
        embedded = torch.nn.functional.normalize(image_features.float(), dim=-1)
        words = torch.nn.functional.normalize(text_features.float(), dim=-1)[0]
        before, after = embedded[0], embedded[1:]
        direction = torch.nn.functional.normalize(after - before, dim=-1)
        follows = direction @ words
        keeps = after @ before
        return [float(value) for value in follows + KEEP_WEIGHT * keeps]


def _features(output: Any) -> torch.Tensor:
    """transformers 5 may return a model output rather than the bare projected tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = output[0]
    return torch.as_tensor(pooled)
