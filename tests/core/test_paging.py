"""Paging: a queue keeps only its memory limit's worth of messages in memory and reads
the rest back from the store, off the event loop, in send order (``docs/core.md``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.model import Destination, Message
from sealmq.core.policy import DestinationPolicy, PolicyEntry, PolicyMap
from sealmq.core.queues import ENTRY_OVERHEAD, AckMode, Consumer, MessageQueue
from sealmq.store.memory import MemoryStore
from tests.core.support import DLQ, Q, Sink, msg, tick

BODY = 1000
#: A window of about ten 1000-byte messages.
LIMIT = 10 * (BODY + ENTRY_OVERHEAD)
TIMEOUT = 10.0


def paging_broker(store: MemoryStore | None = None, **policy: object) -> Broker:
    settings = {"memory_limit": LIMIT, "maximum_redeliveries": 2, **policy}
    return Broker(
        store or MemoryStore(),
        policy=DestinationPolicy(**settings),  # type: ignore[arg-type]
        clock=FakeClock(),
    )


def body(i: int) -> bytes:
    return f"{i:06d}".encode().ljust(BODY, b".")


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Let the loop run (dispatch ticks, page-ins on the reading thread) until
    ``predicate`` holds; fail after TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def send(broker: Broker, count: int, start: int = 0, **kw: object) -> None:
    conn = broker.connect()
    for i in range(start, start + count):
        conn.send(msg(broker, body(i), persistent=True, **kw))


class AckingSink(Sink):
    """Acknowledges each delivery as it comes, as a client would."""

    def __init__(self, broker: Broker, queue_name: str = "orders") -> None:
        super().__init__()
        self.broker = broker
        self.queue_name = queue_name
        self.max_memory = 0

    def deliver(self, consumer: Consumer, entry: object) -> None:
        super().deliver(consumer, entry)  # type: ignore[arg-type]
        queue = consumer.queue
        assert queue is not None
        self.max_memory = max(self.max_memory, queue.memory)
        asyncio.get_running_loop().call_soon(self._ack, consumer, self.ids[-1])

    def _ack(self, consumer: Consumer, message_id: str) -> None:
        connection = self.broker.connections[next(iter(self.broker.connections))]
        for conn in self.broker.connections.values():
            if consumer.id in conn.consumers and conn.consumers[consumer.id] is consumer:
                connection = conn
        connection.ack(consumer, message_id, cumulative=False, transaction=None)


def indexes(sink: Sink) -> list[int]:
    return [int(b[:6]) for b in sink.bodies]


@pytest.mark.asyncio
async def test_a_queue_past_its_limit_keeps_the_rest_in_the_store_and_drains_in_order() -> None:
    broker = paging_broker()
    broker.start()
    send(broker, 200)
    await tick()
    queue = broker.queues["orders"]
    assert len(queue) == 200
    assert queue.memory <= LIMIT
    assert len(queue.paged) == 200 - queue.memory // (BODY + ENTRY_OVERHEAD)
    conn = broker.connect()
    sink = AckingSink(broker)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=5))
    await until(lambda: len(sink.got) == 200, "every message")
    assert indexes(sink) == list(range(200))
    assert sink.max_memory <= LIMIT
    await until(lambda: len(queue) == 0, "the queue to empty")
    assert broker.pager.paged_in >= 190
    await broker.close()


@pytest.mark.asyncio
async def test_messages_sent_while_paging_keep_their_order() -> None:
    broker = paging_broker()
    broker.start()
    send(broker, 50)
    conn = broker.connect()
    sink = AckingSink(broker)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=3))
    await until(lambda: len(sink.got) >= 20, "a first part")
    send(broker, 50, start=50)
    await until(lambda: len(sink.got) == 100, "every message")
    assert indexes(sink) == list(range(100))
    await broker.close()


@pytest.mark.asyncio
async def test_a_queue_under_its_limit_pages_nothing() -> None:
    broker = paging_broker()
    broker.start()
    send(broker, 5)
    queue = broker.queues["orders"]
    assert not queue.paged and queue.memory == 5 * (BODY + ENTRY_OVERHEAD)
    await broker.close()


@pytest.mark.asyncio
async def test_non_persistent_messages_are_never_paged() -> None:
    broker = paging_broker()
    broker.start()
    conn = broker.connect()
    for i in range(30):
        conn.send(msg(broker, body(i)))
    queue = broker.queues["orders"]
    assert not queue.paged
    assert queue.memory == 30 * (BODY + ENTRY_OVERHEAD)  # past the limit: see docs/core.md
    await broker.close()


@pytest.mark.asyncio
async def test_priority_applies_inside_the_window() -> None:
    broker = paging_broker(memory_limit=100 * (BODY + ENTRY_OVERHEAD))
    broker.start()
    conn = broker.connect()
    for i in range(10):
        conn.send(msg(broker, body(i), persistent=True, priority=1 if i < 5 else 9))
    sink = AckingSink(broker)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=1))
    await until(lambda: len(sink.got) == 10, "every message")
    assert indexes(sink) == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    await broker.close()


class GatedStore(MemoryStore):
    """A store whose reads wait until the test opens the gate, on the reading thread."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.reading = threading.Event()
        self.read_threads: set[str] = set()

    def read_messages(self, message_ids: Sequence[str]) -> list[Message]:
        self.read_threads.add(threading.current_thread().name)
        self.reading.set()
        assert self.gate.wait(TIMEOUT)
        return super().read_messages(message_ids)


