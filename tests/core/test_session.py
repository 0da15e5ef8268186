"""Sessions group consumers and producers; a producer's window and holds make it wait."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.errors import SubscriptionError
from sealmq.core.ports import Op
from sealmq.core.queues import AckMode
from sealmq.core.session import Producer, ProducerError
from sealmq.store.memory import MemoryStore
from tests.core.support import Q, Sink, core, msg, tick

__all__ = ["core"]

Core = tuple[Broker, FakeClock]


class GatedStore(MemoryStore):
    """A memory store whose writes become durable only when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        super().write(ops, sync=sync)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def confirm_all(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)
        self.pending.clear()


@pytest.mark.asyncio
async def test_closing_a_session_closes_its_consumers_and_producers(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    session = conn.create_session("s1")
    other = conn.create_session("s2")
    sink, kept = Sink(), Sink()
    session.subscribe("c1", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    producer = session.create_producer("p1", Q)
    producer.send(msg(broker, b"x"))
    await tick()
    other.subscribe("c2", Q, kept)
    session.close()
    assert producer.closed and "c1" not in conn.consumers and "s1" not in conn.sessions
    with pytest.raises(ProducerError):
        producer.send(msg(broker, b"y"))
    with pytest.raises(SubscriptionError):
        session.subscribe("c3", Q, Sink())
    await tick()
    assert sink.bodies == [b"x"]
    assert kept.bodies == [b"x"] and kept.counts == [1]  # unacked: redelivered
    conn.close()
    assert other.closed


@pytest.mark.asyncio
async def test_a_producer_waits_while_its_window_is_full() -> None:
    store = GatedStore()
    broker = Broker(store, clock=FakeClock())
    broker.start()
    conn = broker.connect()
    producer = conn.create_session("s").create_producer("p", Q, window=2048)
    readied: list[Producer] = []
    producer.on_ready = readied.append
    for _ in range(2):
        producer.send(msg(broker, b"x" * 1024, persistent=True))
    assert not producer.ready and producer.outstanding == 2048
    waiting = asyncio.ensure_future(producer.wait_ready())
    await tick()
    assert not waiting.done()
    store.confirm_all()
    await asyncio.wait_for(waiting, 5)
    assert producer.ready and producer.outstanding == 0 and readied == [producer]
    producer.send(msg(broker, b"small"))  # non-persistent: nothing to wait for
    assert producer.outstanding == 0
    store.confirm_all()
    await broker.close()


@pytest.mark.asyncio
async def test_the_broker_can_hold_a_producer(core: Core) -> None:
    broker, _ = core
    producer = broker.connect().create_session("s").create_producer("p")
    producer.hold("memory")
    producer.hold("store")
    assert not producer.ready
    producer.release("memory")
    assert not producer.ready
    producer.release("store")
    assert producer.ready
    waiting = asyncio.ensure_future(producer.wait_ready())
    await tick()
    assert waiting.done()
    producer.hold("memory")
    blocked = asyncio.ensure_future(producer.wait_ready())
    await tick()
    producer.close()
    with pytest.raises(ProducerError):
        await asyncio.wait_for(blocked, 5)
