"""The clock port: the fake clock drives redelivery delay, expiry sweeps and the lazy
ack batch without a sleep; the real one is the event loop's."""

from __future__ import annotations

import asyncio
import time

import pytest

from sealmq.core.broker import (
    EXPIRY_SWEEP_SECONDS,
    LAZY_BATCH_SECONDS,
    Broker,
    SubscribeOptions,
)
from sealmq.core.clock import AsyncioClock, FakeClock
from sealmq.core.events import Expired
from sealmq.core.policy import DestinationPolicy
from sealmq.core.queues import AckMode
from sealmq.store.memory import MemoryStore
from tests.core.support import DLQ, Q, Recorder, Sink, msg, tick

MANUAL = SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=1)


def test_the_fake_clock_runs_due_timers_in_order_and_skips_cancelled_ones() -> None:
    clock = FakeClock(now_ms=5_000)
    ran: list[str] = []
    clock.call_later(2.0, lambda: ran.append("two"))
    clock.call_later(1.0, lambda: ran.append("one"))
    cancelled = clock.call_later(1.5, lambda: ran.append("never"))
    cancelled.cancel()
    clock.advance(1.0)
    assert ran == ["one"] and clock.now_ms() == 6_000 and clock.monotonic() == 1.0
    clock.advance(5.0)
    assert ran == ["one", "two"] and clock.now_ms() == 11_000
    assert clock.pending == 0


def test_a_fake_timer_set_by_a_timer_runs_in_the_same_advance() -> None:
    clock = FakeClock()
    ran: list[float] = []

    def again() -> None:
        ran.append(clock.monotonic())
        if len(ran) < 3:
            clock.call_later(1.0, again)

    clock.call_later(1.0, again)
    clock.advance(10.0)
    assert ran == [1.0, 2.0, 3.0]


def test_call_soon_without_a_loop_waits_for_the_next_advance() -> None:
    clock = FakeClock()
    ran: list[int] = []
    clock.call_soon(lambda: ran.append(1))
    assert ran == []
    clock.advance(0)
    assert ran == [1]


@pytest.mark.asyncio
async def test_the_real_clock_is_the_event_loops() -> None:
    clock = AsyncioClock()
    assert abs(clock.now_ms() - time.time() * 1000) < 1000
    fired = asyncio.Event()
    clock.call_soon(fired.set)
    await asyncio.wait_for(fired.wait(), 5)
    timer = clock.call_later(3600, fired.clear)
    timer.cancel()


@pytest.mark.asyncio
async def test_redelivery_delay_waits_on_the_clock() -> None:
    clock = FakeClock()
    broker = Broker(MemoryStore(), policy=DestinationPolicy(redelivery_delay_ms=1000), clock=clock)
    broker.start()
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    conn.send(msg(broker, b"x"))
    await tick()
    conn.nack(consumer, sink.ids[0], cumulative=False, transaction=None)
    await tick()
    clock.advance(0.999)
    await tick()
    assert sink.counts == [0]
    clock.advance(0.001)
    await tick()
    assert sink.counts == [0, 1]
    await broker.close()


@pytest.mark.asyncio
async def test_the_expiry_sweep_runs_on_the_clock() -> None:
    clock = FakeClock()
    broker = Broker(MemoryStore(), clock=clock)
    broker.start()
    recorder = Recorder(broker)
    conn = broker.connect()
    conn.send(msg(broker, b"soon", persistent=True, expiration=clock.now_ms() + 5_000))
    conn.send(msg(broker, b"later", persistent=True))
    await tick()
    clock.advance(EXPIRY_SWEEP_SECONDS - 1)
    assert recorder.of(Expired) == []
    clock.advance(1)
    assert len(recorder.of(Expired)) == 1
    assert len(broker.queues["orders"]) == 1
    assert len(broker.queues[DLQ.name]) == 1
    clock.advance(EXPIRY_SWEEP_SECONDS)  # the sweep keeps coming back
    assert clock.pending >= 1
    await broker.close()


@pytest.mark.asyncio
async def test_a_lone_ack_batch_is_written_when_the_clock_says() -> None:
    clock = FakeClock()
    store = MemoryStore()
    broker = Broker(store, clock=clock)
    broker.start()
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, MANUAL)
    sent = conn.send(msg(broker, b"x", persistent=True))
    assert sent is not None
    await sent
    await tick()
    conn.ack(consumer, sink.ids[0], cumulative=False, transaction=None)
    await tick()
    assert len(store.snapshot().messages) == 1  # the ack waits for company
    clock.advance(LAZY_BATCH_SECONDS)
    await tick()
    assert store.snapshot().messages == []
    await broker.close()
