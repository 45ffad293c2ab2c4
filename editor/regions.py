"""Named regions: what `/keep` protects and `/only` confines, as plain data.

A region is its kind and the user's words; with the mask it produced on a given photo it
becomes a `RegionMask`. Both are deliberately small and serialisable (kind, text, mask image
sha256), so a stored version, and a recipe step, can replay exactly the constraint it was made
with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RegionKind = Literal["keep", "only"]
KEEP: RegionKind = "keep"
ONLY: RegionKind = "only"
KINDS: tuple[RegionKind, ...] = (KEEP, ONLY)


@dataclass(frozen=True, slots=True)
class Region:
    """`kind` "keep": the region's pixels never change; "only": nothing outside it changes.

    `text` is what the user typed after the command ("the logo").
    """

    kind: RegionKind
    text: str


@dataclass(frozen=True, slots=True)
class RegionMask:
    """A region and the mask it produced: `mask_sha` is the sha256 of a binary "L" PNG
    (255 inside) at the size of the photo it was computed on."""

    kind: RegionKind
    text: str
    mask_sha: str
