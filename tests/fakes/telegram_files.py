"""Files the fake Bot API server holds: uploads, user photos and documents, and their file_ids.

Telegram identifies every stored file by an opaque file_id, serves it through getFile plus a
download URL, and lets a bot send it again by that file_id. The store below keeps those three
views of one file together so the fake can offer all of them.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

JSONDict = dict[str, Any]

#: Telegram lets bots download files of at most 20 MB through getFile.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
#: Telegram's edge size for the smallest ("s") photo size.
THUMBNAIL_SIDE = 90

# Real file_ids start with a type-specific prefix; keeping them makes logs look familiar.
_PREFIXES = {
    "photo": "AgACAgIAAxkBAAI",
    "document": "BQACAgIAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
    "animation": "CgACAgIAAxkBAAI",
    "video": "BAACAgIAAxkBAAI",
}
_FOLDERS = {
    "photo": "photos",
    "document": "documents",
    "sticker": "stickers",
    "animation": "animations",
    "video": "videos",
}


class ImageError(ValueError):
    """Bytes Pillow cannot read as an image: Telegram refuses them as a photo."""


@dataclass
class StoredFile:
    """One file as the server knows it. ``file_size`` may exceed ``len(data)`` on purpose."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    file_path: str
    file_size: int
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None

    def as_file(self) -> JSONDict:
        """The Bot API ``File`` object getFile answers with."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "file_path": self.file_path,
        }

    def as_photo_size(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
        }

    def as_document(self) -> JSONDict:
        document: JSONDict = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.file_name is not None:
            document["file_name"] = self.file_name
        if self.mime_type is not None:
            document["mime_type"] = self.mime_type
        document["file_size"] = self.file_size
        return document


class FileStore:
    """All files by file_id and by download path, plus the size list of every stored photo."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[StoredFile]] = {}
        self._counter = itertools.count(1)

    def add(
        self,
        kind: str,
        data: bytes,
        *,
        file_size: int | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        number = next(self._counter)
        extension = _extension(kind, file_name, mime_type)
        stored = StoredFile(
            file_id=f"{_PREFIXES.get(kind, 'BQACAgIAAxkBAAI')}{number:07d}",
            file_unique_id=f"AQAD{number:07d}",
            kind=kind,
            data=data,
            file_path=f"{_FOLDERS.get(kind, 'documents')}/file_{number}{extension}",
            file_size=len(data) if file_size is None else file_size,
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )
        self._by_id[stored.file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def add_photo(self, data: bytes) -> list[StoredFile]:
        """Store an image as Telegram does: a small thumbnail, then the full size, last.

        The full size keeps the exact bytes (Telegram would re-encode them as JPEG) so that tests
        can compare what was sent with what arrives.
        """
        width, height, thumbnail, thumb_size = _read_image(data)
        sizes = [
            self.add("photo", thumbnail, width=thumb_size[0], height=thumb_size[1]),
            self.add("photo", data, width=width, height=height),
        ]
        for size in sizes:
            self._photo_sets[size.file_id] = sizes
        return sizes

    def get(self, file_id: str) -> StoredFile | None:
        return self._by_id.get(file_id)

    def by_path(self, file_path: str) -> StoredFile | None:
        return self._by_path.get(file_path)

    def photo_set(self, file_id: str) -> list[StoredFile] | None:
        """Every size of the photo that ``file_id`` (any of its sizes) belongs to."""
        return self._photo_sets.get(file_id)


def _extension(kind: str, file_name: str | None, mime_type: str | None) -> str:
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1].lower()
    if kind == "photo":
        return ".jpg"
    if kind == "sticker":
        return ".webp"
    if kind in ("animation", "video") or mime_type == "video/mp4":
        return ".mp4"
    return ""


def _read_image(data: bytes) -> tuple[int, int, bytes, tuple[int, int]]:
    """Width and height as displayed (EXIF rotation applied), and a JPEG thumbnail."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            width, height = image.size
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"not an image Pillow can read: {exc}") from exc
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return width, height, buffer.getvalue(), small.size
