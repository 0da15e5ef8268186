"""Temporary queues and topics belong to the connection that made them, and die with it."""

from __future__ import annotations

import pytest

from sealmq.core.broker import Broker
from sealmq.core.errors import DestinationError
from sealmq.core.events import DestinationCreated, DestinationRemoved
from sealmq.core.model import DestinationKind
from sealmq.store.memory import MemoryStore
from tests.core.support import Recorder, Sink, msg, tick


@pytest.mark.asyncio
async def test_a_temp_topic_lives_as_long_as_its_connection() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    recorder = Recorder(broker)
    owner, other = broker.connect(), broker.connect()
    topic = owner.create_temp_topic("answers")
    assert topic.kind is DestinationKind.TEMP_TOPIC
    assert owner.create_temp_topic("answers") == topic  # the same one, made once
    sink = Sink()
    owner.subscribe("s", topic, sink)
    other.send(msg(broker, b"pong", topic))
    await tick()
    assert sink.bodies == [b"pong"]
    owner.close()
    with pytest.raises(DestinationError, match="does not exist"):
        other.send(msg(broker, b"late", topic))
    with pytest.raises(DestinationError, match="does not exist"):
        other.subscribe("again", topic, Sink())
    kinds = [(type(e), e.destination) for e in recorder.events if hasattr(e, "destination")]
    assert (DestinationCreated, topic) in kinds and (DestinationRemoved, topic) in kinds
    await broker.close()


@pytest.mark.asyncio
async def test_a_temp_destination_is_deleted_before_its_connection_closes() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    recorder = Recorder(broker)
    owner, other = broker.connect(), broker.connect()
    queue = owner.create_temp_queue("replies")
    topic = owner.create_temp_topic("events")
    owner.subscribe("s", queue, Sink())
    with pytest.raises(DestinationError, match="active consumers"):
        owner.delete_temp(queue)  # ActiveMQ's rule: not while it is consumed
    with pytest.raises(DestinationError, match="not this connection's"):
        other.delete_temp(queue)
    owner.unsubscribe("s")
    owner.delete_temp(queue)
    owner.delete_temp(topic)
    with pytest.raises(DestinationError, match="does not exist"):
        other.send(msg(broker, b"late", queue))
    with pytest.raises(DestinationError, match="does not exist"):
        other.send(msg(broker, b"late", topic))
    removed = [e.destination for e in recorder.events if isinstance(e, DestinationRemoved)]
    assert removed == [queue, topic]
    owner.close()  # nothing left to delete, nothing removed twice
    assert [e.destination for e in recorder.events if isinstance(e, DestinationRemoved)] == [
        queue,
        topic,
    ]
    await broker.close()
