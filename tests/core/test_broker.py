"""The protocol-neutral core, driven directly with an in-memory store and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sealmq.core.broker import Broker, Connection, SubscribeOptions
from sealmq.core.clock import FakeClock as Clock
from sealmq.core.errors import DestinationError, SubscriptionError, TransactionError
from sealmq.core.model import Destination, Message
from sealmq.core.policy import DestinationPolicy
from sealmq.core.queues import AckMode, Consumer, Entry
from sealmq.store.memory import MemoryStore


class Sink:
    def __init__(self) -> None:
        self.got: list[Entry] = []
        self.redeliveries: list[int] = []

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.got.append(entry)
        self.redeliveries.append(entry.redeliveries)

    @property
    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.got]


async def tick() -> None:
    """Let the broker's dispatch step (one ``call_soon`` per tick) run."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


@pytest_asyncio.fixture
async def core() -> AsyncIterator[tuple[Broker, Clock]]:
    clock = Clock()
    broker = Broker(MemoryStore(), policy=DestinationPolicy(maximum_redeliveries=2), clock=clock)
    broker.start()
    yield broker, clock
    await broker.close()


def msg(broker: Broker, dest: Destination, body: bytes, **kw: object) -> Message:
    return Message(broker.new_message_id(), dest, body, **kw)  # type: ignore[arg-type]


Q = Destination.queue("orders")


@pytest.mark.asyncio
async def test_queue_consumers_compete_round_robin(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b = Sink(), Sink()
    conn.subscribe("a", Q, a)
    conn.subscribe("b", Q, b)
    for i in range(4):
        conn.send(msg(broker, Q, b"%d" % i))
    await tick()
    assert a.bodies == [b"0", b"2"]
    assert b.bodies == [b"1", b"3"]


@pytest.mark.asyncio
async def test_prefetch_bounds_unacked_and_ack_frees_credit(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe(
        "s", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=2)
    )
    for i in range(5):
        conn.send(msg(broker, Q, b"%d" % i))
    await tick()
    assert sink.bodies == [b"0", b"1"]
    assert conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction=None)
    await tick()
    assert sink.bodies == [b"0", b"1", b"2"]


@pytest.mark.asyncio
async def test_cumulative_ack_covers_earlier_deliveries(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.CLIENT, prefetch=10))
    for i in range(3):
        conn.send(msg(broker, Q, b"%d" % i))
    await tick()
    conn.ack(consumer, sink.got[1].message.message_id, cumulative=True, transaction=None)
    await tick()
    assert list(consumer.in_flight) == [sink.got[2].message.message_id]


