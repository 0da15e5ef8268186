"""Consumers and the entries they receive: credit, filters, settlement outcomes.

A :class:`Consumer` is one subscription of one connection as its queue sees it
(``queues.py`` decides who gets what); an :class:`Entry` is one message in one
queue, with that queue's redelivery count; :class:`Outcome` is how a consumer
settles a delivery (``docs/core.md`` maps every protocol's acks onto it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from sealmq.core.model import Message

if TYPE_CHECKING:
    from sealmq.core.queues import MessageQueue

__all__ = [
    "AckMode",
    "Consumer",
    "DeliverySink",
    "Entry",
    "MessageFilter",
    "Outcome",
]

#: A consumer's filter: whether it wants the message (selectors compile to one later).
MessageFilter = Callable[[Message], bool]


class AckMode(Enum):
    AUTO = "auto"  # acknowledged as soon as it is handed to the connection
    CLIENT = "client"  # cumulative: an ack covers every earlier delivery too
    INDIVIDUAL = "client-individual"


class Outcome(Enum):
    """How a consumer settles a delivery. The first four are AMQP's outcomes; the rest
    are OpenWire's acknowledgement kinds that are not one of those (``docs/core.md``)."""

    #: Consumed: the message is done with (STOMP/MQTT ack, AMQP accepted, OpenWire standard).
    ACCEPTED = "accepted"
    #: Back to the queue as it was, no redelivery counted (AMQP released).
    RELEASED = "released"
    #: Delivery failed: back to the queue with a redelivery counted, to the dead-letter
    #: queue past the policy's maximum (STOMP NACK, AMQP modified with delivery-failed).
    MODIFIED = "modified"
    #: Unprocessable: to the dead-letter queue now (AMQP rejected, OpenWire poison).
    REJECTED = "rejected"
    #: The consumer found it expired: handled as the broker's own expiry (OpenWire expired).
    EXPIRED = "expired"
    #: Handed to the application, not settled yet: the message stops counting against
    #: the prefetch window and stays in flight (OpenWire delivered).
    DELIVERED = "delivered"
    #: The client redelivered it itself: a redelivery is counted and it stays in flight
    #: (OpenWire redelivered).
    REDELIVERED = "redelivered"


class Entry:
    """A message waiting in (or delivered from) one queue, with that queue's redelivery count."""

    __slots__ = ("excluded", "message", "queue", "redeliveries", "retained", "seq", "ticket")

    def __init__(
        self,
        message: Message,
        queue: MessageQueue,
        redeliveries: int = 0,
        *,
        retained: bool = False,
    ) -> None:
        self.message = message
        self.queue = queue
        self.redeliveries = redeliveries
        #: Delivered from the topic's retained message when the subscription was made.
        self.retained = retained
        #: Order of arrival in its queue: held entries go back in this order.
        self.seq = 0
        #: Set while the entry is held; each place holding it keeps the same ticket, so a
        #: stale place (the entry went elsewhere) is recognised and skipped.
        self.ticket: object | None = None
        #: Consumers it must not go to again (settled modified with undeliverable_here).
        self.excluded: set[Consumer] | None = None


class DeliverySink(Protocol):
    """The adapter side of a consumer: turns a delivery into protocol frames.

    ``deliver`` runs in the dispatch tick and may call back into the core (an ack,
    an unsubscribe): that only wakes the queue again, it never re-enters dispatch.
    """

    def deliver(self, consumer: Consumer, entry: Entry) -> None: ...


class Consumer:
    """One subscription of one connection: its credit, filter, in-flight entries.

    Credit is a prefetch window (``prefetch`` > 0: at most that many unsettled
    deliveries) or, with ``prefetch`` 0, explicit credit the client grants
    (:meth:`MessageQueue.pull`, AMQP link credit), one used per delivery.
    """

    __slots__ = (
        "_cursor",
        "_waiting",
        "ack_mode",
        "browser",
        "closed",
        "connection_id",
        "credit",
        "delivered",
        "draining",
        "exclusive",
        "filter",
        "id",
        "in_flight",
        "no_local",
        "on_browse_end",
        "on_drained",
        "paused",
        "prefetch",
        "priority",
        "queue",
        "sink",
        "tag",
    )

    def __init__(
        self,
        consumer_id: str,
        connection_id: str,
        sink: DeliverySink,
        *,
        tag: object = None,
        ack_mode: AckMode = AckMode.AUTO,
        prefetch: int = 1000,
        no_local: bool = False,
        filter: MessageFilter | None = None,
        priority: int = 0,
        exclusive: bool = False,
        browser: bool = False,
        on_drained: Callable[[Consumer], None] | None = None,
        on_browse_end: Callable[[Consumer], None] | None = None,
    ) -> None:
        self.id = consumer_id
        self.connection_id = connection_id
        self.sink = sink
        #: Opaque value the adapter keeps here (its subscription object).
        self.tag = tag
        self.ack_mode = AckMode.AUTO if browser else ack_mode
        #: Window of unsettled deliveries; 0: pull, only what ``credit`` allows.
        self.prefetch = max(0, prefetch)
        self.credit = 0
        self.draining = False
        self.no_local = no_local
        self.filter = filter
        #: Higher-priority consumers are served first while they have credit (ActiveMQ's
        #: ``consumer.priority``).
        self.priority = priority
        self.exclusive = exclusive
        self.browser = browser
        self.on_drained = on_drained
        self.on_browse_end = on_browse_end
        self.in_flight: OrderedDict[str, Entry] = OrderedDict()
        #: Ids of in-flight entries settled ``DELIVERED``: outside the window.
        self.delivered: set[str] = set()
        self.queue: MessageQueue | None = None
        #: Set by the adapter while its transport cannot take more bytes.
        self.paused = False
        self.closed = False
        #: Entries held for this consumer until it has credit, with their tickets.
        self._waiting: deque[tuple[object, Entry]] = deque()
        #: A browser's walk over the queue; None once ended.
        self._cursor: Iterator[Entry] | None = None

    @property
    def has_credit(self) -> bool:
        # A closed consumer is never asked: its queue forgot it.
        if self.paused:
            return False
        prefetch = self.prefetch
        if prefetch == 0:
            return self.credit > 0
        if self.delivered:
            return len(self.in_flight) - len(self.delivered) < prefetch
        return len(self.in_flight) < prefetch

    def accepts(self, entry: Entry) -> bool:
        excluded = entry.excluded
        if excluded is not None and self in excluded:
            return False
        return self.filter is None or self.filter(entry.message)

    def take(self, message_ids: list[str]) -> list[Entry]:
        """Remove and return the in-flight entries named; unknown ids are ignored."""
        taken = []
        for message_id in message_ids:
            entry = self.in_flight.pop(message_id, None)
            if entry is not None:
                self.delivered.discard(message_id)
                taken.append(entry)
        return taken

    def take_through(self, message_id: str) -> list[Entry]:
        """Cumulative ack: every in-flight entry up to and including ``message_id``."""
        if message_id not in self.in_flight:
            return []
        taken = []
        while self.in_flight:
            key, entry = self.in_flight.popitem(last=False)
            self.delivered.discard(key)
            taken.append(entry)
            if key == message_id:
                break
        return taken
