"""Advisory topics: consumers, connections, destinations, expired and dead-lettered
messages, published to whoever subscribes to ``ActiveMQ.Advisory.*``, and nothing at
all built when nobody does."""

from __future__ import annotations

import json

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.model import Destination, Message
from sealmq.core.queues import AckMode
from sealmq.store.memory import MemoryStore
from tests.core.support import Q, Sink, core, msg, tick

__all__ = ["core"]

Core = tuple[Broker, FakeClock]


def advisory(prefix: str) -> Destination:
    return Destination.topic("ActiveMQ.Advisory." + prefix)


def data(message: Message) -> dict[str, object]:
    assert message.type == "Advisory" and not message.persistent
    decoded: dict[str, object] = json.loads(message.body)
    return decoded


@pytest.mark.asyncio
async def test_consumers_starting_and_stopping_are_advised_with_the_count(core: Core) -> None:
    broker, _ = core
    watcher = Sink()
    broker.connect().subscribe("w", advisory("Consumer.Queue.orders"), watcher)
    app = broker.connect()
    app.subscribe("c1", Q, Sink())
    app.subscribe("c2", Q, Sink())
    app.unsubscribe("c1")
    await tick()
    got = [(data(e.message)["event"], e.message.properties["consumerCount"]) for e in watcher.got]
    assert got == [("consumer-started", 1), ("consumer-started", 2), ("consumer-stopped", 1)]
    first = watcher.got[0].message
    assert data(first)["destination"] == "queue://orders"
    assert first.properties["originBrokerId"] == broker.broker_id


@pytest.mark.asyncio
async def test_connections_and_new_queues_are_advised(core: Core) -> None:
    broker, _ = core
    connections, queues = Sink(), Sink()
    watcher = broker.connect()
    watcher.subscribe("c", advisory("Connection"), connections)
    watcher.subscribe("q", advisory("Queue"), queues)
    other = broker.connect(client_id="app-1")
    other.subscribe("s", Destination.queue("fresh"), Sink())
    other.close()
    await tick()
    assert [data(e.message)["event"] for e in connections.got] == ["connected", "disconnected"]
    assert data(connections.got[0].message)["clientId"] == "app-1"
    assert [data(e.message)["destination"] for e in queues.got] == ["queue://fresh"]


@pytest.mark.asyncio
async def test_expired_and_dead_lettered_messages_are_advised(core: Core) -> None:
    broker, clock = core
    expired, dead = Sink(), Sink()
    watcher = broker.connect()
    watcher.subscribe("e", advisory("Expired.Queue.orders"), expired)
    watcher.subscribe("d", advisory("MessageDLQd.Queue.orders"), dead)
    conn = broker.connect()
    old = msg(broker, b"old", expiration=clock.now + 1000)
    conn.send(old)
    clock.advance(2)
    consumer = conn.subscribe("c", Q, Sink(), SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    await tick()
    assert [e.message.properties["orignalMessageId"] for e in expired.got] == [old.message_id]
    poison = msg(broker, b"poison", persistent=True)
    conn.send(poison)
    for _ in range(3):  # the core fixture's policy: 2 redeliveries, then the DLQ
        await tick()
        conn.nack(consumer, poison.message_id, cumulative=False, transaction=None)
    await tick()
    assert len(dead.got) == 1
    assert data(dead.got[0].message)["deadLetterQueue"] == "ActiveMQ.DLQ"


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.asyncio
async def test_nothing_is_sent_for_nobody_and_switching_off_silences_them(
    enabled: bool,
) -> None:
    broker = Broker(MemoryStore(), clock=FakeClock(), advisories=enabled)
    broker.start()
    sent: list[Message] = []
    send = broker.send

    def counting(message: Message, **kw: object) -> object:
        sent.append(message)
        return send(message, **kw)  # type: ignore[arg-type]

    broker.send = counting  # type: ignore[assignment]
    try:
        broker.connect().subscribe("c", Q, Sink())  # nobody listens: nothing is sent
        assert sent == []
        listener = Sink()
        broker.connect().subscribe("w", advisory("Consumer.Queue.orders"), listener)
        broker.connect().subscribe("c2", Q, Sink())
        await tick()
        assert len(listener.got) == len(sent) == (1 if enabled else 0)
    finally:
        await broker.close()