@pytest.mark.asyncio
async def test_paging_in_runs_off_the_loop_and_never_holds_up_dispatch() -> None:
    store = GatedStore()
    broker = paging_broker(store)
    broker.start()
    send(broker, 40)
    conn = broker.connect()
    sink = AckingSink(broker)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=2))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, store.reading.wait, TIMEOUT)
    # The read is blocked; what is in memory still flows, and a non-persistent message too.
    conn.send(msg(broker, b"fast"))
    await until(lambda: b"fast" in sink.bodies, "the in-memory message")
    store.gate.set()
    await until(lambda: len(sink.got) == 41, "every message")
    assert [int(b[:6]) for b in sink.bodies if b != b"fast"] == list(range(40))
    assert threading.main_thread().name not in store.read_threads
    assert all(name.startswith("sealmq-page") for name in store.read_threads)
    await broker.close()


@pytest.mark.asyncio
async def test_paged_messages_are_redelivered_and_dead_lettered_like_others() -> None:
    broker = paging_broker()
    broker.start()
    send(broker, 30)
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe(
        "c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=1)
    )
    # Nack everything three times (maximum_redeliveries 2): all go to the DLQ, in order.
    await until(lambda: len(sink.got) == 1, "a delivery")
    while len(sink.got) < 90:
        conn.nack(consumer, sink.ids[-1], cumulative=False, transaction=None)
        seen = len(sink.got)
        await until(lambda: len(sink.got) > seen, "the next delivery")  # noqa: B023
    conn.nack(consumer, sink.ids[-1], cumulative=False, transaction=None)
    first = [int(b[:6]) for b, c in zip(sink.bodies, sink.counts, strict=True) if c == 0]
    assert first == list(range(30))
    dlq = AckingSink(broker, "ActiveMQ.DLQ")
    conn.subscribe("d", DLQ, dlq, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=4))
    await until(lambda: len(dlq.got) == 30, "the dead letters")
    assert indexes(dlq) == list(range(30))
    await broker.close()


@pytest.mark.asyncio
async def test_a_paged_message_expired_when_read_back_is_expired_not_delivered() -> None:
    broker = paging_broker()
    clock = broker.clock
    assert isinstance(clock, FakeClock)
    broker.start()
    conn = broker.connect()
    for i in range(30):
        expiration = clock.now_ms() + 1000 if i % 2 else 0
        conn.send(msg(broker, body(i), persistent=True, expiration=expiration))
    clock.advance(2.0)
    sink = AckingSink(broker)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=3))
    await until(lambda: len(sink.got) == 15, "the live messages")
    assert indexes(sink) == list(range(0, 30, 2))
    dlq = AckingSink(broker, "ActiveMQ.DLQ")
    conn.subscribe("d", DLQ, dlq, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=4))
    await until(lambda: len(dlq.got) == 15, "the expired ones in the DLQ")
    assert sorted(indexes(dlq)) == list(range(1, 30, 2))
    await broker.close()


