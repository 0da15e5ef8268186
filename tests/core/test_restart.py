"""What the core stamps on a message, and what it keeps across a restart of its store:
delivery counts of redelivered messages and the queues it made (empty ones too)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.model import Destination, Message
from sealmq.core.ports import Op
from sealmq.core.queues import AckMode, Consumer, Entry
from sealmq.core.security import Principal
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.core.support import tick
from tests.store.conftest import FakeKeyProvider

Q = Destination.queue("orders")


class Sink:
    def __init__(self) -> None:
        self.got: list[Entry] = []

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.got.append(entry)


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        self.ops.extend(type(op).__name__ for op in ops)
        return super().write(ops, sync=sync)


def message(body: bytes, **kw: object) -> Message:
    kw.setdefault("message_id", "")
    return Message(destination=Q, body=body, persistent=True, **kw)  # type: ignore[arg-type]


async def settle(broker: Broker) -> None:
    """Every write queued so far is done (unsynced ones too)."""
    pending = broker.pending_write()
    if pending is not None:
        await pending


@pytest.mark.asyncio
async def test_the_core_stamps_id_time_and_user() -> None:
    broker = Broker(MemoryStore(), clock=FakeClock(now_ms=1234))
    broker.start()
    try:
        conn = broker.connect(principal=Principal("alice"))
        sink = Sink()
        conn.subscribe("c", Q, sink)
        forged = message(b"1", message_id="ID:forged", user_id="mallory")
        conn.send(forged)
        conn.send(message(b"2", timestamp=99))  # a producer's own timestamp is kept
        anonymous = broker.connect()
        anonymous.send(message(b"3", user_id="mallory"))
        await tick()
        first, second, third = (e.message for e in sink.got)
        assert first.message_id.startswith("ID:") and first.message_id != "ID:forged"
        assert len({first.message_id, second.message_id, third.message_id}) == 3
        assert (first.timestamp, second.timestamp) == (1234, 99)
        assert (first.user_id, second.user_id, third.user_id) == ("alice", "alice", None)
        conn.begin("tx")
        conn.send(message(b"4"), "tx")
        conn.commit("tx")
        await tick()
        assert sink.got[-1].message.user_id == "alice" and sink.got[-1].message.message_id
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_first_delivery_writes_no_delivery_count() -> None:
    store = RecordingStore()
    broker = Broker(store)
    broker.start()
    try:
        conn = broker.connect()
        sink = Sink()
        consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
        conn.send(message(b"1"))
        await tick()
        await settle(broker)
        assert "SetDeliveryCount" not in store.ops
        conn.nack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
        await tick()
        await settle(broker)
        assert store.ops.count("SetDeliveryCount") == 1
        assert sink.got[1].redeliveries == 1
    finally:
        await broker.close()


async def file_broker(root: Path, keys: FakeKeyProvider) -> Broker:
    broker = Broker(FileStore(root, keys, "b-1"))
    broker.start()
    await broker.ready()  # the recovered messages are paged in
    return broker


@pytest.mark.asyncio
async def test_delivery_counts_and_empty_queues_survive_a_crash(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = await file_broker(tmp_path, keys)
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    sent = conn.send(message(b"poison"))
    assert sent is not None
    await sent
    for _ in range(2):
        await tick()
        conn.nack(consumer, sink.got[-1].message.message_id, cumulative=False, transaction=None)
    empty = broker.connect()
    empty.subscribe("e", Destination.queue("empty.one"), Sink())
    await settle(broker)
    # A crash: the store goes away without the broker closing anything.
    await broker.store.close()

    broker = await file_broker(tmp_path, keys)
    try:
        assert {"orders", "empty.one"} <= set(broker.queues)
        assert len(broker.queues["empty.one"]) == 0
        sink = Sink()
        broker.connect().subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
        await tick()
        assert [(e.message.body, e.redeliveries) for e in sink.got] == [(b"poison", 2)]
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_clean_close_counts_the_unacked_delivery_too(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = await file_broker(tmp_path, keys)
    conn = broker.connect()
    conn.subscribe("c", Q, Sink(), SubscribeOptions(ack_mode=AckMode.CLIENT))
    sent = conn.send(message(b"held"))
    assert sent is not None
    await sent
    await tick()
    await broker.close()  # the delivery ends unacknowledged: counted

    broker = await file_broker(tmp_path, keys)
    try:
        sink = Sink()
        broker.connect().subscribe("c", Q, sink)
        await tick()
        assert [(e.message.body, e.redeliveries) for e in sink.got] == [(b"held", 1)]
    finally:
        await broker.close()
