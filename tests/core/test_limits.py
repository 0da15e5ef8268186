"""Abuse limits in the core (connections, subscriptions, destinations) and the
failed-login throttle, on a fake clock."""

from __future__ import annotations

import pytest

from sealmq.core.broker import Broker
from sealmq.core.errors import LimitError
from sealmq.core.limits import BrokerLimits, LoginThrottle, address_host
from sealmq.core.model import Destination
from sealmq.core.security import Principal
from sealmq.store.memory import MemoryStore
from tests.core.support import Sink, msg


def _user(name: str) -> Principal:
    return Principal(name)


def test_address_host() -> None:
    assert address_host("10.0.0.7:5000") == "10.0.0.7"
    assert address_host("::1:5000") == "::1"
    assert address_host("[::1]:5000") == "::1"
    assert address_host(None) is None and address_host("?") is None


@pytest.mark.asyncio
async def test_connections_are_limited_in_total_per_user_and_per_address() -> None:
    limits = BrokerLimits(
        max_connections=5, max_connections_per_user=2, max_connections_per_address=3
    )
    broker = Broker(MemoryStore(), limits=limits)
    broker.start()
    a1 = broker.connect(principal=_user("a"), peer="10.0.0.1:1")
    broker.connect(principal=_user("a"), peer="10.0.0.2:1")
    with pytest.raises(LimitError, match="user a has its maximum of 2 connections"):
        broker.connect(principal=_user("a"), peer="10.0.0.3:1")
    broker.connect(principal=_user("b"), peer="10.0.0.1:2")
    broker.connect(principal=_user("c"), peer="10.0.0.1:3")
    with pytest.raises(LimitError, match=r"address 10\.0\.0\.1 has its maximum of 3"):
        broker.connect(principal=_user("d"), peer="10.0.0.1:4")
    broker.connect(principal=_user("d"), peer="10.0.0.9:4")
    with pytest.raises(LimitError, match="the broker has its maximum of 5 connections"):
        broker.connect(principal=_user("e"), peer="10.0.0.8:4")
    broker.connect()  # the broker's own connections are not counted
    a1.close()  # frees a place for its user, its address and the total
    broker.connect(principal=_user("a"), peer="10.0.0.1:5")
    await broker.close()


@pytest.mark.asyncio
async def test_subscriptions_per_connection_and_destinations_are_limited() -> None:
    broker = Broker(
        MemoryStore(), limits=BrokerLimits(max_subscriptions_per_connection=2, max_destinations=3)
    )
    broker.start()
    conn = broker.connect(principal=_user("a"))
    conn.subscribe("1", Destination.topic("t.a"), Sink())
    conn.subscribe("2", Destination.topic("t.b"), Sink())
    with pytest.raises(LimitError, match="at most 2 subscriptions"):
        conn.subscribe("3", Destination.topic("t.c"), Sink())
    conn.unsubscribe("1")
    conn.subscribe("3", Destination.queue("q.1"), Sink())
    conn.send(msg(broker, b"x", Destination.queue("q.2")))
    conn.create_temp_queue("t")
    with pytest.raises(LimitError, match="maximum of 3 destinations"):
        conn.send(msg(broker, b"x", Destination.queue("q.3")))
    with pytest.raises(LimitError):
        conn.create_temp_topic("t")
    conn.send(msg(broker, b"x", Destination.queue("q.2")))  # an existing one is fine
    await broker.close()


def test_failed_logins_are_delayed_then_refused_until_the_lockout_ends() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=5, lockout=60.0, clock=lambda: now[0])
    delays = [throttle.failed("bob", "10.0.0.1") for _ in range(4)]
    assert delays == [0.0, 0.0, 0.0, 0.5]
    assert throttle.locked("bob", "10.0.0.2") is None
    assert throttle.failed("bob", "10.0.0.1") == 1.0
    # The user from anywhere, and the address for any user, are refused unchecked.
    assert throttle.locked("bob", "10.0.0.2") == "user bob"
    assert throttle.locked("alice", "10.0.0.1") == "address 10.0.0.1"
    assert throttle.locked("alice", "10.0.0.2") is None
    now[0] = 59.0
    assert throttle.locked("bob", None) == "user bob"
    now[0] = 60.0
    assert throttle.locked("bob", "10.0.0.1") is None
    # A success clears its user, not its address.
    for _ in range(4):
        throttle.failed("carol", "10.0.0.3")
    throttle.succeeded("carol")
    assert throttle.failed("carol", None) == 0.0
    assert throttle.failed(None, "10.0.0.3") == 1.0  # its 5th
    assert LoginThrottle(max_failures=0).failed("x", "y") == 0.0
