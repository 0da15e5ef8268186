"""The core's store writes, batched: everything queued in one loop tick is one record.

At light load every message is its own batch, so what a batch costs (a record,
a hand-off to the journal's writer thread, an fsync) is paid per message. An
ack nobody waits on is written without an fsync and may wait a little
(:data:`LAZY_BATCH_SECONDS`) for the next batch that is synced; a confirmation
that comes later still waits for every earlier write to be durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sealmq.core.clock import Clock, Timer
from sealmq.core.ports import MessageStore, Op

__all__ = ["LAZY_BATCH_SECONDS", "BatchedWrites"]

log = logging.getLogger("sealmq.core")

#: How long a batch holding only acks nobody waits on may wait for company before it is
#: written, in seconds. At light load the next send's batch (fsynced) usually comes first
#: and carries the acks along: one record and one writer hand-off instead of two.
LAZY_BATCH_SECONDS = 0.010


class BatchedWrites:
    """One store's writes, gathered per loop tick into one atomic record."""

    def __init__(self, store: MessageStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._batch: list[Op] | None = None
        self._future: asyncio.Future[None] | None = None
        self._sync = False
        #: The timer that writes a batch of acks alone if nothing joins it in time.
        self._lazy_timer: Timer | None = None
        #: A batch was written without fsync since the last synced one.
        self._unsynced = False
        #: Called with the exception when the store fails to write: the broker must stop.
        self.on_failure: Callable[[BaseException], None] | None = None
        #: The future of the newest batch holding a synced write (every AddMessage is):
        #: everything written before it is durable when it is, since the store completes
        #: writes in order. Paging waits on it before reading a message back.
        self.last_synced: asyncio.Future[None] | None = None

    @property
    def pending(self) -> bool:
        return self._batch is not None

    def write(self, ops: list[Op], *, sync: bool = True) -> asyncio.Future[None]:
        """Queue ``ops`` for the store; durable (or, ``sync=False``, written) when the
        future is.

        ``sync=False`` for acks nobody waits on: a batch of only those costs no fsync
        (a crash may redeliver such a message, never lose one).
        """
        if self._batch is None:
            self._batch = []
            self._future = asyncio.get_running_loop().create_future()
            if sync:
                self.clock.call_soon(self.flush)
            else:
                self._lazy_timer = self.clock.call_later(LAZY_BATCH_SECONDS, self.flush)
        elif sync:
            self._hurry()
        self._batch.extend(ops)
        assert self._future is not None
        if sync and not self._sync:
            self._sync = True
            self.last_synced = self._future
        return self._future

    def _hurry(self) -> None:
        """The batch is waited on now: write it at the end of this loop tick."""
        timer, self._lazy_timer = self._lazy_timer, None
        if timer is not None:
            timer.cancel()
            self.clock.call_soon(self.flush)

    def pending_write(self) -> asyncio.Future[None] | None:
        """Durability of everything queued for the store so far in this loop tick, if any."""
        if self._future is None and self._unsynced:
            # Nothing queued in this tick, but an earlier batch was written without an
            # fsync: an empty synced record makes it durable before anyone is confirmed.
            self.write([])
        if self._future is not None:
            # Somebody will confirm on it: it must mean durable.
            self._sync = True
            self.last_synced = self._future
            self._hurry()
        return self._future

    def flush(self) -> None:
        ops, future, sync = self._batch, self._future, self._sync
        self._batch = self._future = None
        self._sync = False
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        if ops is None or future is None or not (ops or sync):
            if future is not None and not future.done():
                future.set_result(None)  # nothing to write: nothing to wait for
            return
        # A synced record makes every earlier one durable too (the journal is in order).
        self._unsynced = not sync
        try:
            written = self.store.write(ops, sync=sync)
        except Exception as exc:
            self._failed(future, exc)
            return

        def done(f: asyncio.Future[None]) -> None:
            if f.cancelled():
                self._failed(future, asyncio.CancelledError())
            elif (exc := f.exception()) is not None:
                self._failed(future, exc)
            elif not future.done():
                future.set_result(None)

        written.add_done_callback(done)

    def _failed(self, future: asyncio.Future[None], exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)
            # Producers may have dropped the future; never warn "exception never retrieved".
            future.exception()
        log.critical("store write failed: %s", type(exc).__name__)
        if self.on_failure is not None:
            self.on_failure(exc)
