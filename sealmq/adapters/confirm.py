"""Answers a client gets in the order it asked, each once what it asked for is durable.

STOMP RECEIPTs (and the ERRORs queued behind them), MQTT PUBACK/PUBREC/PUBCOMP, SUBACK
and UNSUBACK: a client may read an answer as "everything I sent before is stored", so
an answer waits for its own write and for every earlier answer. Each storing core call
hands back its durability future; a call that stores without one (an ack, a DLQ move)
is covered by ``Broker.pending_write()``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["OrderedConfirmations"]

T = TypeVar("T")


class OrderedConfirmations(Generic[T]):
    """A queue of answers, each released when its future and all earlier ones are done.

    ``release(answer)`` sends an answer; ``failed(answer)`` is called instead, once, for
    the first answer whose write failed, and everything still queued is dropped (the
    adapter closes the connection: the client must not believe anything after it stored).
    """

    __slots__ = ("_failed", "_queue", "_release", "waiting")

    def __init__(self, release: Callable[[T], None], failed: Callable[[T], None]) -> None:
        self._release = release
        self._failed = failed
        self._queue: deque[tuple[asyncio.Future[None] | None, T]] = deque()
        #: Answers queued with a write of their own not yet durable (MQTT's receive
        #: maximum counts them).
        self.waiting = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, future: Awaitable[None] | None, answer: T) -> None:
        """Release ``answer`` once ``future`` (None: nothing of its own) and every earlier
        answer are done; at once when nothing is waiting."""
        if future is None and not self._queue:
            self._release(answer)
            return
        fut = asyncio.ensure_future(future) if future is not None else None
        if fut is not None:
            self.waiting += 1
        self._queue.append((fut, answer))
        if fut is not None:
            fut.add_done_callback(self._ready)

    def clear(self) -> None:
        self._queue.clear()

    def _ready(self, _: object = None) -> None:
        queue = self._queue
        while queue:
            future, answer = queue[0]
            if future is not None:
                if not future.done():
                    return
                self.waiting -= 1
                if future.cancelled() or future.exception() is not None:
                    queue.clear()
                    self._failed(answer)
                    return
            queue.popleft()
            self._release(answer)
