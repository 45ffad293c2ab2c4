"""Cut-outs and white backgrounds through rembg (ONNX matting models).

A rembg model name (e.g. "birefnet-general", fetched into rembg's own cache) or a local .onnx
file. rembg loads custom files only from inside its model folder, so a local file is linked
into a private model home that only our session class points at: nothing global (no
U2NET_HOME in the environment) changes. The mask is a soft alpha (the model's probabilities),
so edges stay anti-aliased.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from editor.finishing.errors import FinishingNotInstalled, MattingUnavailable, NoSubjectFound

log = logging.getLogger(__name__)

MIN_SUBJECT_SHARE = 0.002
"""Below this share of (mostly) opaque pixels the mask counts as empty: no subject."""
SUBJECT_ALPHA = 128
MARGIN = 0.08
"""The white margin around the subject, as a share of the subject's long side."""
WHITE = (255, 255, 255)


def existing_alpha(image: Image.Image) -> Image.Image | None:
    """The alpha of an image that is already a cut-out (some transparency), else None."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return None
    alpha = image.convert("RGBA").getchannel("A")
    low = alpha.getextrema()[0]
    return alpha if isinstance(low, int) and low < 255 else None


def check_subject(mask: Image.Image) -> None:
    """Raise NoSubjectFound when the mask is (almost) empty."""
    values = np.asarray(mask)
    if values.size == 0 or float((values >= SUBJECT_ALPHA).mean()) < MIN_SUBJECT_SHARE:
        raise NoSubjectFound()


def cutout(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The subject on transparency: RGBA with `mask` as its (soft) alpha."""
    check_subject(mask)
    rgba = image.convert("RGB").convert("RGBA")
    rgba.putalpha(mask.convert("L").resize(rgba.size, Image.Resampling.LANCZOS))
    return rgba


def on_white(
    image: Image.Image, mask: Image.Image, *, square: bool, margin: float = MARGIN
) -> Image.Image:
    """The subject centred on pure white with a margin (a 1:1 canvas if `square`), RGB."""
    subject = cutout(image, mask)
    box = subject.getchannel("A").point(lambda v: 255 if v >= 8 else 0).getbbox()
    if box is None:
        raise NoSubjectFound()
    subject = subject.crop(box)
    pad = max(1, round(max(subject.size) * margin))
    width, height = subject.width + 2 * pad, subject.height + 2 * pad
    if square:
        width = height = max(width, height)
    canvas = Image.new("RGBA", (width, height), (*WHITE, 255))
    canvas.alpha_composite(subject, ((width - subject.width) // 2, (height - subject.height) // 2))
    return canvas.convert("RGB")


class Matting:
    """A rembg session, created at first use (in the model thread)."""

    def __init__(self, source: str, device: str = "cpu") -> None:
        self.source = source
        self.device = device
        self._session: Any = None
        self._home: tempfile.TemporaryDirectory[str] | None = None

    def load(self) -> None:
        if self._session is not None:
            return
        try:
            import onnxruntime as ort
            from rembg import new_session
            from rembg.sessions.u2net_custom import U2netCustomSession
        except ImportError as error:
            raise FinishingNotInstalled(missing=str(error)) from error
        providers = ["CPUExecutionProvider"]
        if (
            self.device in ("cuda", "auto")
            and "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        path = Path(self.source).expanduser()
        try:
            if path.suffix == ".onnx" or path.exists():
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
                self._session = self._local_session(U2netCustomSession, ort, path, providers)
            else:
                self._session = new_session(self.source, providers=providers)
        except Exception as error:
            log.error("matting model %s could not be loaded: %s", self.source, error)
            raise MattingUnavailable(source=self.source, detail=str(error)) from error
        log.info("matting model %s loaded", self.source)

    def _local_session(self, session_class: Any, ort: Any, path: Path, providers: list[str]) -> Any:
        """rembg's custom-model session, reading `path` through a private model home."""
        self._home = tempfile.TemporaryDirectory(prefix="pix2chat-matting-")
        home = self._home.name
        link = Path(home) / path.name
        os.symlink(path.resolve(), link)

        def private_home(cls: Any, *args: Any, **kwargs: Any) -> str:
            return home

        private = type(
            "PrivateHomeSession",
            (session_class,),
            {"rembg_home": classmethod(private_home), "legacy_home": classmethod(private_home)},
        )
        return private(
            "u2net_custom", ort.SessionOptions(), model_path=str(link), providers=providers
        )

    def mask(self, image: Image.Image) -> Image.Image:
        """The subject's soft mask (L, the image's size); an existing cut-out keeps its alpha."""
        alpha = existing_alpha(image)
        if alpha is not None:
            return alpha
        self.load()
        with np.errstate(divide="ignore", invalid="ignore"):
            mask: Image.Image = self._session.predict(image.convert("RGB"))[0]
        return mask.convert("L").resize(image.size, Image.Resampling.LANCZOS)
