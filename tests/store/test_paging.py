"""Paging over the file store: what a queue does not keep in memory is read back from
the encrypted journal, in send order, after a restart too (``docs/core.md``)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.model import queue_key
from sealmq.core.policy import DestinationPolicy
from sealmq.core.ports import AddMessage, Op, RecoveredState, RemoveMessage, SetDeliveryCount
from sealmq.core.queues import ENTRY_OVERHEAD, AckMode
from sealmq.store.filestore import FileStore
from tests.core.support import Q, Sink, msg
from tests.core.test_paging import BODY, AckingSink, body, indexes, until
from tests.store.conftest import FakeKeyProvider, make_message
from tests.store.test_golden import open_copy

LIMIT = 20 * (BODY + ENTRY_OVERHEAD)
COUNT = 300


def file_broker(root: Path, keys: FakeKeyProvider) -> Broker:
    policy = DestinationPolicy(memory_limit=LIMIT, maximum_redeliveries=5)
    # Small segments: the backlog spans several, so reads follow records across them.
    broker = Broker(FileStore(root, keys, "b-1", segment_size=64 * 1024), policy=policy)
    broker.start()
    return broker


async def send_all(broker: Broker, count: int) -> None:
    conn = broker.connect()
    last = None
    for i in range(count):
        last = conn.send(msg(broker, body(i), persistent=True))
    assert last is not None
    await last


@pytest.mark.asyncio
async def test_a_backlog_is_read_back_from_the_journal_in_order(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = file_broker(tmp_path, keys)
    try:
        await send_all(broker, COUNT)
        queue = broker.queues["orders"]
        assert queue.memory <= LIMIT and len(queue.paged) >= COUNT - 20
        sink = AckingSink(broker)
        opts = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=7)
        broker.connect().subscribe("c", Q, sink, opts)
        await until(lambda: len(sink.got) == COUNT, "every message")
        assert indexes(sink) == list(range(COUNT))
        assert sink.max_memory <= LIMIT
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_restart_pages_in_the_backlog_with_its_delivery_counts(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = file_broker(tmp_path, keys)
    await send_all(broker, COUNT)
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe(
        "c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=1)
    )
    await until(lambda: len(sink.got) == 1, "the first delivery")
    for _ in range(2):
        conn.nack(consumer, sink.ids[-1], cumulative=False, transaction=None)
        seen = len(sink.got)
        await until(lambda: len(sink.got) > seen, "the redelivery")  # noqa: B023
    pending = broker.pending_write()
    if pending is not None:
        await pending
    # A crash: the store goes away without the broker closing anything.
    await broker.pager.close()
    await broker.store.close()

    broker = file_broker(tmp_path, keys)
    try:
        queue = broker.queues["orders"]
        assert len(queue) == COUNT
        await until(lambda: not queue.paging, "the first window")
        assert queue.memory <= LIMIT and queue.paged
        sink = AckingSink(broker)
        opts = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=5)
        broker.connect().subscribe("c", Q, sink, opts)
        await until(lambda: len(sink.got) == COUNT, "every message")
        assert indexes(sink) == list(range(COUNT))
        assert sink.counts[0] == 2 and set(sink.counts[1:]) == {0}
    finally:
        await broker.close()


# -- recovery without bodies ----------------------------------------------------------------


def as_refs(state: RecoveredState) -> list[tuple[str, list[str], dict[str, int], int]]:
    return [
        (s.message.message_id, s.owners, s.delivery_counts, len(s.message.body))
        for s in state.messages
    ]


def refs_of(state: RecoveredState) -> list[tuple[str, list[str], dict[str, int], int]]:
    return [(r.message_id, list(r.owners), r.delivery_counts or {}, r.size) for r in state.refs]


def same_except_messages(full: RecoveredState, light: RecoveredState) -> None:
    light.refs = list(light.refs)  # an iterator: read it once
    assert light.messages == []
    assert refs_of(light) == as_refs(full)
    assert light.subscriptions == full.subscriptions
    assert [m.message_id for m in light.retained] == [m.message_id for m in full.retained]
    assert light.sessions == full.sessions and light.destinations == full.destinations
    assert [j.job_id for j in light.scheduled] == [j.job_id for j in full.scheduled]
    assert list(light.prepared) == list(full.prepared)


@pytest.mark.asyncio
@pytest.mark.parametrize("golden", ["golden", "golden-mqtt", "chain"])
async def test_recovery_without_bodies_matches_on_committed_journals(
    tmp_path: Path, golden: str
) -> None:
    full_store = open_copy(tmp_path / "full", golden=golden)
    full = full_store.recover()
    await full_store.close()
    light_store = open_copy(tmp_path / "light", golden=golden)
    light = light_store.recover(bodies=False)
    await light_store.close()
    assert full.messages or golden == "golden-mqtt", "the fixture holds messages"
    same_except_messages(full, light)


@pytest.mark.asyncio
async def test_recovery_without_bodies_keeps_send_order_counts_and_owners_after_compaction(
    tmp_path: Path,
) -> None:
    keys = FakeKeyProvider()
    store = FileStore(tmp_path / "data", keys, "b-1", segment_size=8 * 1024)
    store.recover()
    a, b = queue_key("a"), queue_key("b")
    for i in range(60):
        owners = (a, b) if i % 3 else (a,)
        await store.write([AddMessage(make_message(i, body=bytes(500 + i)), owners)])
    ops: list[Op] = [RemoveMessage(f"ID:test-{i}", a) for i in range(0, 60, 2)]
    ops += [SetDeliveryCount("ID:test-5", b, 3), SetDeliveryCount("ID:test-7", a, 1)]
    await store.write(ops)
    moved = await store.compact()
    assert moved, "compaction moved older messages forward"
    await store.write([AddMessage(make_message(99), (b,))])
    await store.close()

    full_store = FileStore(tmp_path / "data", keys, "b-1", segment_size=8 * 1024)
    full = full_store.recover()
    await full_store.close()
    light_store = FileStore(tmp_path / "data", keys, "b-1", segment_size=8 * 1024)
    light = light_store.recover(bodies=False)
    await light_store.close()
    same_except_messages(full, light)
    ids = [r.message_id for r in light.refs]
    assert ids[-1] == "ID:test-99" and ids[0] == "ID:test-1"
    assert dict((r.message_id, r.delivery_counts) for r in light.refs)["ID:test-5"] == {b: 3}


async def recovery_peak(root: Path, body_size: int, count: int) -> int:
    """Bytes tracemalloc sees at most while recovering ``count`` messages of ``body_size``
    without bodies."""
    keys = FakeKeyProvider()
    store = FileStore(root, keys, "b-1")
    store.recover()
    owner = (queue_key("q"),)
    for start in range(0, count, 100):
        batch = [
            AddMessage(make_message(i, body=bytes(body_size)), owner)
            for i in range(start, start + 100)
        ]
        await store.write(batch[:50])
        await store.write(batch[50:])
    await store.close()
    reopened = FileStore(root, keys, "b-1")
    tracemalloc.start()
    try:
        state = reopened.recover(bodies=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await reopened.close()
    assert sum(1 for _ in state.refs) == count
    return peak


@pytest.mark.asyncio
async def test_recovery_memory_does_not_grow_with_the_bodies(tmp_path: Path) -> None:
    small = await recovery_peak(tmp_path / "small", 100, 2000)
    large = await recovery_peak(tmp_path / "large", 16 * 1024, 2000)
    # 31 MiB more of bodies; what recovery holds beyond them is one record (50 bodies) at
    # a time, decrypted, so the peaks differ by about that.
    assert large - small < 2 * 1024 * 1024, (small, large)
