"""The authorization map, enforced by the core for every adapter (ActiveMQ's semantics)."""

from __future__ import annotations

import logging

import pytest

from sealmq.core.authorization import (
    AuthorizationEntry,
    AuthorizationMap,
    Permission,
    TemporaryDestinationEntry,
)
from sealmq.core.broker import Broker
from sealmq.core.connection import SubscribeOptions
from sealmq.core.errors import AuthorizationError
from sealmq.core.model import Destination, DestinationKind
from sealmq.core.security import Principal
from sealmq.core.wildcards import covers
from sealmq.store.memory import MemoryStore
from tests.core.support import Sink, msg, tick

Q, T = Destination.queue, Destination.topic


def _entry(
    pattern: Destination, read: str = "", write: str = "", admin: str = ""
) -> AuthorizationEntry:
    def groups(text: str) -> frozenset[str]:
        return frozenset(filter(None, text.split(",")))

    return AuthorizationEntry(pattern, groups(read), groups(write), groups(admin))


MAP = AuthorizationMap(
    [
        _entry(
            Q("orders.>"), read="readers,admins", write="writers,admins", admin="admins,writers"
        ),
        _entry(T("prices.*"), read="readers", write="writers", admin="writers"),
        _entry(T("ActiveMQ.Advisory.>"), read="*", admin="*"),
        _entry(Q("orders.audit"), read="auditors"),
    ]
)


def _user(name: str, *groups: str) -> Principal:
    return Principal(name, frozenset(groups))


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("a.>", "a", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a.*", True),
        ("a.>", "a.b.>", True),
        ("a.*", "a.b", True),
        ("a.*", "a.*", True),
        ("a.*", "a.>", False),
        ("a.*", "a.b.c", False),
        ("a.b", "a.*", False),
        ("a.b", "a.b", True),
        (">", "$SYS.x", True),
        ("*.b", "a.b", True),
        ("*.b", "*.b", True),
        ("a.b", "a", False),
    ],
)
def test_an_entry_covers_all_a_name_can_stand_for(pattern: str, name: str, expected: bool) -> None:
    assert covers(pattern, name) is expected


def test_groups_are_the_union_of_every_matching_entry_and_nothing_matching_is_nobody() -> None:
    assert MAP.groups_for(Permission.READ, Q("orders.audit")) == {"readers", "admins", "auditors"}
    assert MAP.groups_for(Permission.READ, Q("orders.new")) == {"readers", "admins"}
    assert MAP.groups_for(Permission.READ, Q("billing")) == frozenset()
    # The same name as a topic is another destination.
    assert MAP.groups_for(Permission.READ, T("orders.new")) == frozenset()
    # "*" is every authenticated user.
    assert MAP.groups_for(Permission.READ, T("ActiveMQ.Advisory.Queue")) is None
    assert MAP.allows(_user("x"), Permission.READ, T("ActiveMQ.Advisory.Queue"))
    assert not MAP.allows(_user("x"), Permission.WRITE, T("ActiveMQ.Advisory.Queue"))


def test_a_wildcard_needs_an_entry_covering_all_of_it() -> None:
    reader = _user("r", "readers")
    assert MAP.allows(reader, Permission.READ, T("prices.*"))
    assert not MAP.allows(reader, Permission.READ, T("prices.>"))
    assert not MAP.allows(reader, Permission.READ, T(">"))
    assert MAP.allows(reader, Permission.READ, Q("orders.>"))


def test_temporary_destinations_without_an_entry_are_everyones() -> None:
    temp = Destination(DestinationKind.TEMP_QUEUE, "c1:x")
    assert MAP.groups_for(Permission.ADMIN, temp) is None
    strict = AuthorizationMap(
        [], TemporaryDestinationEntry(frozenset({"a"}), frozenset(), frozenset({"a"}))
    )
    assert strict.allows(_user("u", "a"), Permission.ADMIN, temp)
    assert not strict.allows(_user("u", "b"), Permission.ADMIN, temp)
    assert not strict.allows(_user("u", "a"), Permission.WRITE, temp)


