"""Virtual destinations. A send to ``VirtualTopic.X`` reaches each existing
``Consumer.<app>.VirtualTopic.X`` queue (competing consumers on each) and the topic's
own subscribers; a send to a composite ``a,b,topic://c`` reaches each as a message of
its own. Persistent copies are stored for each queue and survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.core.broker import Broker
from sealmq.core.clock import FakeClock
from sealmq.core.errors import DestinationError, SubscriptionError
from sealmq.core.forwarding import Forward, ForwardingRule, Forwards
from sealmq.core.model import Destination
from sealmq.core.virtual import VirtualTopics
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.core.support import Sink, core, msg, tick
from tests.store.conftest import FakeKeyProvider

__all__ = ["core"]

Core = tuple[Broker, FakeClock]
TOPIC = Destination.topic("VirtualTopic.Orders")
BILLING = Destination.queue("Consumer.Billing.VirtualTopic.Orders")
SHIPPING = Destination.queue("Consumer.Shipping.VirtualTopic.Orders")


@pytest.mark.asyncio
async def test_each_consumer_queue_gets_every_message_and_its_consumers_compete(
    core: Core,
) -> None:
    broker, _ = core
    conn = broker.connect()
    billing_a, billing_b, shipping, listener = Sink(), Sink(), Sink(), Sink()
    conn.subscribe("ba", BILLING, billing_a)
    conn.subscribe("bb", BILLING, billing_b)
    conn.subscribe("s", SHIPPING, shipping)
    conn.subscribe("t", TOPIC, listener)
    for n in range(6):
        conn.send(msg(broker, f"o{n}".encode(), TOPIC))
    await tick()
    everything = [f"o{n}".encode() for n in range(6)]
    assert sorted(billing_a.bodies + billing_b.bodies) == everything
    assert billing_a.bodies and billing_b.bodies  # round-robin between the two
    assert shipping.bodies == everything
    assert listener.bodies == everything


@pytest.mark.asyncio
async def test_a_consumer_queue_made_later_gets_only_later_messages(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    assert broker.has_subscribers(msg(broker, b"x", TOPIC)) is False
    conn.send(msg(broker, b"before", TOPIC))
    sink = Sink()
    conn.subscribe("b", BILLING, sink)
    message = msg(broker, b"after", TOPIC)
    assert broker.has_subscribers(message) is True  # the queue holds it (MQTT 5's 0x10)
    conn.send(message)
    await tick()
    assert sink.bodies == [b"after"]


@pytest.mark.asyncio
async def test_names_outside_the_pattern_are_plain_queues_and_topics(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    plain, nested = Sink(), Sink()
    conn.subscribe("p", Destination.queue("Consumer.Billing.Orders"), plain)
    conn.subscribe("n", Destination.queue("Consumer.VirtualTopic.Orders"), nested)
    conn.send(msg(broker, b"x", Destination.topic("Orders")))
    conn.send(msg(broker, b"y", TOPIC))
    await tick()
    assert plain.got == [] and nested.got == []


@pytest.mark.asyncio
async def test_configured_name_and_prefix_and_switched_off() -> None:
    custom = Broker(
        MemoryStore(), clock=FakeClock(), virtual_topics=VirtualTopics("Events.>", "App.*.Side.*.")
    )
    off = Broker(MemoryStore(), clock=FakeClock(), virtual_topics=None)
    for broker in (custom, off):
        broker.start()
    try:
        got = {}
        for broker in (custom, off):
            sink = got[id(broker)] = Sink()
            conn = broker.connect()
            conn.subscribe("q", Destination.queue("App.a.Side.b.Events.Paid"), sink)
            conn.send(msg(broker, b"paid", Destination.topic("Events.Paid")))
        await tick()
        assert got[id(custom)].bodies == [b"paid"]
        assert got[id(off)].got == []
    finally:
        for broker in (custom, off):
            await broker.close()


def test_a_prefix_must_end_with_a_dot_and_not_use_the_tail_wildcard() -> None:
    with pytest.raises(ValueError, match="ends with"):
        VirtualTopics(prefix="Consumer.*")
    with pytest.raises(ValueError, match="'>'"):
        VirtualTopics(prefix="Consumer.>.")


@pytest.mark.asyncio
async def test_persistent_copies_survive_a_restart_for_each_queue(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    conn = broker.connect()
    conn.subscribe("b", BILLING, Sink())
    conn.subscribe("s", SHIPPING, Sink())
    conn.close()
    sent = broker.connect().send(msg(broker, b"kept", TOPIC, persistent=True))
    assert sent is not None
    await sent
    await broker.close()

    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    await broker.pager.idle()  # the stored backlog's first window is read back
    try:
        billing, shipping = Sink(), Sink()
        conn = broker.connect()
        conn.subscribe("b", BILLING, billing)
        conn.subscribe("s", SHIPPING, shipping)
        await tick()
        assert billing.bodies == [b"kept"] and shipping.bodies == [b"kept"]
    finally:
        await broker.close()


# ----------------------------------------------------------------- composite destinations


@pytest.mark.asyncio
async def test_a_composite_send_reaches_each_destination_as_its_own_message(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b, c = Sink(), Sink(), Sink()
    conn.subscribe("a", Destination.queue("a"), a)
    conn.subscribe("b", Destination.queue("b"), b)
    conn.subscribe("c", Destination.topic("c"), c)
    sent = msg(broker, b"x", Destination.queue("a, b,topic://c"), properties={"k": 1})
    assert conn.send(sent) is None
    await tick()
    got = [sink.got[0].message for sink in (a, b, c)]
    assert [m.destination for m in got] == [
        Destination.queue("a"),
        Destination.queue("b"),
        Destination.topic("c"),
    ]
    assert all(m.body == b"x" and m.properties == {"k": 1} for m in got)
    assert len({m.message_id for m in got}) == 3
    assert broker.has_subscribers(msg(broker, b"y", Destination.topic("nobody,c")))
    assert not broker.has_subscribers(msg(broker, b"y", Destination.topic("nobody,none")))


@pytest.mark.asyncio
async def test_a_composite_with_a_bad_part_sends_nothing(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    conn.subscribe("a", Destination.queue("a"), sink)
    for name in ("a,topic://x.>", "a,,b", "a,queue://"):
        with pytest.raises(DestinationError):
            conn.send(msg(broker, b"x", Destination.queue(name)))
    with pytest.raises(SubscriptionError, match="composite"):
        conn.subscribe("ab", Destination.queue("a,b"), Sink())
    await tick()
    assert sink.got == []


@pytest.mark.asyncio
async def test_a_persistent_composite_send_is_stored_for_each_queue(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    conn = broker.connect()
    conn.begin("tx")
    conn.send(msg(broker, b"both", Destination.queue("q1,q2"), persistent=True), "tx")
    written = conn.commit("tx")
    assert written is not None
    await written
    await broker.close()
    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    try:
        assert len(broker.queues["q1"]) == len(broker.queues["q2"]) == 1
        assert "q1,q2" not in broker.queues
    finally:
        await broker.close()


# ----------------------------------------------------------------- configured composites


@pytest.mark.asyncio
async def test_configured_composites_forward_through_selectors() -> None:
    rules = [
        ForwardingRule(
            Destination.queue("orders"),
            (
                Forward(Destination.queue("orders.audit")),
                Forward(Destination.topic("orders.big"), "amount > 1000"),
            ),
        ),
        ForwardingRule(
            Destination.topic("prices"), (Forward(Destination.queue("prices.log")),), False
        ),
    ]
    broker = Broker(MemoryStore(), clock=FakeClock(), forwards=Forwards(rules))
    broker.start()
    try:
        conn = broker.connect()
        orders, audit, big, prices, log = Sink(), Sink(), Sink(), Sink(), Sink()
        conn.subscribe("o", Destination.queue("orders"), orders)
        conn.subscribe("a", Destination.queue("orders.audit"), audit)
        conn.subscribe("b", Destination.topic("orders.big"), big)
        conn.subscribe("p", Destination.topic("prices"), prices)
        conn.subscribe("l", Destination.queue("prices.log"), log)
        for amount in (10, 5000):
            conn.send(
                msg(
                    broker,
                    f"{amount}".encode(),
                    Destination.queue("orders"),
                    properties={"amount": amount},
                )
            )
        conn.send(msg(broker, b"tick", Destination.topic("prices")))
        await tick()
        assert orders.got == []  # forward only: the queue keeps no copy
        assert audit.bodies == [b"10", b"5000"]
        assert big.bodies == [b"5000"]
        assert prices.bodies == [b"tick"] and log.bodies == [b"tick"]
        assert audit.got[0].message.destination == Destination.queue("orders.audit")
    finally:
        await broker.close()
