"""Sessions and producers: the JMS/OpenWire/AMQP grouping of a connection's work.

A :class:`Session` groups consumers and producers of one connection (a JMS
session, an AMQP session, an OpenWire ``SessionInfo``); closing it closes
them. STOMP and MQTT need none: their adapters use the connection directly.

A :class:`Producer` sends through its connection and has credit: a window of
bytes sent but not yet confirmed (durable, for a persistent message). While
the window is full, or the broker tells it to wait (:meth:`Producer.hold`),
:attr:`Producer.ready` is False and the adapter stops reading from that
producer (OpenWire withholds its ``ProducerAck``, AMQP its link credit); it
hears when it may go on through ``on_ready`` or :meth:`Producer.wait_ready`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sealmq.core.consumers import Consumer, DeliverySink
from sealmq.core.errors import BrokerError, SubscriptionError
from sealmq.core.model import Destination, Message

if TYPE_CHECKING:
    from sealmq.core.connection import Connection, SubscribeOptions

__all__ = ["DEFAULT_PRODUCER_WINDOW", "Producer", "ProducerError", "Session"]

#: Bytes a producer may have sent unconfirmed before it must wait; 0: no window.
#: ActiveMQ's ``producerWindowSize`` is off by default too (its docs' example: 1024000).
DEFAULT_PRODUCER_WINDOW = 0


class ProducerError(BrokerError):
    """The producer cannot be used that way (closed, unknown id, no destination)."""


class Producer:
    """One producer of a session: its default destination and its credit."""

    __slots__ = (
        "_held",
        "_waiters",
        "closed",
        "destination",
        "id",
        "on_ready",
        "outstanding",
        "sent",
        "session",
        "window",
    )

    def __init__(
        self,
        session: Session,
        producer_id: str,
        destination: Destination | None,
        window: int,
    ) -> None:
        self.session = session
        self.id = producer_id
        #: Where ``send`` sends a message naming no destination of its own (None: each
        #: message names one, an anonymous producer).
        self.destination = destination
        #: Unconfirmed bytes allowed in flight; 0: no window.
        self.window = window
        self.outstanding = 0
        self.sent = 0
        self.closed = False
        #: Called once the producer may send again after it had to wait.
        self.on_ready: Callable[[Producer], None] | None = None
        self._held: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def ready(self) -> bool:
        """Whether the producer may send now (its window has room, nobody holds it)."""
        if self._held or self.closed:
            return False
        return self.window <= 0 or self.outstanding < self.window

    def send(self, message: Message, transaction: str | None = None) -> asyncio.Future[None] | None:
        """Send ``message`` as this producer; the future as ``Connection.send``'s.

        A producer that is not :attr:`ready` may still send (a client ignoring its
        window is not refused): its credit only goes further negative.
        """
        if self.closed:
            raise ProducerError(f"producer {self.id!r} is closed")
        size = len(message.body)
        self.sent += 1
        future = self.session.connection.send(message, transaction)
        if future is None or future.done() or self.window <= 0:
            return future
        self.outstanding += size
        future.add_done_callback(lambda _: self._confirmed(size))
        return future

    def _confirmed(self, size: int) -> None:
        was_ready = self.ready
        self.outstanding -= size
        if not was_ready:
            self._maybe_ready()

    def hold(self, reason: str) -> None:
        """The broker tells the producer to wait (a destination over its memory limit)."""
        self._held.add(reason)

    def release(self, reason: str) -> None:
        """The reason to wait is gone; the producer goes on if nothing else holds it."""
        if reason in self._held:
            self._held.discard(reason)
            self._maybe_ready()

    def _maybe_ready(self) -> None:
        if not self.ready:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.on_ready is not None:
            self.on_ready(self)

    async def wait_ready(self) -> None:
        """Return once the producer may send (at once when it may now)."""
        while not self.ready:
            if self.closed:
                raise ProducerError(f"producer {self.id!r} is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ProducerError(f"producer {self.id!r} is closed"))
                waiter.exception()  # nobody may be waiting any more
        self._waiters = []
        self.session.producers.pop(self.id, None)


class Session:
    """A group of consumers and producers of one connection, closed together."""

    def __init__(self, connection: Connection, session_id: str) -> None:
        self.connection = connection
        self.id = session_id
        self.producers: dict[str, Producer] = {}
        #: Consumer ids (the connection's) made through this session.
        self.consumer_ids: set[str] = set()
        self.closed = False

    def create_producer(
        self,
        producer_id: str,
        destination: Destination | None = None,
        *,
        window: int = DEFAULT_PRODUCER_WINDOW,
    ) -> Producer:
        if self.closed:
            raise ProducerError(f"session {self.id!r} is closed")
        if producer_id in self.producers:
            raise ProducerError(f"producer id {producer_id!r} is already in use")
        producer = Producer(self, producer_id, destination, window)
        self.producers[producer_id] = producer
        return producer

    def subscribe(
        self,
        consumer_id: str,
        destination: Destination,
        sink: DeliverySink,
        options: SubscribeOptions | None = None,
    ) -> Consumer:
        """``Connection.subscribe``, the consumer belonging to this session."""
        if self.closed:
            raise SubscriptionError(f"session {self.id!r} is closed")
        consumer = self.connection.subscribe(consumer_id, destination, sink, options)
        self.consumer_ids.add(consumer_id)
        return consumer

    def unsubscribe(self, consumer_id: str) -> None:
        self.consumer_ids.discard(consumer_id)
        self.connection.unsubscribe(consumer_id)

    def close(self) -> None:
        """Close its producers and consumers (their unacked messages are redelivered)."""
        if self.closed:
            return
        self.closed = True
        for producer in list(self.producers.values()):
            producer.close()
        for consumer_id in sorted(self.consumer_ids):
            if consumer_id in self.connection.consumers:
                self.connection.unsubscribe(consumer_id)
        self.consumer_ids.clear()
        self.connection.sessions.pop(self.id, None)
