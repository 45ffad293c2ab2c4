"""The GPU worker's micro-batcher: samples of concurrently running jobs meet in one call.

PostgreSQL already chose the jobs fairly; each job awaits its own sample's result here while the
shared `BatchEngine` runs compatible samples together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from bot.work.batching import BatchEngine, BatchProgress, ModelThread, Output, Work
from bot.work.metrics import Metrics
from editor.base import Editor
from editor.finishing.finisher import Finisher
from editor.scoring import CandidateScorer
from editor.segment import Segmenter
from storage.images import ImageStore

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False, slots=True)
class _Waiting:
    work: Work
    future: asyncio.Future[Output]


BatchStarted = Callable[[list[int]], Awaitable[None]]


class MicroBatcher:
    """The worker's owner of a `BatchEngine`: runs samples submitted by concurrent jobs.

    PostgreSQL already chose the jobs (fairly); here the oldest waiting sample picks the
    signature and others with the same signature join, up to `max_batch`. Each `run` returns
    its own result or raises what its own pipeline call raised.
    """

    def __init__(
        self,
        model: ModelThread,
        editor: Editor,
        images: ImageStore,
        *,
        max_batch: int = 4,
        max_wait_ms: int = 20,
        on_start: BatchStarted | None = None,
        on_progress: BatchProgress | None = None,
        develop: bool = True,
        segmenter: Segmenter | None = None,
        finisher: Finisher | None = None,
        metrics: Metrics | None = None,
        scorer: CandidateScorer | None = None,
    ) -> None:
        self.on_start = on_start
        self._waiting: list[_Waiting] = []
        self.engine: BatchEngine[_Waiting] = BatchEngine(
            self,
            model,
            editor,
            images,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            on_progress=on_progress,
            develop=develop,
            segmenter=segmenter,
            finisher=finisher,
            metrics=metrics,
            scorer=scorer,
        )
        self.max_batch = max_batch
        self.batch_sizes = self.engine.batch_sizes

    async def __aenter__(self) -> MicroBatcher:
        self.engine.start()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.engine.cancel()

    async def run(self, work: Work) -> Output:
        """Compute one sample (raises what its own pipeline call raised)."""
        future: asyncio.Future[Output] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(work, future))
        self.engine.wake()
        return await future

    # ----- BatchOwner ------------------------------------------------------------------------

    def next_batch(self, max_batch: int) -> list[_Waiting]:
        self._waiting = [item for item in self._waiting if not item.future.done()]
        if not self._waiting:
            return []
        signature = self._waiting[0].work.signature()
        same = [item for item in self._waiting if item.work.signature() == signature]
        return same[:max_batch]

    def take(self, batch: list[_Waiting]) -> None:
        for item in batch:
            self._waiting.remove(item)

    def finish(self, batch: list[_Waiting]) -> None:
        """Nothing to do: each item's future holds its outcome."""

    async def begin(self, batch: list[_Waiting]) -> list[tuple[_Waiting, Work]]:
        if self.on_start is not None:
            try:
                await self.on_start([item.work.version_id for item in batch])
            except Exception:
                log.exception("batch start hook failed")
        return [(item, item.work) for item in batch]

    async def succeeded(self, results: list[tuple[_Waiting, Output]], seconds: float) -> None:
        for item, output in results:
            if not item.future.done():
                item.future.set_result(output)

    async def failed(self, item: _Waiting, error: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(error)

    async def crashed(self, batch: list[_Waiting], error: Exception) -> None:
        """Never leave a job waiting on a dead batch."""
        log.error("batcher crashed on a batch", exc_info=error)
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)