@pytest.mark.asyncio
async def test_the_core_refuses_reads_writes_and_creation_the_map_does_not_grant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker(MemoryStore(), authorization=MAP)
    broker.start()
    writer = broker.connect(principal=_user("wanda", "writers"), peer="10.0.0.7:5000")
    reader = broker.connect(principal=_user("ryan", "readers"), peer="10.0.0.8:5000")
    stranger = broker.connect(principal=_user("bob"), peer="10.0.0.9:5000")
    with caplog.at_level(logging.INFO, logger="sealmq.security"):
        # The reader may read orders.new but not create it: the writer's first send does.
        with pytest.raises(
            AuthorizationError, match=r"not authorized to create: queue://orders\.new"
        ):
            reader.subscribe("s", Q("orders.new"), Sink())
        with pytest.raises(AuthorizationError, match="ryan is not authorized to write to"):
            reader.send(msg(broker, b"x", Q("orders.new")))
        writer.send(msg(broker, b"first", Q("orders.new")))
        sink = Sink()
        reader.subscribe("s", Q("orders.new"), sink)
        await tick()
        assert sink.bodies == [b"first"]
        with pytest.raises(AuthorizationError, match="wanda is not authorized to read from"):
            writer.subscribe("w", Q("orders.new"), Sink())
        with pytest.raises(AuthorizationError):
            writer.subscribe("b", Q("orders.new"), Sink(), SubscribeOptions(browse=True))
        for denied in (
            lambda: stranger.send(msg(broker, b"x", Q("orders.new"))),
            lambda: stranger.subscribe("s", Q("orders.new"), Sink()),
            lambda: stranger.send(msg(broker, b"x", Q("anything"))),
            lambda: stranger.subscribe("s", T(">"), Sink()),
        ):
            with pytest.raises(AuthorizationError):
                denied()
        # Twice the same refusal: one log line.
        for _ in range(2):
            with pytest.raises(AuthorizationError):
                stranger.send(msg(broker, b"secret body", Q("billing")))
    lines = [r.getMessage() for r in caplog.records if "billing" in r.getMessage()]
    assert lines == [
        "denied: user 'bob' from 10.0.0.9:5000: User bob is not authorized to write to: "
        "queue://billing"
    ]
    assert "secret body" not in caplog.text
    await broker.close()


@pytest.mark.asyncio
async def test_a_refused_send_in_a_transaction_is_refused_at_send() -> None:
    broker = Broker(MemoryStore(), authorization=MAP)
    broker.start()
    reader = broker.connect(principal=_user("ryan", "readers"))
    reader.begin("t")
    with pytest.raises(AuthorizationError):
        reader.send(msg(broker, b"x", Q("orders.new")), "t")
    assert reader.commit("t") is None
    assert "orders.new" not in broker.queues
    await broker.close()


@pytest.mark.asyncio
async def test_temporary_destinations_are_read_only_by_their_connection() -> None:
    broker = Broker(MemoryStore(), authorization=MAP)
    broker.start()
    owner = broker.connect(principal=_user("o"))
    other = broker.connect(principal=_user("p"))
    queue = owner.create_temp_queue("replies")
    topic = owner.create_temp_topic("events")
    sink = Sink()
    owner.subscribe("s", queue, sink)
    owner.subscribe("t", topic, Sink())
    other.send(msg(broker, b"reply", queue))  # writing a reply is everyone's
    await tick()
    assert sink.bodies == [b"reply"]
    for destination in (queue, topic):
        with pytest.raises(AuthorizationError, match="another connection's"):
            other.subscribe("x" + destination.name, destination, Sink())
    await broker.close()


@pytest.mark.asyncio
async def test_a_temporary_entry_restricts_who_may_create_and_send() -> None:
    temp = TemporaryDestinationEntry(
        read=frozenset({"apps"}), write=frozenset({"apps"}), admin=frozenset({"apps"})
    )
    broker = Broker(MemoryStore(), authorization=AuthorizationMap([], temp))
    broker.start()
    app = broker.connect(principal=_user("a", "apps"))
    guest = broker.connect(principal=_user("g", "guests"))
    queue = app.create_temp_queue("q")
    with pytest.raises(AuthorizationError, match="not authorized to create: temp-queue://"):
        guest.create_temp_queue("q")
    with pytest.raises(AuthorizationError, match="not authorized to write to: temp-queue://"):
        guest.send(msg(broker, b"x", queue))
    await broker.close()


@pytest.mark.asyncio
async def test_no_map_and_broker_connections_are_not_checked() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    anyone = broker.connect(principal=_user("bob"))
    anyone.send(msg(broker, b"x", Q("billing")))
    anyone.subscribe("s", T(">"), Sink())
    broker.set_authorization(MAP)
    with pytest.raises(AuthorizationError):
        anyone.send(msg(broker, b"x", Q("billing")))
    internal = broker.connect()
    internal.send(msg(broker, b"x", Q("billing")))
    broker.set_authorization(None)
    anyone.send(msg(broker, b"x", Q("billing")))
    await broker.close()
