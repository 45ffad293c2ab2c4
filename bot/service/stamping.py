"""Provenance on delivered Full resolution files: what AI did to a version, signed into it.

Every version made by a model (an instruction edit, an upscale, a cut-out, a white background)
gets a C2PA manifest listing those operations, and an invisible watermark, when its lossless
file is delivered (PIX2CHAT_PROVENANCE=on). An unedited photo is the user's own and is sent
as it is. Instructions are personal: the manifest names the operations, not the words.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict

from editor.finishing.provenance import Provenance, Step
from editor.finishing.spec import Finish
from storage import tree
from storage.database import Database
from storage.models import Version

log = logging.getLogger(__name__)

STAMPED_KEPT = 4
"""Stamped files kept in memory: watermarking takes about a second per megapixel on a CPU, and
a user who presses Full resolution twice should not wait twice."""


def step_for(version: Version) -> Step:
    """The manifest entry for one model-made version."""
    finish: Finish | None = version.finishing()
    if finish is None:
        return Step("c2pa.edited", "edited by instruction with an image-editing diffusion model")
    if finish.operation == "upscale":
        return Step("c2pa.resized", f"upscaled {finish.scale}x with a super-resolution model")
    if finish.operation == "cutout":
        return Step("c2pa.edited", "background removed with a matting model")
    return Step("c2pa.edited", "background replaced with white using a matting model")


class Stamper:
    """Adds the manifest and the watermark to a version's lossless PNG."""

    def __init__(self, database: Database, provenance: Provenance) -> None:
        self.database = database
        self.provenance = provenance
        self._stamped: OrderedDict[tuple[int, str], bytes] = OrderedDict()

    async def stamp(self, version_id: int, png: bytes) -> bytes:
        """`png` (the version's stored file) with provenance if a model made it."""
        key = (version_id, hashlib.sha256(png).hexdigest())
        if key in self._stamped:
            self._stamped.move_to_end(key)
            return self._stamped[key]
        async with self.database.read() as session:
            path = await tree.path_to(session, version_id)
        steps = [step_for(version) for version in path if not version.is_root]
        if not steps:
            return png
        title = f"pix2chat-{version_id}.png"
        stamped = await asyncio.to_thread(self.provenance.stamp, png, steps, title)
        self._stamped[key] = stamped
        while len(self._stamped) > STAMPED_KEPT:
            self._stamped.popitem(last=False)
        return stamped
