"""Per-destination redelivery and dead letters through the core: exponential back-off
between redeliveries, a delay that outlives a restart, expired messages dropped when
``process_expired`` is off, and non-persistent ones dead-lettered when
``process_non_persistent`` is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.policy import DestinationPolicy
from sealmq.core.queues import AckMode
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.core.support import DLQ, Q, Sink, msg, tick
from tests.store.conftest import FakeKeyProvider

MANUAL = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL)


async def started(**policy: object) -> tuple[Broker, FakeClock]:
    clock = FakeClock()
    broker = Broker(MemoryStore(), policy=DestinationPolicy(**policy), clock=clock)  # type: ignore[arg-type]
    broker.start()
    return broker, clock


@pytest.mark.asyncio
async def test_redeliveries_back_off_exponentially() -> None:
    broker, clock = await started(
        redelivery_delay_ms=100, use_exponential_back_off=True, back_off_multiplier=2
    )
    try:
        conn = broker.connect()
        sink = Sink()
        consumer = conn.subscribe("c", Q, sink, MANUAL)
        sent = msg(broker, b"flaky", persistent=True)
        conn.send(sent)
        await tick()
        waits = []
        for _ in range(3):
            delivered = len(sink.got)
            conn.nack(consumer, sent.message_id, cumulative=False, transaction=None)
            start = clock.now
            while len(sink.got) == delivered:
                clock.advance(0.01)
                await tick()
            waits.append(clock.now - start)
        # Each wait to within the 10 ms steps the test takes.
        expected = [100, 200, 400]
        assert all(e <= w <= e + 10 for w, e in zip(waits, expected, strict=True)), waits
        assert sink.counts == [0, 1, 2, 3]
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_expired_messages_are_dropped_when_process_expired_is_off() -> None:
    for process_expired, in_dlq in ((True, 1), (False, 0)):
        broker, clock = await started(process_expired=process_expired)
        try:
            conn = broker.connect()
            conn.send(msg(broker, b"stale", persistent=True, expiration=clock.now + 1000))
            clock.advance(2)
            conn.subscribe("c", Q, Sink())
            await tick()
            dlq = broker.queues.get(DLQ.name)
            assert (len(dlq) if dlq is not None else 0) == in_dlq
            assert len(broker.queues[Q.name]) == 0
        finally:
            await broker.close()


@pytest.mark.asyncio
async def test_non_persistent_dead_letters_are_kept_when_process_non_persistent_is_on() -> None:
    for process, in_dlq in ((False, 0), (True, 1)):
        broker, _ = await started(maximum_redeliveries=0, process_non_persistent=process)
        try:
            conn = broker.connect()
            sink = Sink()
            consumer = conn.subscribe("c", Q, sink, MANUAL)
            sent = msg(broker, b"poison")
            conn.send(sent)
            await tick()
            conn.nack(consumer, sent.message_id, cumulative=False, transaction=None)
            await tick()
            dlq = broker.queues.get(DLQ.name)
            assert (len(dlq) if dlq is not None else 0) == in_dlq
            if in_dlq:
                dead = next(iter(dlq.entries())).message  # type: ignore[union-attr]
                assert dead.persistent and dead.properties["dlqDeliveryFailureCause"]
        finally:
            await broker.close()


@pytest.mark.asyncio
async def test_a_redelivery_delay_outlives_a_restart(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    clock = FakeClock()
    policy = DestinationPolicy(redelivery_delay_ms=60_000)
    broker = Broker(FileStore(tmp_path, keys, "b-1"), policy=policy, clock=clock)
    broker.start()
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("c", Q, sink, MANUAL)
    sent = msg(broker, b"retry later", persistent=True)
    written = conn.send(sent)
    assert written is not None
    await written
    await tick()
    conn.nack(consumer, sent.message_id, cumulative=False, transaction=None)
    await tick()
    await broker.close()  # ten seconds into the minute's wait

    clock = FakeClock(now_ms=clock.now + 10_000)
    broker = Broker(FileStore(tmp_path, keys, "b-1"), policy=policy, clock=clock)
    broker.start()
    try:
        await broker.pager.idle()
        sink = Sink()
        broker.connect().subscribe("c", Q, sink, MANUAL)
        clock.advance(49)
        await tick()
        assert sink.got == []  # not redelivered at once after the restart
        clock.advance(1.5)
        await tick()
        assert sink.bodies == [b"retry later"]
        assert sink.counts == [1] and sink.got[0].message.message_id == sent.message_id
    finally:
        await broker.close()
