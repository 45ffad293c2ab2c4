"""Test doubles shared across the suite (built on the editor package's own NullEditor)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from PIL import Image

from editor.base import EditRequest, NullEditor, PreviewCallback, ProgressCallback

GATE_TIMEOUT_S = 10.0


class GatedEditor(NullEditor):
    """The NullEditor, but each batch waits for `gate`: close it to keep edits pending.

    The gate starts open (`closed=True` starts it shut); a gate never opened fails the batch
    after a timeout instead of hanging the test.
    """

    def __init__(
        self, fail_on: str | None = None, step_delay_s: float = 0.0, *, closed: bool = False
    ) -> None:
        super().__init__(fail_on=fail_on, step_delay_s=step_delay_s)
        self.gate = threading.Event()
        if not closed:
            self.gate.set()

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        if not self.gate.wait(timeout=GATE_TIMEOUT_S):
            raise RuntimeError("the test never opened the gate")
        return super().edit_batch(requests, progress, preview)
