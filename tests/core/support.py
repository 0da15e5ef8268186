"""What the core's tests share: a recording sink, a tick, a broker on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from sealmq.core.broker import Broker
from sealmq.core.clock import FakeClock
from sealmq.core.events import Event
from sealmq.core.model import Destination, Message
from sealmq.core.policy import DestinationPolicy
from sealmq.core.queues import Consumer, Entry
from sealmq.store.memory import MemoryStore

Q = Destination.queue("orders")
DLQ = Destination.queue("ActiveMQ.DLQ")


class Sink:
    """Records what a consumer got, and the end of a browse or of a drain."""

    def __init__(self) -> None:
        self.got: list[Entry] = []
        #: Each delivery's redelivery count as it was delivered (the entry changes later).
        self.counts: list[int] = []
        self.ended = 0
        self.drained = 0

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.got.append(entry)
        self.counts.append(entry.redeliveries)

    def browse_end(self, consumer: Consumer) -> None:
        self.ended += 1

    def drain_done(self, consumer: Consumer) -> None:
        self.drained += 1

    @property
    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.got]

    @property
    def ids(self) -> list[str]:
        return [e.message.message_id for e in self.got]


async def tick() -> None:
    """Let the broker's dispatch step (one ``call_soon`` per tick) and store writes run."""
    for _ in range(3):
        await asyncio.sleep(0)


def msg(broker: Broker, body: bytes, dest: Destination = Q, **kw: object) -> Message:
    return Message(broker.new_message_id(), dest, body, **kw)  # type: ignore[arg-type]


class Recorder:
    """Every event the broker emits, in order."""

    def __init__(self, broker: Broker) -> None:
        self.events: list[Event] = []
        broker.events.subscribe(Event, self.events.append)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest_asyncio.fixture
async def core() -> AsyncIterator[tuple[Broker, FakeClock]]:
    clock = FakeClock()
    broker = Broker(MemoryStore(), policy=DestinationPolicy(maximum_redeliveries=2), clock=clock)
    broker.start()
    yield broker, clock
    await broker.close()
