"""Advisory topics: what happens in the broker, published as ActiveMQ names it.

Any client of any protocol may subscribe to these topics (``ActiveMQ.Advisory.>``):

=========================================================  ==================================
topic                                                      when
=========================================================  ==================================
``ActiveMQ.Advisory.Connection``                           a client connects or disconnects
``ActiveMQ.Advisory.Consumer.Queue.<name>`` (``.Topic.``,  a consumer starts or stops
``.TempQueue.``, ``.TempTopic.``)
``ActiveMQ.Advisory.Queue`` (``.Topic``, ``.TempQueue``,   a destination is made or removed
``.TempTopic``)
``ActiveMQ.Advisory.Expired.Queue.<name>`` (``.Topic.``)   a message expired there
``ActiveMQ.Advisory.MessageDLQd.Queue.<name>`` (``.Topic.``)  a message was dead-lettered
``ActiveMQ.Advisory.SlowConsumer.Queue.<name>``            a subscription began discarding
(``.Topic.``)
=========================================================  ==================================

Each advisory is a non-persistent text message of ``type`` ``Advisory`` whose body is
a JSON object saying what happened (``event``, ids, names; never a message body), with
ActiveMQ's properties: ``originBrokerId`` and ``originBrokerName`` always,
``consumerCount`` on consumer advisories, ``orignalMessageId`` (ActiveMQ's spelling)
on expiry and dead-letter ones. ActiveMQ puts an OpenWire structure in the body
instead; its STOMP ``jms-advisory-json`` transformation gives JSON like this.

Nothing is built for a topic nobody subscribes to: an advisory costs a dictionary
lookup when no one listens. ``[advisories] enabled = false`` turns them off
(ActiveMQ's ``advisorySupport``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sealmq.core.authorization import ADVISORY_PREFIX
from sealmq.core.events import (
    Connected,
    DeadLettered,
    DestinationCreated,
    DestinationRemoved,
    Disconnected,
    Expired,
    SlowConsumer,
    Subscribed,
    Unsubscribed,
)
from sealmq.core.model import BodyKind, Destination, DestinationKind, Message

if TYPE_CHECKING:
    from sealmq.core.broker import Broker

__all__ = ["ADVISORY_PREFIX", "Advisories", "is_advisory"]

_KIND = {
    DestinationKind.QUEUE: "Queue",
    DestinationKind.TOPIC: "Topic",
    DestinationKind.TEMP_QUEUE: "TempQueue",
    DestinationKind.TEMP_TOPIC: "TempTopic",
}


def is_advisory(name: str) -> bool:
    """Whether topic ``name`` is one of the broker's advisory topics."""
    return name.startswith(ADVISORY_PREFIX)