@pytest.mark.asyncio
async def test_higher_priority_first(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    for body, prio in ((b"low", 1), (b"high", 9), (b"mid", 4)):
        conn.send(msg(broker, Q, body, priority=prio))
    sink = Sink()
    conn.subscribe("s", Q, sink)
    await tick()
    assert sink.bodies == [b"high", b"mid", b"low"]


@pytest.mark.asyncio
async def test_expired_never_delivered_persistent_ones_dead_lettered(
    core: tuple[Broker, Clock],
) -> None:
    broker, clock = core
    conn = broker.connect()
    conn.send(msg(broker, Q, b"gone", expiration=clock.now + 10))
    conn.send(msg(broker, Q, b"gone-p", expiration=clock.now + 10, persistent=True))
    conn.send(msg(broker, Q, b"live"))
    clock.now += 11
    sink, dlq = Sink(), Sink()
    conn.subscribe("s", Q, sink)
    conn.subscribe("d", Destination.queue("ActiveMQ.DLQ"), dlq)
    await tick()
    assert sink.bodies == [b"live"]
    assert dlq.bodies == [b"gone-p"]
    assert dlq.got[0].message.properties["dlqDeliveryFailureCause"] == "Message expired"


@pytest.mark.asyncio
async def test_redelivery_limit_moves_to_dlq(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    conn.send(msg(broker, Q, b"poison", persistent=True))
    for _ in range(3):  # first delivery + 2 redeliveries allowed
        await tick()
        conn.nack(consumer, sink.got[-1].message.message_id, cumulative=False, transaction=None)
    await tick()
    assert sink.redeliveries == [0, 1, 2]
    dlq = Sink()
    conn.subscribe("d", Destination.queue("ActiveMQ.DLQ"), dlq)
    await tick()
    assert dlq.bodies == [b"poison"]
    assert dlq.got[0].message.original_destination == Q


@pytest.mark.asyncio
async def test_closing_consumer_redelivers_unacked(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    first = broker.connect()
    sink = Sink()
    first.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.CLIENT))
    first.send(msg(broker, Q, b"x"))
    await tick()
    first.close()
    second = broker.connect()
    again = Sink()
    second.subscribe("s", Q, again)
    await tick()
    assert again.bodies == [b"x"]
    assert again.redeliveries == [1]


@pytest.mark.asyncio
async def test_transaction_commit_and_abort(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    conn.subscribe("s", Q, sink)
    conn.begin("t1")
    conn.send(msg(broker, Q, b"kept"), "t1")
    await tick()
    assert sink.bodies == []
    conn.commit("t1")
    await tick()
    assert sink.bodies == [b"kept"]
    conn.begin("t2")
    conn.send(msg(broker, Q, b"dropped"), "t2")
    conn.abort("t2")
    await tick()
    assert sink.bodies == [b"kept"]
    with pytest.raises(TransactionError):
        conn.commit("t2")


@pytest.mark.asyncio
async def test_aborted_acks_are_redelivered(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("s", Q, sink, SubscribeOptions(ack_mode=AckMode.INDIVIDUAL))
    conn.send(msg(broker, Q, b"x"))
    conn.begin("t")
    await tick()
    conn.ack(consumer, sink.got[0].message.message_id, cumulative=False, transaction="t")
    conn.abort("t")
    await tick()
    assert sink.bodies == [b"x", b"x"]


@pytest.mark.asyncio
async def test_topic_wildcards_and_fan_out(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    exact, star, rest, other = Sink(), Sink(), Sink(), Sink()
    conn.subscribe("1", Destination.topic("a.b.c"), exact)
    conn.subscribe("2", Destination.topic("a.*.c"), star)
    conn.subscribe("3", Destination.topic("a.>"), rest)
    conn.subscribe("4", Destination.topic("x.>"), other)
    conn.send(msg(broker, Destination.topic("a.b.c"), b"m"))
    await tick()
    assert exact.bodies == star.bodies == rest.bodies == [b"m"]
    assert other.bodies == []
    # One message object is shared by every subscriber: no copy per delivery.
    await tick()
    assert exact.got[0].message is star.got[0].message is rest.got[0].message
    with pytest.raises(DestinationError):
        conn.send(msg(broker, Destination.topic("a.*"), b"no"))


@pytest.mark.asyncio
async def test_durable_subscription_keeps_messages_while_away(
    core: tuple[Broker, Clock],
) -> None:
    broker, _ = core
    topic = Destination.topic("news")
    conn = broker.connect(client_id="c1")
    conn.subscribe("s", topic, Sink(), SubscribeOptions(durable_name="sub"))
    conn.close()
    producer = broker.connect()
    producer.send(msg(broker, topic, b"while-away", persistent=True))
    back = broker.connect(client_id="c1")
    sink = Sink()
    back.subscribe("s", topic, sink, SubscribeOptions(durable_name="sub"))
    await tick()
    assert sink.bodies == [b"while-away"]
    with pytest.raises(SubscriptionError):
        broker.connect(client_id="c1")


@pytest.mark.asyncio
async def test_temp_queue_goes_with_its_connection(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    owner = broker.connect()
    temp = owner.create_temp_queue("replies")
    other = broker.connect()
    other.send(msg(broker, temp, b"reply"))
    sink = Sink()
    owner.subscribe("s", temp, sink)
    await tick()
    assert sink.bodies == [b"reply"]
    owner.close()
    with pytest.raises(DestinationError):
        other.send(msg(broker, temp, b"late"))


@pytest.mark.asyncio
async def test_persistent_send_future_resolves(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn: Connection = broker.connect()
    future = conn.send(msg(broker, Q, b"p", persistent=True))
    assert future is not None
    await asyncio.wait_for(future, 5)
    assert conn.send(msg(broker, Q, b"np")) is None


@pytest.mark.asyncio
async def test_message_groups_stick_to_one_consumer(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b = Sink(), Sink()
    conn.subscribe("a", Q, a)
    conn.subscribe("b", Q, b)
    for i in range(6):
        group = "g1" if i % 3 else "g2"
        conn.send(msg(broker, Q, b"%d" % i, group_id=group))
    await tick()
    owners = {e.message.group_id: name for name, sink in (("a", a), ("b", b)) for e in sink.got}
    for name, sink in (("a", a), ("b", b)):
        assert all(owners[e.message.group_id] == name for e in sink.got)
    assert len(a.got) + len(b.got) == 6
    # When the owner leaves, its group moves to a remaining consumer.
    owner_of_g1 = owners["g1"]
    conn.unsubscribe(owner_of_g1)
    survivor = b if owner_of_g1 == "a" else a
    conn.send(msg(broker, Q, b"late", group_id="g1"))
    await tick()
    assert survivor.bodies[-1] == b"late"


@pytest.mark.asyncio
async def test_retained_message_set_replaced_cleared(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    topic = Destination.topic("home.temp")
    conn.send(msg(broker, topic, b"20"), retain=True)
    conn.send(msg(broker, topic, b"21"), retain=True)
    sink = Sink()
    conn.subscribe("s", Destination.topic("home.*"), sink, SubscribeOptions(retained=True))
    await tick()
    assert sink.bodies == [b"21"]
    assert sink.got[0].retained
    conn.send(msg(broker, topic, b""), retain=True)  # clears, and is delivered live
    await tick()
    assert sink.bodies == [b"21", b""]
    assert not sink.got[1].retained
    late = Sink()
    conn.subscribe("t", Destination.topic("home.>"), late, SubscribeOptions(retained=True))
    await tick()
    assert late.bodies == []


@pytest.mark.asyncio
async def test_dollar_topics_not_matched_by_leading_wildcards(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    everything, sys_only = Sink(), Sink()
    conn.subscribe("a", Destination.topic(">"), everything)
    conn.subscribe("b", Destination.topic("$SYS.>"), sys_only)
    conn.send(msg(broker, Destination.topic("$SYS.uptime"), b"1"))
    await tick()
    assert everything.bodies == []
    assert sys_only.bodies == [b"1"]


@pytest.mark.asyncio
async def test_takeover_closes_the_older_connection(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    older = broker.connect(client_id="dev-1", takeover=True)
    told: list[bool] = []
    older.on_taken_over = lambda: told.append(True)
    newer = broker.connect(client_id="dev-1", takeover=True)
    assert told == [True] and older.closed and not newer.closed
    assert broker.is_connected("dev-1")


@pytest.mark.asyncio
async def test_shared_subscription_spreads_messages(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b, plain = Sink(), Sink(), Sink()
    topic = Destination.topic("jobs.>")
    conn.subscribe("a", topic, a, SubscribeOptions(shared_group="g"))
    conn.subscribe("b", topic, b, SubscribeOptions(shared_group="g"))
    conn.subscribe("p", topic, plain)
    for i in range(4):
        conn.send(msg(broker, Destination.topic("jobs.x"), b"%d" % i))
    await tick()
    assert len(a.got) == len(b.got) == 2
    assert len(plain.got) == 4
    conn.unsubscribe("a")
    conn.unsubscribe("b")
    assert not broker.shared


@pytest.mark.asyncio
async def test_session_state_and_durable_listing(core: tuple[Broker, Clock]) -> None:
    broker, _ = core
    conn = broker.connect(client_id="dev-2")
    conn.subscribe(
        "s",
        Destination.topic("a.b"),
        Sink(),
        SubscribeOptions(durable_name="a/b", durable_options=b"\x01"),
    )
    assert [i.name for i in broker.durable_subscriptions("dev-2")] == ["a/b"]
    await asyncio.wait_for(broker.set_session_state("mqtt:dev-2", b"state"), 5)
    assert broker.sessions["mqtt:dev-2"] == b"state"
    conn.unsubscribe("s")
    # Resubscribing with other options (an MQTT QoS change) keeps the subscription's messages.
    conn.send(msg(broker, Destination.topic("a.b"), b"kept", persistent=True))
    sink = Sink()
    conn.subscribe(
        "s",
        Destination.topic("a.b"),
        sink,
        SubscribeOptions(durable_name="a/b", durable_options=b"\x02"),
    )
    await tick()
    assert sink.bodies == [b"kept"]
    assert broker.durable_subscriptions("dev-2")[0].options == b"\x02"


@pytest.mark.asyncio
async def test_a_slow_topic_subscription_discards_its_oldest_past_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker(MemoryStore(), policy=DestinationPolicy(pending_message_limit=3))
    broker.start()
    conn = broker.connect()
    sink = Sink()
    topic = Destination.topic("prices")
    consumer = conn.subscribe("slow", topic, sink)
    durable_conn = broker.connect(client_id="c")
    durable_sink = Sink()
    durable = durable_conn.subscribe("d", topic, durable_sink, SubscribeOptions(durable_name="d"))
    consumer.paused = durable.paused = True  # their connections' write buffers are full
    with caplog.at_level("INFO", logger="sealmq.core"):
        for i in range(10):
            conn.send(msg(broker, topic, b"%d" % i))
        starts = [r for r in caplog.records if "discarding the oldest" in r.getMessage()]
        assert len(starts) == 1
        conn.resume(consumer)
    # The newest three waited; the seven before them were discarded, and said so once.
    await tick()
    assert sink.bodies == [b"7", b"8", b"9"]
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "'slow'" in warning.getMessage() and "discarded 7 messages" in warning.getMessage()
    assert broker.discarded_messages == 7
    # A durable subscription keeps everything (its messages are the store's to hold).
    durable_conn.resume(durable)
    await tick()
    assert len(durable_sink.got) == 10
    # A new episode is counted afresh.
    consumer.paused = True
    for _ in range(5):
        conn.send(msg(broker, topic, b"again"))
    conn.unsubscribe("slow")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "discarded 2 messages" in warnings[1]
    await broker.close()


@pytest.mark.asyncio
async def test_a_paused_queue_consumer_leaves_messages_in_the_queue(
    core: tuple[Broker, Clock],
) -> None:
    broker, _ = core
    conn = broker.connect()
    stuck, other = Sink(), Sink()
    consumer = conn.subscribe("stuck", Q, stuck)
    consumer.paused = True
    for i in range(2000):
        conn.send(msg(broker, Q, b"%d" % i))
    await tick()
    assert stuck.got == []
    assert len(broker.queues["orders"]) == 2000  # no pending limit on a queue
    conn.subscribe("other", Q, other)
    await tick()
    assert len(other.got) == 2000


@pytest.mark.asyncio
async def test_a_bounded_durable_subscription_settles_what_it_discards() -> None:
    """An MQTT QoS 0 subscription of a persistent session: its discarded persistent
    messages must not come back from the store after a restart."""
    store = MemoryStore()
    broker = Broker(store)
    broker.start()
    conn = broker.connect(client_id="c")
    topic = Destination.topic("t")
    consumer = conn.subscribe("d", topic, Sink(), SubscribeOptions(durable_name="d"))
    assert consumer.queue is not None
    consumer.queue.pending_limit = 2
    conn.close()  # away: everything waits
    for i in range(5):
        future = broker.send(msg(broker, topic, b"%d" % i, persistent=True))
        assert future is not None
        await future
    kept = [s.message.body for s in store.snapshot().messages]
    assert kept == [b"3", b"4"]
    await broker.close()
