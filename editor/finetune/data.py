"""Edit-pair datasets: the folder `pix2chat dataset images` writes, or a dataset on the hub.

A pair folder is a Hugging Face `imagefolder`: PNG files plus `metadata.jsonl`, whose
`original_image_file_name` and `edited_image_file_name` keys `datasets` turns into image columns
(`datasets.load_dataset("imagefolder", data_dir=folder)`). Training reads the metadata directly
and opens images lazily, so a 12,000-image folder costs no memory until it is used and no
cache copy in ~/.cache.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image

METADATA = "metadata.jsonl"


@dataclass(frozen=True, slots=True)
class EditPair:
    """One training or evaluation example."""

    original_image: Image.Image
    edit_prompt: str
    edited_image: Image.Image
    original_prompt: str = ""
    edited_prompt: str = ""
    session: str = ""  # multi-turn sets: the conversation this turn belongs to
    turn: int = 0


class _Pairs(Sequence[EditPair]):
    """What both pair sources share: an index or a slice reads pairs one at a time."""

    @abstractmethod
    def _pair(self, index: int) -> EditPair:
        """The pair at `index`, its images opened now (lazily, not at construction)."""

    @overload
    def __getitem__(self, index: int) -> EditPair: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[EditPair]: ...
    def __getitem__(self, index: int | slice) -> EditPair | Sequence[EditPair]:
        if isinstance(index, slice):
            return [self._pair(i) for i in range(*index.indices(len(self)))]
        return self._pair(index)


def _pair_from_row(
    row: dict[str, Any], original_image: Image.Image, edited_image: Image.Image
) -> EditPair:
    """A pair from InstructPix2Pix's columns; the optional text columns may be absent or None."""
    return EditPair(
        original_image=original_image,
        edit_prompt=row["edit_prompt"],
        edited_image=edited_image,
        original_prompt=row.get("original_prompt") or "",
        edited_prompt=row.get("edited_prompt") or "",
        session=str(row.get("session") or ""),
        turn=int(row.get("turn") or 0),
    )


class FolderPairs(_Pairs):
    """The pairs of an imagefolder written by `pix2chat dataset images`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        path = folder / METADATA
        self.rows: list[dict[str, Any]] = [
            json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def _pair(self, index: int) -> EditPair:
        row = self.rows[index]
        return _pair_from_row(
            row,
            _open(self.folder / row["original_image_file_name"]),
            _open(self.folder / row["edited_image_file_name"]),
        )


class HubPairs(_Pairs):
    """A `datasets` dataset with InstructPix2Pix's columns (e.g. a hub id, or a saved folder).

    Args:
        name: hub id or path for `datasets.load_dataset`.
        split: which split to read.
    """

    def __init__(self, name: str, split: str = "train") -> None:
        import datasets

        try:
            self.data = datasets.load_dataset(name, split=split)
        except Exception as exc:  # datasets raises a dozen types for "not there"
            raise ValueError(
                f"{name!r} is neither a pair folder (with {METADATA}) nor a dataset that "
                f"`datasets` could load: {exc}"
            ) from exc
        missing = {"original_image", "edit_prompt", "edited_image"} - set(self.data.column_names)
        if missing:
            raise ValueError(
                f"The dataset {name!r} has no {', '.join(sorted(missing))} column; it needs "
                "original_image, edit_prompt and edited_image (InstructPix2Pix's names)."
            )

    def __len__(self) -> int:
        return len(self.data)

    def _pair(self, index: int) -> EditPair:
        row = self.data[index]
        return _pair_from_row(
            row, row["original_image"].convert("RGB"), row["edited_image"].convert("RGB")
        )


def open_pairs(source: str | Path) -> Sequence[EditPair]:
    """A pair folder (with metadata.jsonl) if `source` is one, else `datasets.load_dataset`."""
    folder = Path(source).expanduser()
    if (folder / METADATA).is_file():
        return FolderPairs(folder)
    if folder.exists():
        raise FileNotFoundError(
            f"{folder} has no {METADATA}; give a folder written by `pix2chat dataset images` "
            "or a hub dataset id."
        )
    return HubPairs(str(source))


def write_pair_folder(pairs: Sequence[EditPair], folder: Path) -> Path:
    """Write pairs as an imagefolder (PNG files and metadata.jsonl), as `dataset images` does."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with (folder / METADATA).open("w", encoding="utf-8") as file:
        for index, pair in enumerate(pairs):
            stem = f"images/{index:06d}"
            pair.original_image.save(folder / f"{stem}-original.png")
            pair.edited_image.save(folder / f"{stem}-edited.png")
            row: dict[str, str | int] = {
                "original_image_file_name": f"{stem}-original.png",
                "edited_image_file_name": f"{stem}-edited.png",
                "original_prompt": pair.original_prompt,
                "edit_prompt": pair.edit_prompt,
                "edited_prompt": pair.edited_prompt,
            }
            if pair.session:
                row |= {"session": pair.session, "turn": pair.turn}
            file.write(json.dumps(row) + "\n")
    return folder


def to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """(3, resolution, resolution) in [-1, 1]: shortest side resized, then centre-cropped."""
    image = image.convert("RGB")
    scale = resolution / min(image.size)
    size = (
        max(resolution, round(image.width * scale)),
        max(resolution, round(image.height * scale)),
    )
    image = image.resize(size, Image.Resampling.BICUBIC)
    left = (image.width - resolution) // 2
    top = (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
