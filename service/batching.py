"""Micro-batching: maps from concurrent requests go to the model in one call.

A request hands its (C, 2b, 2b) map to :meth:`MicroBatcher.submit` and awaits its row of the
result. One loop takes up to ``max_batch_size`` waiting maps, stacks them and runs the model in
a worker thread (onnxruntime releases the GIL), so the event loop keeps accepting requests.
While the model runs, new maps pile up and form the next batch by themselves; when the queue
is short the loop waits up to ``max_wait_ms`` for more, but only while other requests are
still upstream (parsing or ray casting) and could join: a lone request is never delayed.

The queue is bounded: past ``max_queue`` maps, :meth:`submit` raises :class:`Overloaded`
and the app answers 503 with ``Retry-After`` instead of letting the queue grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("service.batching")

RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Overloaded(Exception):
    """The service has more work than its bounds allow; the client should retry later."""


class ShuttingDown(Exception):
    """The batcher was stopped before this request's map ran."""


@dataclass(frozen=True)
class BatchResult:
    probabilities: np.ndarray  # (K,) float32
    descriptor: np.ndarray  # (D,) float32
    novelty: float | None  # None: the model has no novelty output
    batch_size: int
    queue_ms: float
    inference_ms: float


@dataclass
class _Pending:
    map: np.ndarray  # (C, 2b, 2b) float32
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)
    request_id: str | None = field(default_factory=request_id.get)


class MicroBatcher:
    """Batches ``run(maps) -> (probabilities, descriptors, novelty)`` calls across requests."""

    def __init__(
        self,
        run: RunFn,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: Metrics | None = None,
        upstream: Callable[[], int] | None = None,
    ) -> None:
        """``upstream()``: how many requests are still parsing or casting (could join)."""
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(
                f"need max_batch_size >= 1, max_queue >= 1, max_wait_ms >= 0; got "
                f"{max_batch_size}, {max_queue}, {max_wait_ms}"
            )
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1e3
        self.max_queue = max_queue
        self._metrics = metrics
        self._upstream = upstream or (lambda: 0)
        self._items: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    @property
    def depth(self) -> int:
        return len(self._items)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._items:
            pending = self._items.popleft()
            if not pending.future.done():
                pending.future.set_exception(ShuttingDown("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, map_: np.ndarray) -> BatchResult:
        """Queue one map and wait for its row; raises :class:`Overloaded` if the queue is full."""
        if self._task is None:
            raise ShuttingDown("the batcher is not running")
        if len(self._items) >= self.max_queue:
            raise Overloaded(f"{len(self._items)} maps are waiting for the model")
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._items.append(_Pending(map_, future))
        self._set_depth()
        self._wakeup.set()
        return await future

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._items))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._fill(loop)
            batch: list[_Pending] = []
            while self._items and len(batch) < self.max_batch_size:
                pending = self._items.popleft()
                if not pending.future.done():  # skip requests whose client went away
                    batch.append(pending)
            self._set_depth()
            if batch:
                await self._run_batch(loop, batch)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to ``max_wait`` for a fuller batch while more maps are on their way."""
        if self.max_wait_s <= 0 or self.max_batch_size == 1:
            return
        deadline = loop.time() + self.max_wait_s
        while len(self._items) < self.max_batch_size and self._upstream() > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        start = time.perf_counter()
        try:
            maps = np.stack([p.map for p in batch])  # (N, C, 2b, 2b)
            outputs = await loop.run_in_executor(self._executor, self._run, maps)
            probabilities, descriptors, novelty = outputs
        except Exception as exc:
            # The traceback is logged once per request, with its id, where the error surfaces.
            log.error(
                "model call failed for a batch of %d: %s: %s",
                len(batch),
                type(exc).__name__,
                exc,
                extra={"request_ids": [p.request_id for p in batch]},
            )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        inference_ms = 1e3 * (time.perf_counter() - start)
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(batch))
        for row, pending in enumerate(batch):
            if not pending.future.done():
                pending.future.set_result(
                    BatchResult(
                        probabilities=probabilities[row],
                        descriptor=descriptors[row],
                        novelty=None if novelty is None else float(novelty[row]),
                        batch_size=len(batch),
                        queue_ms=1e3 * (start - pending.enqueued),
                        inference_ms=inference_ms,
                    )
                )
