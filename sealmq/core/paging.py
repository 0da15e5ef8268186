"""Paging: reading queued messages back from the store as a queue's window drains.

A queue keeps in memory only what its memory limit allows (``MessageQueue.enqueue``
leaves the rest in the store, ids in ``MessageQueue.paged``); when its window is
below the low-water mark the queue asks its host to page in, and the :class:`Pager`
reads the next batch on a thread of its own (``read_messages`` is blocking file I/O
and may call the key service), then hands the entries to the queue on the event
loop. Dispatch of what is in memory never waits for it. This is ActiveMQ's store
cursor (``docs/core.md``, Paging).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sealmq.core.clock import Clock
from sealmq.core.consumers import Entry
from sealmq.core.model import Message
from sealmq.core.ports import MessageStore, MessageUnavailableError
from sealmq.core.queues import MessageQueue

__all__ = ["PAGE_RETRY_SECONDS", "PAGE_SIZE", "Pager"]

log = logging.getLogger("sealmq.core")

#: Messages read back per batch (ActiveMQ's ``maxPageSize`` is 200): a batch is one
#: hand-off to the reading thread and, for a backlog sent in order, a few records.
PAGE_SIZE = 500
#: After the store could not be read (the key service refused, say), wait this long
#: before trying again, in seconds.
PAGE_RETRY_SECONDS = 1.0


class Pager:
    """Pages queues in, one batch at a time per queue, on one reading thread."""

    def __init__(
        self,
        store: MessageStore,
        clock: Clock,
        last_write: Callable[[], asyncio.Future[None] | None],
    ) -> None:
        self.store = store
        self.clock = clock
        #: The newest store write so far: whatever a queue paged was written by then.
        self._last_write = last_write
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Messages paged in, and those the store could not give back, since the start.
        self.paged_in = 0
        self.unreadable = 0
        self._warned = False

    def page_in(self, queue: MessageQueue) -> None:
        """Start reading ``queue``'s next messages back (it asked: ``wants_page_in``)."""
        if self._closed or queue.paging or not queue.paged:
            return
        queue.paging = True
        task = asyncio.get_running_loop().create_task(self._run(queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until no page-in is under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._executor is not None:
            # The reading thread finishes the batch it is on (a few records) and stops.
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
            self._executor = None

    async def _run(self, queue: MessageQueue) -> None:
        try:
            while not self._closed and queue.paged and queue.memory < queue.low_water:
                if not await self._one_batch(queue):
                    self.clock.call_later(PAGE_RETRY_SECONDS, queue.wake_pager)
                    return
        finally:
            queue.paging = False

    async def _one_batch(self, queue: MessageQueue) -> bool:
        """Read the next batch into ``queue``'s window; False if the store refused."""
        paged = queue.paged
        ids = list(itertools.islice(paged, queue.page_size(PAGE_SIZE)))
        written = self._last_write()
        if written is not None and not written.done():
            # A message is readable once its write completed; writes complete in order.
            try:
                await asyncio.shield(written)
            except Exception:
                return False  # the store failed: the broker is stopping
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sealmq-page")
        loop = asyncio.get_running_loop()
        try:
            read = await loop.run_in_executor(self._executor, self._read, ids)
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "paging: the store could not be read (%s); retrying every %.0f s",
                    type(exc).__name__,
                    PAGE_RETRY_SECONDS,
                )
            return False
        self._warned = False
        if queue.paged is not paged:
            return True  # the queue was emptied meanwhile (a durable subscription removed)
        counts = queue.paged_counts
        entries = []
        for mid, message in zip(ids, read, strict=True):
            paged.popleft()
            redeliveries = counts.pop(mid, None) if counts else None
            if message is None:
                continue
            entries.append(
                Entry(
                    message,
                    queue,
                    message.redelivery_count if redeliveries is None else redeliveries,
                )
            )
        self.paged_in += len(entries)
        queue.paged_in(entries)
        return True

    def _read(self, ids: Sequence[str]) -> list[Message | None]:
        """Reading thread: the messages ``ids``, None for one the store cannot give back
        (logged: it stays in the store, and a restart tries it again)."""
        try:
            return list(self.store.read_messages(ids))
        except MessageUnavailableError:
            pass
        out: list[Message | None] = []
        for mid in ids:
            try:
                out.extend(self.store.read_messages([mid]))
            except MessageUnavailableError as exc:
                self.unreadable += 1
                log.error("paging: message %s cannot be read back and is skipped: %s", mid, exc)
                out.append(None)
        return out
