"""Ranking candidates of one edit: the scorer protocol the schedulers call.

A scorer says how well each candidate follows the instruction and keeps the photo; the CLIP
implementation is `editor/clip_scorer.py` (imported only when configured: it needs torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image


class CandidateScorer(Protocol):
    """Scores candidates of one instruction on one parent (blocking; the model thread calls)."""

    def score(
        self, parent: Image.Image, candidates: Sequence[Image.Image], text: str
    ) -> list[float]:
        """One score per candidate, in order; higher is better."""


def best(scores: Sequence[float]) -> int:
    """The index of the best score (the first of equals)."""
    return max(range(len(scores)), key=lambda index: (scores[index], -index))
