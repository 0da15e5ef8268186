"""Dispatch: filters without head-of-line blocking, exclusive consumers, consumer priority,
message groups that never block each other, pull, link credit with drain, browsing, and
the dispatch tick that keeps delivery off the sender's call stack."""

from __future__ import annotations

import pytest

from sealmq.core.broker import Broker, SubscribeOptions
from sealmq.core.clock import FakeClock
from sealmq.core.model import Message
from sealmq.core.queues import AckMode
from tests.core.support import Q, Sink, core, msg, tick

__all__ = ["core"]

Core = tuple[Broker, FakeClock]


def color(name: str) -> SubscribeOptions:
    return SubscribeOptions(filter=lambda m: m.properties.get("color") == name)


def colored(broker: Broker, body: bytes, name: str, **kw: object) -> Message:
    return msg(broker, body, properties={"color": name}, **kw)


def manual(prefetch: int, **kw: object) -> SubscribeOptions:
    return SubscribeOptions(ack_mode=AckMode.INDIVIDUAL, prefetch=prefetch, **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_send_never_delivers_on_the_senders_call_stack(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    conn.subscribe("s", Q, sink)
    conn.send(msg(broker, b"a"))
    conn.send(msg(broker, b"b"))
    assert sink.got == []  # both wait for the tick's dispatch step
    await tick()
    assert sink.bodies == [b"a", b"b"]


@pytest.mark.asyncio
async def test_a_message_nobody_accepts_does_not_block_the_ones_behind_it(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    red = Sink()
    conn.subscribe("red", Q, red, color("red"))
    conn.send(colored(broker, b"blue-1", "blue"))
    conn.send(colored(broker, b"red-1", "red"))
    conn.send(colored(broker, b"red-2", "red"))
    await tick()
    assert red.bodies == [b"red-1", b"red-2"]
    assert len(broker.queues["orders"]) == 1  # blue-1 stays queued
    anyone = Sink()
    conn.subscribe("any", Q, anyone)
    await tick()
    assert anyone.bodies == [b"blue-1"]
    assert len(broker.queues["orders"]) == 0


@pytest.mark.asyncio
async def test_a_filtering_consumer_without_credit_holds_only_its_own(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    red, blue = Sink(), Sink()
    red_consumer = conn.subscribe(
        "red", Q, red, manual(1, filter=lambda m: m.properties.get("color") == "red")
    )
    conn.subscribe("blue", Q, blue, color("blue"))
    for body, name in ((b"r1", "red"), (b"r2", "red"), (b"b1", "blue"), (b"b2", "blue")):
        conn.send(colored(broker, body, name))
    await tick()
    assert red.bodies == [b"r1"]
    assert blue.bodies == [b"b1", b"b2"]  # r2 waits for red without stopping them
    conn.ack(red_consumer, red.ids[0], cumulative=False, transaction=None)
    await tick()
    assert red.bodies == [b"r1", b"r2"]


@pytest.mark.asyncio
async def test_message_priority_still_orders_what_is_held(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    conn.send(colored(broker, b"low", "red", priority=1))
    conn.send(colored(broker, b"high", "red", priority=8))
    conn.send(colored(broker, b"blue", "blue", priority=9))
    await tick()
    blue = Sink()
    conn.subscribe("blue", Q, blue, color("blue"))
    await tick()
    red = Sink()
    conn.subscribe("red", Q, red, color("red"))
    await tick()
    assert blue.bodies == [b"blue"]
    assert red.bodies == [b"high", b"low"]


@pytest.mark.asyncio
async def test_one_exclusive_consumer_receives_and_the_next_takes_over(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    first, second, plain = Sink(), Sink(), Sink()
    conn.subscribe("first", Q, first, manual(10, exclusive=True))
    conn.subscribe("second", Q, second, SubscribeOptions(exclusive=True))
    conn.subscribe("plain", Q, plain)
    for i in range(3):
        conn.send(msg(broker, b"%d" % i))
    await tick()
    assert first.bodies == [b"0", b"1", b"2"]
    assert second.got == [] and plain.got == []
    conn.unsubscribe("first")  # its unacked messages go to the next exclusive consumer
    conn.send(msg(broker, b"3"))
    await tick()
    assert second.bodies == [b"0", b"1", b"2", b"3"]
    assert second.counts == [1, 1, 1, 0]
    assert plain.got == []
    conn.unsubscribe("second")  # no exclusive consumer left: the others share
    conn.send(msg(broker, b"4"))
    await tick()
    assert plain.bodies == [b"4"]


@pytest.mark.asyncio
async def test_higher_priority_consumers_first_while_they_have_credit(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    low, high = Sink(), Sink()
    conn.subscribe("low", Q, low)
    high_consumer = conn.subscribe("high", Q, high, manual(2, priority=5))
    for i in range(5):
        conn.send(msg(broker, b"%d" % i))
    await tick()
    assert high.bodies == [b"0", b"1"]
    assert low.bodies == [b"2", b"3", b"4"]
    conn.ack(high_consumer, high.ids[0], cumulative=False, transaction=None)
    conn.send(msg(broker, b"5"))
    await tick()
    assert high.bodies == [b"0", b"1", b"5"]


@pytest.mark.asyncio
async def test_a_group_waiting_for_its_owner_never_blocks_other_groups(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b = Sink(), Sink()
    a_consumer = conn.subscribe("a", Q, a, manual(1))
    conn.subscribe("b", Q, b, manual(10))
    conn.send(msg(broker, b"g1-1", group_id="g1"))  # a owns g1
    await tick()
    conn.send(msg(broker, b"g1-2", group_id="g1"))  # waits for a
    conn.send(msg(broker, b"g2-1", group_id="g2"))
    conn.send(msg(broker, b"plain"))
    await tick()
    assert a.bodies == [b"g1-1"]
    assert b.bodies == [b"g2-1", b"plain"]
    conn.ack(a_consumer, a.ids[0], cumulative=False, transaction=None)
    conn.send(msg(broker, b"g2-2", group_id="g2"))
    await tick()
    assert a.bodies == [b"g1-1", b"g1-2"]
    assert b.bodies == [b"g2-1", b"plain", b"g2-2"]
    conn.unsubscribe("a")  # g1 goes to whoever gets its next message
    conn.send(msg(broker, b"g1-3", group_id="g1"))
    await tick()
    assert b.bodies[-2:] == [b"g1-2", b"g1-3"]  # g1-2 redelivered first, then g1-3


@pytest.mark.asyncio
async def test_group_seq_minus_one_closes_the_group(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    a, b = Sink(), Sink()
    conn.subscribe("a", Q, a, manual(3))  # three unacked deliveries fill it
    conn.subscribe("b", Q, b, manual(10))
    conn.send(msg(broker, b"g-1", group_id="g", group_seq=1))
    conn.send(msg(broker, b"g-2", group_id="g", group_seq=2))
    conn.send(msg(broker, b"g-end", group_id="g", group_seq=-1))  # to its owner, then closed
    await tick()
    assert a.bodies == [b"g-1", b"g-2", b"g-end"]
    assert "g" not in broker.queues["orders"].groups
    # The group is closed, so its next message need not wait for full ``a``.
    conn.send(msg(broker, b"g-again", group_id="g", group_seq=1))
    await tick()
    assert b.bodies == [b"g-again"]


@pytest.mark.asyncio
async def test_a_pull_consumer_receives_only_what_it_asks_for(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("p", Q, sink, SubscribeOptions(prefetch=0))
    for i in range(3):
        conn.send(msg(broker, b"%d" % i))
    await tick()
    assert sink.got == []
    conn.pull(consumer, 2)
    await tick()
    assert sink.bodies == [b"0", b"1"]
    conn.pull(consumer)
    conn.send(msg(broker, b"3"))
    await tick()
    assert sink.bodies == [b"0", b"1", b"2"]
    assert len(broker.queues["orders"]) == 1


@pytest.mark.asyncio
async def test_a_pull_waits_for_the_next_message_when_none_is_there(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe("p", Q, sink, SubscribeOptions(prefetch=0))
    conn.pull(consumer)
    await tick()
    conn.send(msg(broker, b"late"))
    await tick()
    assert sink.bodies == [b"late"]


@pytest.mark.asyncio
async def test_drain_uses_up_credit_now_or_reports_it_spent(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe(
        "link", Q, sink, SubscribeOptions(prefetch=0, on_drained=sink.drain_done)
    )
    conn.send(msg(broker, b"0"))
    conn.send(msg(broker, b"1"))
    conn.flow(consumer, 5, drain=True)
    await tick()
    assert sink.bodies == [b"0", b"1"]
    assert sink.drained == 1
    assert consumer.credit == 0
    conn.send(msg(broker, b"2"))  # no credit left: it waits
    await tick()
    assert sink.bodies == [b"0", b"1"]
    conn.flow(consumer, 1)  # credit without drain: kept until a message comes
    await tick()
    assert consumer.credit == 0 and sink.bodies == [b"0", b"1", b"2"]
    conn.flow(consumer, 3)
    await tick()
    assert consumer.credit == 3 and sink.drained == 1


@pytest.mark.asyncio
async def test_a_browser_walks_the_queue_without_consuming_and_hears_its_end(
    core: Core,
) -> None:
    broker, _ = core
    conn = broker.connect()
    for i in range(3):
        conn.send(colored(broker, b"%d" % i, "red" if i != 1 else "blue"))
    await tick()
    everything, reds = Sink(), Sink()
    conn.subscribe(
        "all", Q, everything, SubscribeOptions(browse=True, on_browse_end=everything.browse_end)
    )
    conn.subscribe(
        "reds",
        Q,
        reds,
        SubscribeOptions(
            browse=True,
            filter=lambda m: m.properties.get("color") == "red",
            on_browse_end=reds.browse_end,
        ),
    )
    await tick()
    assert everything.bodies == [b"0", b"1", b"2"] and everything.ended == 1
    assert reds.bodies == [b"0", b"2"] and reds.ended == 1
    assert len(broker.queues["orders"]) == 3
    conn.send(msg(broker, b"later"))  # a browse is a walk over what was there
    consumer = Sink()
    conn.subscribe("c", Q, consumer)
    await tick()
    assert everything.bodies == [b"0", b"1", b"2"] and everything.ended == 1
    assert consumer.bodies == [b"0", b"1", b"2", b"later"]


@pytest.mark.asyncio
async def test_a_pull_browser_walks_as_far_as_its_credit(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    for i in range(3):
        conn.send(msg(broker, b"%d" % i))
    sink = Sink()
    browser = conn.subscribe(
        "b", Q, sink, SubscribeOptions(browse=True, prefetch=0, on_browse_end=sink.browse_end)
    )
    await tick()
    assert sink.got == []
    conn.pull(browser, 2)
    await tick()
    assert sink.bodies == [b"0", b"1"] and sink.ended == 0
    conn.pull(browser, 5)
    await tick()
    assert sink.bodies == [b"0", b"1", b"2"] and sink.ended == 1


@pytest.mark.asyncio
async def test_only_queues_can_be_browsed(core: Core) -> None:
    broker, _ = core
    from sealmq.core.errors import SubscriptionError
    from sealmq.core.model import Destination

    with pytest.raises(SubscriptionError):
        broker.connect().subscribe(
            "b", Destination.topic("t"), Sink(), SubscribeOptions(browse=True)
        )


@pytest.mark.asyncio
async def test_a_topic_fans_out_each_message_to_every_subscription_in_one_tick(
    core: Core,
) -> None:
    broker, _ = core
    from sealmq.core.model import Destination

    topic = Destination.topic("prices")
    conn = broker.connect()
    order: list[tuple[str, bytes]] = []

    class Tagged(Sink):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def deliver(self, consumer: object, entry: object) -> None:  # type: ignore[override]
            order.append((self.name, entry.message.body))  # type: ignore[attr-defined]

    for name in ("a", "b"):
        conn.subscribe(name, topic, Tagged(name))
    for i in range(3):
        conn.send(msg(broker, b"%d" % i, topic))
    await tick()
    # Within one dispatch round each subscription gets its run; rounds interleave them.
    assert sorted(order) == [(n, b"%d" % i) for n in "ab" for i in range(3)]
    assert [body for name, body in order if name == "a"] == [b"0", b"1", b"2"]


@pytest.mark.asyncio
async def test_a_paused_consumers_drain_is_answered_once_it_resumes(core: Core) -> None:
    broker, _ = core
    conn = broker.connect()
    sink = Sink()
    consumer = conn.subscribe(
        "link", Q, sink, SubscribeOptions(prefetch=0, on_drained=sink.drain_done)
    )
    consumer.paused = True  # its transport is full
    conn.send(msg(broker, b"0"))
    conn.flow(consumer, 3, drain=True)
    await tick()
    assert sink.got == [] and sink.drained == 0
    conn.resume(consumer)
    await tick()
    assert sink.bodies == [b"0"] and sink.drained == 1 and consumer.credit == 0
    conn.flow(consumer, 2, drain=True)  # nothing queued: reported spent at once
    await tick()
    assert sink.drained == 2 and consumer.credit == 0


@pytest.mark.asyncio
async def test_a_queue_nobody_consumes_costs_no_dispatch_step(core: Core) -> None:
    broker, _ = core
    calls: list[object] = []
    conn = broker.connect()
    conn.send(msg(broker, b"x"))
    original = broker.wake

    def counting(queue: object) -> None:
        calls.append(queue)
        original(queue)  # type: ignore[arg-type]

    broker.wake = counting  # type: ignore[method-assign]
    conn.send(msg(broker, b"y"))
    assert calls == []
    conn.subscribe("s", Q, Sink())
    assert len(calls) == 1
