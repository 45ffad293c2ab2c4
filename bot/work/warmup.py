"""The model's start-up, watched: loading, ready or failed, and for how long.

The embedded scheduler loads the model in the background so that the frontends answer at
once; edits queued meanwhile wait in line and their replies say the model is warming up.
`pix2chat run` waits on `failed()` to report a model that cannot load and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


STATE_FILE = "model-state.json"
"""In the data folder: where `pix2chat run` says how its model load goes, for `pix2chat doctor`."""


class StateFile:
    """The model state of the running `pix2chat run`, as a small JSON file `doctor` reads."""

    def __init__(self, folder: Path, model: str) -> None:
        self.path = folder / STATE_FILE
        self.model = model

    def write(self, warmup: Warmup) -> None:
        state = {
            "pid": os.getpid(),
            "model": self.model,
            "state": warmup.state.value,
            "detail": warmup.describe(),
            "updated": time.time(),
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state), encoding="utf-8")
        temporary.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    async def keep_writing(self, warmup: Warmup, every_s: float = 2.0) -> None:
        """Write while the model loads, then once more when it has settled."""
        while warmup.state is ModelState.LOADING:
            self.write(warmup)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(warmup.settled(), every_s)
        self.write(warmup)


def read_state(folder: Path) -> dict[str, Any] | None:
    """What a running `pix2chat run` last wrote, or None (none runs, or it is gone)."""
    path = folder / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)  # still running? (signal 0 only checks)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state
