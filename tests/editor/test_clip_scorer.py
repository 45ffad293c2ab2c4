"""The CLIP candidate scorer, on a tiny random CLIP saved once per session and loaded through
the production loader (editor/clip_scorer.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from editor.clip_scorer import KEEP_WEIGHT, ClipScorer
from editor.errors import ModelLoadError


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_loads_on_first_use_and_scores_each_candidate(tiny_clip_dir: Path) -> None:
    scorer = ClipScorer(str(tiny_clip_dir))
    assert not scorer.loaded  # nothing is loaded before a set needs it

    parent = picture((20, 120, 40))
    candidates = [parent, picture((200, 10, 10)), picture((10, 10, 200))]
    scores = scorer.score(parent, candidates, "make it red")

    assert scorer.loaded
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    # Unchanged: no direction to follow (0) and perfectly like its parent (1).
    assert scores[0] == pytest.approx(KEEP_WEIGHT, abs=1e-5)
    assert scores[1] != scores[2]
    assert scorer.score(parent, [], "anything") == []


def test_scores_follow_the_documented_formula(tiny_clip_dir: Path) -> None:
    """Recomputed here from CLIP's own embeddings: directional + KEEP_WEIGHT * image similarity."""
    scorer = ClipScorer(str(tiny_clip_dir))
    parent, candidate = picture((20, 120, 40)), picture((200, 10, 10))
    (score,) = scorer.score(parent, [candidate], "make it red")

    model, processor = scorer._model, scorer._processor
    with torch.inference_mode():
        pixels = processor(images=[parent, candidate], return_tensors="pt")["pixel_values"]
        images = model.get_image_features(pixel_values=pixels)
        images = getattr(images, "pooler_output", images)
        tokens = processor.tokenizer(["make it red"], return_tensors="pt")
        words = model.get_text_features(**tokens)
        words = getattr(words, "pooler_output", words)
    images = torch.nn.functional.normalize(images, dim=-1)  # unit length, as documented
    cos = torch.nn.functional.cosine_similarity
    direction = cos(images[1] - images[0], words[0], dim=0)
    keep = cos(images[1], images[0], dim=0)
    assert score == pytest.approx(float(direction + KEEP_WEIGHT * keep), abs=1e-4)


def test_a_missing_scorer_names_its_setting_and_fails_fast_after(tmp_path: Path) -> None:
    scorer = ClipScorer(str(tmp_path / "no-such-clip"))
    with pytest.raises(ModelLoadError) as first:
        scorer.score(picture((0, 0, 0)), [picture((1, 1, 1))], "x")
    assert first.value.option == "scorer_model"

    hub = ClipScorer("no-such-org/no-such-clip")  # offline in tests: never downloads
    with pytest.raises(ModelLoadError) as missing:
        hub.load()
    assert "scorer" in str(missing.value)
    with pytest.raises(ModelLoadError) as again:
        hub.load()
    assert again.value is missing.value  # remembered, not tried again