class Advisories:
    """Turns the core's events into advisory messages for whoever subscribed to them."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        events = broker.events
        events.subscribe(Connected, self._connected)
        events.subscribe(Disconnected, self._disconnected)
        events.subscribe(Subscribed, self._subscribed)
        events.subscribe(Unsubscribed, self._unsubscribed)
        events.subscribe(DestinationCreated, self._created)
        events.subscribe(DestinationRemoved, self._removed)
        events.subscribe(Expired, self._expired)
        events.subscribe(DeadLettered, self._dead_lettered)
        events.subscribe(SlowConsumer, self._slow)

    def _publish(self, topic: str, data: dict[str, Any], **properties: Any) -> None:
        broker = self.broker
        if not broker._matching(topic):
            return
        message = Message(
            "",
            Destination.topic(topic),
            json.dumps(data, separators=(",", ":")).encode(),
            body_kind=BodyKind.TEXT,
            type="Advisory",
            content_type="application/json",
            properties={
                "originBrokerId": broker.broker_id,
                "originBrokerName": broker.broker_id,
                **properties,
            },
        )
        broker.send(message)

    def _connected(self, event: Connected) -> None:
        self._publish(
            ADVISORY_PREFIX + "Connection",
            {
                "event": "connected",
                "connectionId": event.connection_id,
                "clientId": event.client_id,
                "userName": event.username,
            },
        )

    def _disconnected(self, event: Disconnected) -> None:
        self._publish(
            ADVISORY_PREFIX + "Connection",
            {
                "event": "disconnected",
                "connectionId": event.connection_id,
                "clientId": event.client_id,
            },
        )

    def _consumer(self, event: Subscribed | Unsubscribed, what: str) -> None:
        destination = event.destination
        topic = f"{ADVISORY_PREFIX}Consumer.{_KIND[destination.kind]}.{destination.name}"
        if is_advisory(destination.name) and destination.is_topic:
            return  # consumers of advisories are not advised (as ActiveMQ)
        data: dict[str, Any] = {
            "event": what,
            "connectionId": event.connection_id,
            "consumerId": event.consumer_id,
            "destination": str(destination),
        }
        if isinstance(event, Subscribed):
            data["durableName"] = event.durable_name
            data["browser"] = event.browser
        self._publish(topic, data, consumerCount=self._consumer_count(destination))

    def _consumer_count(self, destination: Destination) -> int:
        broker = self.broker
        if destination.is_queue:
            queue = broker.queues.get(destination.name)
            return 0 if queue is None else len(queue.consumers) + len(queue.browsers)
        return sum(
            len(sub.queue.consumers)
            for sub in broker.topic_subscriptions
            if sub.pattern == destination.name
        )

    def _subscribed(self, event: Subscribed) -> None:
        self._consumer(event, "consumer-started")

    def _unsubscribed(self, event: Unsubscribed) -> None:
        self._consumer(event, "consumer-stopped")

    def _destination(self, destination: Destination, what: str) -> None:
        if destination.is_topic and is_advisory(destination.name):
            return
        self._publish(
            ADVISORY_PREFIX + _KIND[destination.kind],
            {"event": what, "destination": str(destination)},
        )

    def _created(self, event: DestinationCreated) -> None:
        self._destination(event.destination, "destination-created")

    def _removed(self, event: DestinationRemoved) -> None:
        self._destination(event.destination, "destination-removed")

    def _about_message(self, kind: str, destination: Destination) -> str:
        return f"{ADVISORY_PREFIX}{kind}.{_KIND[destination.kind]}.{destination.name}"

    def _expired(self, event: Expired) -> None:
        destination = event.destination
        if destination.is_topic and is_advisory(destination.name):
            return
        self._publish(
            self._about_message("Expired", destination),
            {"event": "expired", "messageId": event.message_id, "destination": str(destination)},
            orignalMessageId=event.message_id,
        )

    def _dead_lettered(self, event: DeadLettered) -> None:
        if event.dead_letter_queue is None:
            return  # dropped (non-persistent), not dead-lettered: no advisory, as ActiveMQ
        destination = event.destination
        self._publish(
            self._about_message("MessageDLQd", destination),
            {
                "event": "dead-lettered",
                "messageId": event.message_id,
                "destination": str(destination),
                "cause": event.cause,
                "deadLetterQueue": event.dead_letter_queue,
            },
            orignalMessageId=event.message_id,
        )

    def _slow(self, event: SlowConsumer) -> None:
        queue = self.broker.queues.get(event.queue)
        destination = Destination.queue(event.queue) if queue is not None else None
        if destination is None:
            sub = next(
                (s for s in self.broker.topic_subscriptions if s.queue.name == event.queue), None
            )
            destination = Destination.topic(sub.pattern if sub is not None else event.queue)
        self._publish(
            self._about_message("SlowConsumer", destination),
            {
                "event": "slow-consumer" if event.discarded == 0 else "slow-consumer-ended",
                "connectionId": event.connection_id,
                "consumerId": event.consumer_id,
                "destination": str(destination),
                "discarded": event.discarded,
            },
        )
