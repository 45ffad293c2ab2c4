"""Test doubles shared across the suite (built on the editor package's own NullEditor)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from PIL import Image

from editor.base import EditRequest, NullEditor, PreviewCallback, ProgressCallback

GATE_TIMEOUT_S = 10.0


class GatedEditor(NullEditor):
    """The NullEditor, but each batch waits for `gate`: close it to keep edits pending.

    The gate starts open (`closed=True` starts it shut); a gate never opened fails the batch
    after a timeout instead of hanging the test.
    """

    def __init__(
        self,
        fail_on: str | None = None,
        step_delay_s: float = 0.0,
        *,
        closed: bool = False,
        preview_every: int = 0,
    ) -> None:
        super().__init__(fail_on=fail_on, step_delay_s=step_delay_s, preview_every=preview_every)
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


class PausingPreviewEditor(GatedEditor):
    """The NullEditor with a preview every step, holding the edit after the preview of step
    `pause_at` until `resume` is set, so a test can look at a running edit's preview."""

    def __init__(self, pause_at: int = 2) -> None:
        super().__init__(preview_every=1)
        self.pause_at = pause_at
        self.resume = threading.Event()

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        def hold(step: int, total: int, images: Mapping[int, Image.Image]) -> None:
            assert preview is not None
            preview(step, total, images)
            if step == self.pause_at and not self.resume.wait(timeout=GATE_TIMEOUT_S):
                raise RuntimeError("the test never resumed the edit")

        return super().edit_batch(requests, progress, hold if preview is not None else None)
