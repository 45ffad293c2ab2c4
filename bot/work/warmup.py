"""The model's start-up, watched: loading, ready or failed, and for how long.

The embedded scheduler loads the model in the background so that the frontends answer at
once; edits queued meanwhile wait in line and their replies say the model is warming up.
`pix2chat run` waits on `failed()` to report a model that cannot load and exit.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable


class ModelState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class Warmup:
    """Where the model's load stands; `progress` is a fraction when the loader reports one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.state = ModelState.LOADING
        self.started = clock()
        self.finished: float | None = None
        self.progress: float | None = None
        self.error: BaseException | None = None
        self._settled = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    def report(self, fraction: float) -> None:
        """A loader's progress (0..1), for the warming-up replies."""
        self.progress = min(1.0, max(0.0, fraction))

    def loaded(self) -> None:
        self.state, self.finished = ModelState.READY, self.clock()
        self._settled.set()

    def failed(self, error: BaseException) -> None:
        self.state, self.finished, self.error = ModelState.FAILED, self.clock(), error
        self._settled.set()

    async def settled(self) -> ModelState:
        """Wait until the model is loaded or has failed to load."""
        await self._settled.wait()
        return self.state

    def elapsed_s(self) -> float:
        return (self.finished or self.clock()) - self.started

    def describe(self) -> str:
        """Words for replies and `pix2chat doctor`: "loading for 12 s", "40% loaded"."""
        if self.state is ModelState.READY:
            return f"ready (loaded in {self.elapsed_s():.0f} s)"
        if self.state is ModelState.FAILED:
            return f"failed to load: {self.error}"
        if self.progress is not None:
            return f"{self.progress:.0%} loaded"
        seconds = self.elapsed_s()
        return (
            f"loading for {seconds:.0f} s"
            if seconds < 90
            else f"loading for {seconds / 60:.0f} min"
        )
