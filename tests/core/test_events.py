"""The core's event bus: what it emits, and that a failing handler harms nobody."""

from __future__ import annotations

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.events import (
    Connected,
    DeadLettered,
    DestinationCreated,
    DestinationRemoved,
    Disconnected,
    Event,
    EventBus,
    Expired,
    SlowConsumer,
    Subscribed,
    Unsubscribed,
)
from sealmq.core.model import Destination, DestinationKind
from sealmq.core.policy import DestinationPolicy
from sealmq.core.queues import AckMode
from sealmq.core.security import Principal
from sealmq.store.memory import MemoryStore
from tests.core.support import Q, Recorder, Sink, core, msg, tick

__all__ = ["core"]

Core = tuple[Broker, FakeClock]


@pytest.mark.asyncio
async def test_connections_subscriptions_and_destinations_are_told(core: Core) -> None:
    broker, _ = core
    recorder = Recorder(broker)
    conn = broker.connect(client_id="app", principal=Principal("alice"))
    conn.subscribe("s", Q, Sink())
    temp = conn.create_temp_queue("replies")
    conn.unsubscribe("s")
    conn.close()
    assert recorder.events == [
        Connected(conn.id, "app", "alice"),
        DestinationCreated(Q),
        Subscribed(conn.id, "s", Q),
        DestinationCreated(temp),
        Unsubscribed(conn.id, "s", Q),
        DestinationRemoved(Destination(DestinationKind.TEMP_QUEUE, temp.name)),
        Disconnected(conn.id, "app"),
    ]


@pytest.mark.asyncio
async def test_dead_lettering_and_expiry_are_told(core: Core) -> None:
    broker, clock = core
    recorder = Recorder(broker)
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    kept, dropped = msg(broker, b"p", persistent=True), msg(broker, b"n")
    conn.send(kept)
    conn.send(dropped)
    await tick()
    conn.unsubscribe("s")
    for _ in range(3):
        consumer = conn.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
        await tick()
        for message_id in list(consumer.in_flight):
            conn.nack(consumer, message_id, cumulative=False, transaction=None)
        conn.unsubscribe("s")
    dead = recorder.of(DeadLettered)
    # A persistent message moves to the DLQ; a non-persistent one is dropped (ActiveMQ).
    assert {(e.message_id, e.dead_letter_queue) for e in dead} == {  # type: ignore[attr-defined]
        (kept.message_id, "ActiveMQ.DLQ"),
        (dropped.message_id, None),
    }
    expiring = msg(broker, b"e", expiration=clock.now_ms() + 10)
    conn.send(expiring)
    clock.now += 10
    broker.sweep_expired()
    assert recorder.of(Expired) == [Expired(expiring.message_id, Q)]


@pytest.mark.asyncio
async def test_a_slow_consumer_episode_is_told_at_its_start_and_end() -> None:
    broker = Broker(
        MemoryStore(), policy=DestinationPolicy(pending_message_limit=2), clock=FakeClock()
    )
    broker.start()
    recorder = Recorder(broker)
    conn = broker.connect()
    topic = Destination.topic("ticks")
    consumer = conn.subscribe("slow", topic, Sink())
    consumer.paused = True
    for i in range(5):
        conn.send(msg(broker, b"%d" % i, topic))
    await tick()
    conn.resume(consumer)
    await tick()
    assert [e.discarded for e in recorder.of(SlowConsumer)] == [0, 3]  # type: ignore[attr-defined]
    await broker.close()


def test_handlers_by_kind_a_failing_one_is_logged_and_unsubscribing_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[Event] = []

    def broken(event: Connected) -> None:
        raise RuntimeError("handler bug")

    bus.subscribe(Connected, broken)
    stop = bus.subscribe(Connected, seen.append)
    assert bus.wants(Connected) and not bus.wants(Expired)
    bus.emit(Connected("c1", None, None))
    bus.emit(Disconnected("c1", None))
    assert seen == [Connected("c1", None, None)]
    assert "event handler failed" in caplog.text
    stop()
    bus.emit(Connected("c2", None, None))
    assert len(seen) == 1
