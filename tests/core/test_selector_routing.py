"""Selectors in the core: queue consumers receive what they select and leave the rest to
others; a topic subscription holds only what it selects, durable ones across a restart;
a bad selector is refused at subscribe."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.errors import SubscriptionError
from sealmq.core.model import Destination, Message
from sealmq.store.filestore import FileStore
from tests.core.support import Q, Sink, core, msg, tick
from tests.store.conftest import FakeKeyProvider

__all__ = ["core"]

Core = tuple[Broker, FakeClock]
T = Destination.topic("prices")


def sel(selector: str, **kw: object) -> SubscribeOptions:
    return SubscribeOptions(selector=selector, **kw)  # type: ignore[arg-type]


def numbered(broker: Broker, dest: Destination, count: int, **kw: object) -> list[Message]:
    """Messages m0..m<count-1> with STOMP-like string properties n and kind."""
    return [
        msg(
            broker,
            f"m{n}".encode(),
            dest,
            properties={"n": str(n), "kind": "odd" if n % 2 else "even"},
            **kw,
        )
        for n in range(count)
    ]


@pytest.mark.asyncio
async def test_queue_consumers_receive_what_they_select(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    odd, even = Sink(), Sink()
    conn.subscribe("odd", Q, odd, sel("kind = 'odd' AND n > 10"))
    conn.subscribe("even", Q, even, sel("kind = 'even'"))
    for message in numbered(broker, Q, 20):
        conn.send(message)
    await tick()
    assert odd.bodies == [b"m11", b"m13", b"m15", b"m17", b"m19"]
    assert even.bodies == [f"m{n}".encode() for n in range(0, 20, 2)]
    # What nobody selects waits for a consumer that does.
    assert len(broker.queues["orders"]) == 5
    rest = Sink()
    conn.subscribe("rest", Q, rest)
    await tick()
    assert rest.bodies == [b"m1", b"m3", b"m5", b"m7", b"m9"]


@pytest.mark.asyncio
async def test_a_topic_subscription_holds_only_what_it_selects(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    cheap, everything = Sink(), Sink()
    consumer = conn.subscribe("cheap", T, cheap, sel("n < 3", prefetch=0))
    conn.subscribe("all", T, everything)
    for message in numbered(broker, T, 10):
        conn.send(message)
    await tick()
    assert everything.bodies == [f"m{n}".encode() for n in range(10)]
    # A pull consumer without credit: only the three selected wait for it.
    assert consumer.queue is not None and len(consumer.queue) == 3
    assert cheap.got == []


@pytest.mark.asyncio
async def test_an_invalid_selector_is_refused_naming_the_column(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    with pytest.raises(SubscriptionError, match="invalid selector at column 7: "):
        conn.subscribe("s", Q, Sink(), sel("n > (1"))
    assert "s" not in conn.consumers
    # A blank selector is no selector, as in ActiveMQ.
    everything = Sink()
    conn.subscribe("blank", Q, everything, sel("  "))
    conn.send(msg(broker, b"x"))
    await tick()
    assert everything.bodies == [b"x"]


@pytest.mark.asyncio
async def test_a_durable_subscriptions_selector_survives_a_restart(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    conn = broker.connect(client_id="c1")
    conn.subscribe("d", T, Sink(), sel("kind = 'odd'", durable_name="odds"))
    conn.close()
    sender = broker.connect()
    for message in numbered(broker, T, 6, persistent=True):
        sender.send(message)
    await tick()
    await broker.close()

    broker = Broker(FileStore(tmp_path, keys, "b-1"))
    broker.start()
    await broker.pager.idle()  # the stored backlog's first window is read back
    try:
        sender = broker.connect()
        for message in numbered(broker, T, 10, persistent=True)[6:]:
            sender.send(message)
        sink = Sink()
        broker.connect(client_id="c1").subscribe(
            "d", T, sink, sel("kind = 'odd'", durable_name="odds")
        )
        await tick()
        assert sink.bodies == [b"m1", b"m3", b"m5", b"m7", b"m9"]
    finally:
        await broker.close()
