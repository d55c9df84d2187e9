"""Admission control and off-loop execution for one engine.

Each engine gets a fixed number of worker threads (its concurrency) and a bounded number of
requests allowed to wait for one. A request beyond that is refused at once (429 with
Retry-After) instead of piling up. A waiting request whose client leaves gives its place back;
a running one has its cancel event set and its thread stops at the engine's next check.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class ShuttingDown(Exception):
    """The server is stopping: a request that has not started is refused (503)."""


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Hand a result to the event loop; after shutdown closed it there is no one left to tell."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # "Event loop is closed": the process is exiting
        pass


class QueueFull(Exception):
    def __init__(self, engine_id: str, retry_after_s: int) -> None:
        super().__init__(f"engine {engine_id} is busy")
        self.engine_id = engine_id
        self.retry_after_s = retry_after_s


class EngineWorker:
    def __init__(self, engine_id: str, concurrency: int, queue_size: int, retry_after_s: int) -> None:
        self.engine_id = engine_id
        self.concurrency = max(1, concurrency)
        self.queue_size = max(0, queue_size)
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(self.concurrency)
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"engine-{engine_id}")
        self.waiting = 0
        self.active = 0
        self._closing = asyncio.Event()
        self._running: set[threading.Event] = set()

    def start_threads(self, timeout: float = 30.0) -> None:
        """Start every worker thread now. Otherwise the first burst of requests starts them from
        the event loop (``Thread.start`` waits for each new thread to run, and under load that
        wait is for the GIL), delaying the requests behind them."""
        barrier = threading.Barrier(self.concurrency)

        def start() -> None:
            barrier.wait(timeout)  # every task holds its thread until all are running

        futures = [self._executor.submit(start) for _ in range(self.concurrency)]
        for future in futures:
            future.result()

    @property
    def queue_depth(self) -> int:
        return self.waiting

    def admit(self) -> None:
        """Refuse now if the server is stopping, or every worker is busy and the queue is full."""
        if self._closing.is_set():
            raise ShuttingDown()
        if self.active + self.waiting >= self.concurrency + self.queue_size:
            raise QueueFull(self.engine_id, self.retry_after_s)

    async def run(self, produce: Callable[[], Iterator[T]], cancel: threading.Event) -> AsyncIterator[T]:
        """Run ``produce`` in a worker thread and yield its items on the event loop.

        The slot is released only when the thread has really finished, so a cancelled request
        never lets a new one start while its engine work is still running.
        """
        self.admit()
        self.waiting += 1
        try:
            await self._acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        self._running.add(cancel)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def work() -> None:
            try:
                for item in produce():
                    if cancel.is_set():
                        break
                    _post(loop, queue.put_nowait, item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                _post(loop, queue.put_nowait, exc)
            finally:
                _post(loop, queue.put_nowait, _DONE)

        def release(_: object) -> None:
            def _release() -> None:
                self.active -= 1
                self._slots.release()

            _post(loop, _release)

        try:
            future = self._executor.submit(work)
        except BaseException:
            self.active -= 1
            self._slots.release()
            self._running.discard(cancel)
            raise
        future.add_done_callback(release)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            cancel.set()
            self._running.discard(cancel)

    async def _acquire(self) -> None:
        """Wait for a worker, or refuse once the server starts stopping."""
        if not self._slots.locked():
            await self._slots.acquire()  # a worker is free: returns at once
            return
        acquire = asyncio.ensure_future(self._slots.acquire())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({acquire, closing}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client left while waiting: never keep a slot nobody uses
            closing.cancel()
            if acquire.done() and not acquire.cancelled():
                self._slots.release()
            else:
                acquire.cancel()
            raise
        closing.cancel()
        if not acquire.done():
            acquire.cancel()
            raise ShuttingDown()
        if self._closing.is_set():
            self._slots.release()
            raise ShuttingDown()

    def begin_shutdown(self) -> None:
        """Refuse new and waiting requests; running ones go on (``cancel_running`` stops them)."""
        self._closing.set()

    def cancel_running(self) -> None:
        for cancel in list(self._running):
            cancel.set()

    def shutdown(self) -> None:
        self._closing.set()
        self.cancel_running()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        """Block until every worker thread has finished (after ``shutdown``)."""
        self._executor.shutdown(wait=True)