@pytest.mark.asyncio
async def test_groups_and_filters_work_on_paged_messages() -> None:
    broker = paging_broker()
    broker.start()
    conn = broker.connect()
    for i in range(40):
        conn.send(msg(broker, body(i), persistent=True, group_id="g1" if i % 2 else "g0"))
    evens, odds = AckingSink(broker), AckingSink(broker)
    opts = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=2)
    conn.subscribe("a", Q, evens, opts)
    conn.subscribe("b", Q, odds, opts)
    await until(lambda: len(evens.got) + len(odds.got) == 40, "every message")
    # Each group stays with one consumer, in order.
    by_group = {}
    for sink in (evens, odds):
        for m in sink.got:
            by_group.setdefault(m.message.group_id, set()).add(id(sink))
    assert all(len(owners) == 1 for owners in by_group.values())
    got = sorted(indexes(evens) + indexes(odds))
    assert got == list(range(40))
    for sink in (evens, odds):
        assert indexes(sink) == sorted(indexes(sink))
    filtered = paging_broker()
    filtered.start()
    send(filtered, 40)
    c2 = filtered.connect()
    picky = AckingSink(filtered)
    want = SubscribeOptions(
        ack_mode=AckMode.INDIVIDUAL, prefetch=2, filter=lambda m: int(m.body[:6]) % 3 == 0
    )
    c2.subscribe("p", Q, picky, want)
    await until(lambda: len(picky.got) == 14, "the matching messages")
    assert indexes(picky) == list(range(0, 40, 3))
    await filtered.close()
    await broker.close()


@pytest.mark.asyncio
async def test_the_memory_limit_comes_from_the_destinations_policy() -> None:
    policies = PolicyMap(
        DestinationPolicy(),
        [PolicyEntry.of(Destination.queue("small.>"), memory_limit=LIMIT)],
    )
    broker = Broker(MemoryStore(), policies=policies, clock=FakeClock())
    broker.start()
    conn = broker.connect()
    for name in ("small.a", "big"):
        for i in range(30):
            conn.send(msg(broker, body(i), Destination.queue(name), persistent=True))
    small, big = broker.queues["small.a"], broker.queues["big"]
    assert small.memory_limit == LIMIT and small.paged
    assert big.memory_limit == DestinationPolicy().memory_limit and not big.paged
    await broker.close()


@pytest.mark.asyncio
async def test_a_restart_pages_the_backlog_in_from_the_store() -> None:
    store = MemoryStore()
    first = paging_broker(store)
    first.start()
    send(first, 100)
    await tick()
    # A second broker over what the first stored (a MemoryStore recovers its snapshot).
    second = paging_broker(store)
    second.start()
    queue = second.queues["orders"]
    assert len(queue) == 100 and queue.memory <= LIMIT
    conn = second.connect()
    sink = AckingSink(second)
    conn.subscribe("c", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=4))
    await until(lambda: len(sink.got) == 100, "every message")
    assert indexes(sink) == list(range(100))
    await second.close()


@pytest.mark.asyncio
async def test_removing_a_durable_subscription_forgets_its_paged_messages() -> None:
    broker = paging_broker()
    broker.start()
    conn = broker.connect(client_id="app")
    topic = Destination.topic("prices")
    consumer = conn.subscribe("d", topic, Sink(), SubscribeOptions(durable_name="dur", prefetch=1))
    conn.unsubscribe("d")
    assert consumer.queue is not None
    queue: MessageQueue = consumer.queue
    for i in range(40):
        conn.send(msg(broker, body(i), topic, persistent=True))
    assert queue.paged
    broker.remove_durable("app", "dur")
    assert not queue.paged and queue.memory == 0
    await broker.pager.idle()
    assert isinstance(broker.store, MemoryStore)
    assert broker.store.snapshot().messages == []
    await broker.close()
