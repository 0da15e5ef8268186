"""How the core batches its store writes: one record per loop tick, acks without an fsync.

At light load every message is its own batch, so what a batch costs (a record, a hand-off
to the journal's writer thread, an fsync) is paid per message. An ack nobody waits on is
written without an fsync and may wait a little (LAZY_BATCH_SECONDS) for the next batch
that is synced; a confirmation that comes later still waits for every earlier write to be
durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from sealmq.core.broker import LAZY_BATCH_SECONDS, Broker, SubscribeOptions
from sealmq.core.model import Destination, Message
from sealmq.core.ports import Op
from sealmq.core.queues import AckMode, Consumer, Entry
from sealmq.store.memory import MemoryStore

Q = Destination.queue("jobs")


class RecordingStore(MemoryStore):
    """A memory store that remembers each write: its op types and whether it was synced."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[list[str], bool]] = []

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        self.writes.append(([type(op).__name__ for op in ops], sync))
        return super().write(ops, sync=sync)


class Sink:
    def __init__(self) -> None:
        self.got: list[Entry] = []

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.got.append(entry)


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[Broker]:
    core = Broker(RecordingStore())
    core.start()
    # The queue exists already: its creation (an AddDestination) is no part of the tests.
    core._queue(Q.name)
    created = core.pending_write()
    assert created is not None
    await created
    store_of(core).writes.clear()
    yield core
    await core.close()


def store_of(broker: Broker) -> RecordingStore:
    assert isinstance(broker.store, RecordingStore)
    return broker.store


async def tick() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def persistent(broker: Broker, body: bytes) -> Message:
    return Message(broker.new_message_id(), Q, body, persistent=True)


@pytest.mark.asyncio
async def test_an_ack_rides_with_the_next_synced_batch(broker: Broker) -> None:
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    first = conn.send(persistent(broker, b"1"))
    assert first is not None
    await first
    assert conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
    await tick()
    assert store_of(broker).writes == [(["AddMessage"], True)]  # the ack waits for company
    second = conn.send(persistent(broker, b"2"))
    assert second is not None
    await second  # no need to wait for the lazy delay: the send hurried the batch
    assert store_of(broker).writes == [
        (["AddMessage"], True),
        (["RemoveMessage", "AddMessage"], True),
    ]


@pytest.mark.asyncio
async def test_an_ack_alone_is_written_without_fsync_after_the_delay(broker: Broker) -> None:
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    sent = conn.send(persistent(broker, b"1"))
    assert sent is not None
    await sent
    conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
    await asyncio.sleep(LAZY_BATCH_SECONDS * 5)
    assert store_of(broker).writes == [(["AddMessage"], True), (["RemoveMessage"], False)]


@pytest.mark.asyncio
async def test_a_confirmation_after_an_unsynced_write_waits_for_a_synced_one(
    broker: Broker,
) -> None:
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    sent = conn.send(persistent(broker, b"1"))
    assert sent is not None
    await sent
    conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
    await asyncio.sleep(LAZY_BATCH_SECONDS * 5)
    # A receipt for a frame that stored nothing itself (DISCONNECT, UNSUBSCRIBE, ...).
    barrier = broker.pending_write()
    assert barrier is not None
    await barrier
    assert store_of(broker).writes[-1] == ([], True)
    # Once durable, nothing more is needed for the next one.
    assert broker.pending_write() is None


@pytest.mark.asyncio
async def test_a_waited_on_ack_is_synced_in_its_own_tick(broker: Broker) -> None:
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    sent = conn.send(persistent(broker, b"1"))
    assert sent is not None
    await sent
    conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
    waited = broker.pending_write()  # an ACK with a receipt
    assert waited is not None
    await tick()  # written at the end of the tick, not after the lazy delay
    assert store_of(broker).writes[-1] == (["RemoveMessage"], True)
    await waited
