"""Scheduled delivery (``AMQ_SCHEDULED_*``): held until due, repeated, by cron, refused
when malformed, and kept across a restart of the store, due ones fired at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.core.broker import Broker
from sealmq.core.clock import FakeClock
from sealmq.core.scheduler import JOB_ID_PROPERTY, ScheduleError
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.core.support import Q, Sink, msg, tick
from tests.store.conftest import FakeKeyProvider


async def started(clock: FakeClock, store: object | None = None) -> Broker:
    broker = Broker(store if store is not None else MemoryStore(), clock=clock)  # type: ignore[arg-type]
    broker.start()
    return broker


@pytest.mark.asyncio
async def test_a_delayed_message_arrives_when_due_and_not_before() -> None:
    clock = FakeClock()
    broker = await started(clock)
    try:
        conn = broker.connect()
        sink = Sink()
        conn.subscribe("s", Q, sink)
        sent = msg(broker, b"later", properties={"AMQ_SCHEDULED_DELAY": "5000", "k": "v"})
        assert conn.send(sent) is None  # not persistent: nobody waits for the store
        conn.send(msg(broker, b"now"))
        await tick()
        assert sink.bodies == [b"now"]
        clock.advance(4.9)
        await tick()
        assert sink.bodies == [b"now"]
        clock.advance(0.1)
        await tick()
        assert sink.bodies == [b"now", b"later"]
        got = sink.got[1].message
        assert got.properties == {"k": "v", JOB_ID_PROPERTY: got.properties[JOB_ID_PROPERTY]}
        assert got.message_id != sent.message_id
        assert broker.scheduler.jobs == {}
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_repeats_come_a_period_apart() -> None:
    clock = FakeClock()
    broker = await started(clock)
    try:
        conn = broker.connect()
        sink = Sink()
        conn.subscribe("s", Q, sink)
        props = {
            "AMQ_SCHEDULED_DELAY": 1000,
            "AMQ_SCHEDULED_PERIOD": 2000,
            "AMQ_SCHEDULED_REPEAT": 2,
        }
        conn.send(msg(broker, b"tick", properties=props))
        arrivals = []
        for _ in range(8):
            clock.advance(1)
            await tick()
            arrivals.append(len(sink.got))
        # Delivered at 1 s, 3 s and 5 s: once and then twice more.
        assert arrivals == [1, 1, 2, 2, 3, 3, 3, 3]
        ids = {e.message.message_id for e in sink.got}
        assert len(ids) == 3 and len({e.message.properties[JOB_ID_PROPERTY] for e in sink.got}) == 1
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_cron_job_fires_at_each_time_it_names() -> None:
    clock = FakeClock(now_ms=1_764_000_000_000 - 1_764_000_000_000 % 3_600_000)  # on the hour
    broker = await started(clock)
    try:
        conn = broker.connect()
        sink = Sink()
        conn.subscribe("s", Q, sink)
        conn.send(msg(broker, b"quarterly", properties={"AMQ_SCHEDULED_CRON": "*/15 * * * *"}))
        clock.advance(14 * 60)
        await tick()
        assert sink.got == []
        clock.advance(60)
        await tick()
        assert len(sink.got) == 1
        clock.advance(30 * 60)
        await tick()
        assert len(sink.got) == 3
        assert len(broker.scheduler.jobs) == 1  # a cron job goes on
    finally:
        await broker.close()


@pytest.mark.parametrize(
    ("props", "words"),
    [
        ({"AMQ_SCHEDULED_DELAY": "soon"}, "AMQ_SCHEDULED_DELAY must be a whole number"),
        ({"AMQ_SCHEDULED_DELAY": -1}, "AMQ_SCHEDULED_DELAY"),
        ({"AMQ_SCHEDULED_REPEAT": 1.5}, "AMQ_SCHEDULED_REPEAT"),
        ({"AMQ_SCHEDULED_CRON": "every day"}, "expected 5 fields"),
        ({"AMQ_SCHEDULED_CRON": 5}, "must be a cron expression"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_schedule_is_refused_at_send(props: dict[str, object], words: str) -> None:
    clock = FakeClock()
    broker = await started(clock)
    try:
        conn = broker.connect()
        with pytest.raises(ScheduleError, match=words):
            conn.send(msg(broker, b"x", properties=props))
        conn.begin("tx")
        with pytest.raises(ScheduleError, match=words):
            conn.send(msg(broker, b"x", properties=props), "tx")
        assert broker.scheduler.jobs == {}
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_transaction_schedules_at_commit() -> None:
    clock = FakeClock()
    broker = await started(clock)
    try:
        conn = broker.connect()
        sink = Sink()
        conn.subscribe("s", Q, sink)
        conn.begin("tx")
        conn.send(msg(broker, b"a", properties={"AMQ_SCHEDULED_DELAY": 1000}), "tx")
        assert broker.scheduler.jobs == {}
        conn.commit("tx")
        assert len(broker.scheduler.jobs) == 1
        clock.advance(1)
        await tick()
        assert sink.bodies == [b"a"]
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_jobs_survive_a_restart_and_what_fell_due_fires_at_once(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    clock = FakeClock()
    broker = await started(clock, FileStore(tmp_path, keys, "b-1"))
    conn = broker.connect()
    persistent = conn.send(
        msg(broker, b"p", persistent=True, properties={"AMQ_SCHEDULED_DELAY": 10_000})
    )
    assert persistent is not None
    await persistent
    conn.send(msg(broker, b"n", properties={"AMQ_SCHEDULED_DELAY": 60_000}))
    await broker.close()

    clock = FakeClock(now_ms=clock.now + 20_000)  # stopped for 20 s: "p" is due, "n" is not
    broker = await started(clock, FileStore(tmp_path, keys, "b-1"))
    try:
        sink = Sink()
        broker.connect().subscribe("s", Q, sink)
        clock.advance(0)
        await tick()
        assert sink.bodies == [b"p"]
        clock.advance(39.9)
        await tick()
        assert sink.bodies == [b"p"]
        clock.advance(0.2)
        await tick()
        assert sink.bodies == [b"p", b"n"]
        assert sink.got[0].message.persistent and not sink.got[1].message.persistent
        await broker.close()
        # Both done: nothing left to fire after another restart.
        broker = await started(clock, FileStore(tmp_path, keys, "b-1"))
        assert broker.scheduler.jobs == {}
        assert len(broker.queues["orders"]) == 0
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_job_for_a_deleted_temporary_queue_is_dropped() -> None:
    clock = FakeClock()
    broker = await started(clock)
    try:
        owner = broker.connect()
        temp = owner.create_temp_queue("replies")
        owner.send(msg(broker, b"x", temp, properties={"AMQ_SCHEDULED_DELAY": 1000}))
        owner.close()
        clock.advance(1)
        await tick()
        assert broker.scheduler.jobs == {}
    finally:
        await broker.close()
