"""Every settlement outcome: accepted, released, modified (with and without
undeliverable-here), rejected, expired, and OpenWire's delivered and redelivered."""

from __future__ import annotations

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.queues import AckMode, Outcome
from sealmq.store.memory import MemoryStore
from tests.core.support import DLQ, Q, Sink, core, msg, tick

__all__ = ["core"]

Core = tuple[Broker, FakeClock]
MANUAL = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=1)


def stored(broker: Broker) -> list[tuple[bytes, list[str]]]:
    assert isinstance(broker.store, MemoryStore)
    return [(s.message.body, s.owners) for s in broker.store.snapshot().messages]


@pytest.mark.asyncio
async def test_accepted_is_done_with(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x", persistent=True))
    await tick()
    assert conn.settle(consumer, sink.ids[0], Outcome.ACCEPTED)
    assert not conn.settle(consumer, sink.ids[0], Outcome.ACCEPTED)  # no longer in flight
    broker.writes.flush()
    await tick()
    assert stored(broker) == []


@pytest.mark.asyncio
async def test_released_goes_back_without_a_redelivery_counted(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    for _ in range(5):  # past the maximum of 2: released never dead-letters
        assert conn.settle(consumer, sink.ids[-1], Outcome.RELEASED)
        await tick()
    assert sink.bodies == [b"x"] * 6
    assert sink.counts == [0] * 6


@pytest.mark.asyncio
async def test_modified_counts_a_redelivery_and_dead_letters_past_the_maximum(
    core: Core,
) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x", persistent=True))
    for _ in range(3):
        await tick()
        assert conn.settle(consumer, sink.ids[-1], Outcome.MODIFIED)
    await tick()
    assert sink.counts == [0, 1, 2]
    dlq = Sink()
    conn.subscribe("d", DLQ, dlq)
    await tick()
    assert dlq.bodies == [b"x"]
    cause = dlq.got[0].message.properties["dlqDeliveryFailureCause"]
    assert cause == "Delivery[3] exceeds redelivery policy limit"


@pytest.mark.asyncio
async def test_nack_keeps_activemqs_stomp_meaning(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    assert conn.nack(consumer, sink.ids[0], cumulative=False, transaction=None)
    await tick()
    assert sink.counts == [0, 1]


@pytest.mark.asyncio
async def test_modified_undeliverable_here_goes_to_another_consumer_only(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    first = Sink()
    consumer = conn.subscribe("first", Q, first, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    assert conn.settle(consumer, first.ids[0], Outcome.MODIFIED, undeliverable_here=True)
    await tick()
    assert first.bodies == [b"x"]  # not again to it
    assert len(broker.queues["orders"]) == 1  # and it blocks nothing
    conn.send(msg(broker, b"y"))
    await tick()
    assert first.bodies == [b"x", b"y"]
    second = Sink()
    conn.subscribe("second", Q, second)
    await tick()
    assert second.bodies == [b"x"]
    assert second.counts == [1]


@pytest.mark.asyncio
async def test_released_undeliverable_here_counts_nothing(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    first, second = Sink(), Sink()
    consumer = conn.subscribe("first", Q, first, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    conn.subscribe("second", Q, second)
    assert conn.settle(consumer, first.ids[0], Outcome.RELEASED, undeliverable_here=True)
    await tick()
    assert second.bodies == [b"x"] and second.counts == [0]


@pytest.mark.asyncio
async def test_rejected_goes_to_the_dead_letter_queue_at_once(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink, dlq = Sink(), Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.subscribe("d", DLQ, dlq)
    conn.send(msg(broker, b"poison", persistent=True))
    await tick()
    assert conn.settle(consumer, sink.ids[0], Outcome.REJECTED)
    await tick()
    assert dlq.bodies == [b"poison"]
    assert dlq.got[0].message.properties["dlqDeliveryFailureCause"] == "Rejected by the consumer"
    assert sink.bodies == [b"poison"]


@pytest.mark.asyncio
async def test_expired_by_the_consumer_is_the_brokers_expiry(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink, dlq = Sink(), Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.subscribe("d", DLQ, dlq)
    conn.send(msg(broker, b"stale", persistent=True))
    await tick()
    assert conn.settle(consumer, sink.ids[0], Outcome.EXPIRED)
    await tick()
    assert dlq.got[0].message.properties["dlqDeliveryFailureCause"] == "Message expired"


@pytest.mark.asyncio
async def test_delivered_opens_the_window_and_stays_in_flight(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"0"))
    conn.send(msg(broker, b"1"))
    await tick()
    assert sink.bodies == [b"0"]
    assert conn.settle(consumer, sink.ids[0], Outcome.DELIVERED)
    await tick()
    assert sink.bodies == [b"0", b"1"]
    assert list(consumer.in_flight) == sink.ids
    assert conn.settle(consumer, sink.ids[1], Outcome.ACCEPTED, cumulative=True)
    assert not consumer.in_flight and not consumer.delivered


@pytest.mark.asyncio
async def test_redelivered_counts_and_stays_in_flight(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    assert conn.settle(consumer, sink.ids[0], Outcome.REDELIVERED)
    assert sink.ids[0] in consumer.in_flight
    conn.unsubscribe("s")
    again = Sink()
    conn.subscribe("t", Q, again)
    await tick()
    assert again.counts == [2]  # the client's own redelivery, then the broker's


@pytest.mark.asyncio
async def test_a_transaction_holds_accepted_until_commit(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x"))
    conn.send(msg(broker, b"y"))
    await tick()
    conn.begin("tx")
    assert conn.settle(consumer, sink.ids[0], Outcome.ACCEPTED, transaction="tx")
    await tick()
    assert sink.bodies == [b"x", b"y"]  # the window opened already
    conn.abort("tx")
    await tick()
    assert conn.settle(consumer, sink.ids[1], Outcome.ACCEPTED)
    await tick()
    assert sink.bodies == [b"x", b"y", b"x"]
    assert sink.counts[-1] == 1
