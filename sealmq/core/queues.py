"""Message queues and the consumers they dispatch to.

One :class:`MessageQueue` serves a queue destination (competing consumers),
a durable topic subscription, or a non-durable topic subscription: the three
differ only in who may consume and whether the store holds their messages.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from enum import Enum
from typing import Protocol

from sealmq.core.model import Message

__all__ = [
    "AckMode",
    "Consumer",
    "DeliverySink",
    "Entry",
    "MessageQueue",
    "QueueHost",
]

PRIORITIES = 10


class AckMode(Enum):
    AUTO = "auto"  # acknowledged as soon as it is handed to the connection
    CLIENT = "client"  # cumulative: an ack covers every earlier delivery too
    INDIVIDUAL = "client-individual"


class Entry:
    """A message waiting in (or delivered from) one queue, with that queue's redelivery count."""

    __slots__ = ("message", "queue", "redeliveries", "retained")

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


class DeliverySink(Protocol):
    """The adapter side of a consumer: turns a delivery into protocol frames."""

    def deliver(self, consumer: Consumer, entry: Entry) -> None: ...


class QueueHost(Protocol):
    """What a queue reports back to the broker that owns it."""

    def entry_expired(self, entry: Entry) -> None:
        """``entry`` was found expired and has left its queue."""
        ...

    def entry_consumed(self, entry: Entry) -> None:
        """``entry`` was delivered to an auto-ack consumer: it is done with."""
        ...


class Consumer:
    """One subscription of one connection, with its prefetch window and in-flight entries."""

    __slots__ = (
        "ack_mode",
        "closed",
        "connection_id",
        "id",
        "in_flight",
        "no_local",
        "paused",
        "prefetch",
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
    ) -> None:
        self.id = consumer_id
        self.connection_id = connection_id
        self.sink = sink
        #: Opaque value the adapter keeps here (its subscription object).
        self.tag = tag
        self.ack_mode = ack_mode
        self.prefetch = max(1, prefetch)
        self.no_local = no_local
        self.in_flight: OrderedDict[str, Entry] = OrderedDict()
        self.queue: MessageQueue | None = None
        #: Set by the adapter while its transport cannot take more bytes.
        self.paused = False
        self.closed = False

    @property
    def has_credit(self) -> bool:
        return not self.paused and len(self.in_flight) < self.prefetch

    def take(self, message_ids: list[str]) -> list[Entry]:
        """Remove and return the in-flight entries named; unknown ids are ignored."""
        taken = []
        for message_id in message_ids:
            entry = self.in_flight.pop(message_id, None)
            if entry is not None:
                taken.append(entry)
        return taken

    def take_through(self, message_id: str) -> list[Entry]:
        """Cumulative ack: every in-flight entry up to and including ``message_id``."""
        if message_id not in self.in_flight:
            return []
        taken = []
        while self.in_flight:
            key, entry = self.in_flight.popitem(last=False)
            taken.append(entry)
            if key == message_id:
                break
        return taken


class MessageQueue:
    """Pending messages by priority, dispatched round-robin to consumers with credit."""

    __slots__ = (
        "_buckets",
        "_count",
        "_rr",
        "consumers",
        "durable",
        "exclusive",
        "groups",
        "host",
        "name",
        "owner",
    )

    def __init__(
        self,
        name: str,
        owner: str | None,
        host: QueueHost,
        *,
        exclusive: bool = False,
        durable: bool = False,
    ) -> None:
        self.name = name
        #: Store owner key, or None when nothing this queue holds is persisted.
        self.owner = owner
        self.host = host
        #: One consumer at most (topic subscriptions).
        self.exclusive = exclusive
        self.durable = durable
        self.consumers: list[Consumer] = []
        #: Message group id -> the consumer that owns the group (JMSXGroupID).
        self.groups: dict[str, Consumer] = {}
        self._buckets: list[deque[Entry]] = [deque() for _ in range(PRIORITIES)]
        self._count = 0
        self._rr = 0

    def __len__(self) -> int:
        return self._count

    def entries(self) -> Iterator[Entry]:
        for bucket in reversed(self._buckets):
            yield from bucket

    def enqueue(self, entry: Entry) -> None:
        self._buckets[_bucket(entry.message.priority)].append(entry)
        self._count += 1

    def requeue_front(self, entries: list[Entry]) -> None:
        """Put entries back ahead of everything of their priority, keeping their order."""
        for entry in reversed(entries):
            self._buckets[_bucket(entry.message.priority)].appendleft(entry)
            self._count += 1

    def drain(self) -> list[Entry]:
        taken = list(self.entries())
        for bucket in self._buckets:
            bucket.clear()
        self._count = 0
        return taken

    def remove_expired(self, now_ms: int) -> None:
        for bucket in self._buckets:
            if not bucket:
                continue
            alive = deque(e for e in bucket if not e.message.expired(now_ms))
            if len(alive) != len(bucket):
                for entry in bucket:
                    if entry.message.expired(now_ms):
                        self._count -= 1
                        self.host.entry_expired(entry)
                bucket.clear()
                bucket.extend(alive)

    def dispatch(self, now_ms: int) -> None:
        """Hand pending entries to consumers while any has credit."""
        if not self._count or not self.consumers:
            return
        buckets = self._buckets
        groups = self.groups
        while self._count:
            # Highest priority first.
            for bucket in reversed(buckets):
                if bucket:
                    break
            entry = bucket[0]
            message = entry.message
            if message.expiration and message.expired(now_ms):
                bucket.popleft()
                self._count -= 1
                self.host.entry_expired(entry)
                continue
            group = message.group_id
            if group is None:
                consumer = self._next_consumer()
                if consumer is None:
                    return
            else:
                # Message groups: one consumer owns a group while it lives. A message of
                # a group whose owner has no credit waits, and so does what is behind it.
                owner = groups.get(group)
                if owner is None or owner.closed:
                    owner = self._next_consumer()
                    if owner is None:
                        return
                    groups[group] = owner
                elif not owner.has_credit:
                    return
                consumer = owner
            bucket.popleft()
            self._count -= 1
            if consumer.ack_mode is AckMode.AUTO:
                consumer.sink.deliver(consumer, entry)
                self.host.entry_consumed(entry)
            else:
                consumer.in_flight[message.message_id] = entry
                consumer.sink.deliver(consumer, entry)

    def forget_consumer(self, consumer: Consumer) -> None:
        """``consumer`` left: its message groups go to whoever gets their next message."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if self.groups:
            for group in [g for g, owner in self.groups.items() if owner is consumer]:
                del self.groups[group]

    def _next_consumer(self) -> Consumer | None:
        consumers = self.consumers
        n = len(consumers)
        if n == 1:
            only = consumers[0]
            return only if only.has_credit else None
        for i in range(n):
            candidate = consumers[(self._rr + i) % n]
            if candidate.has_credit:
                self._rr = (self._rr + i + 1) % n
                return candidate
        return None


def _bucket(priority: int) -> int:
    if priority < 0:
        return 0
    if priority >= PRIORITIES:
        return PRIORITIES - 1
    return priority
