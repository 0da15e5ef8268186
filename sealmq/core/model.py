"""The protocol-neutral message model every adapter maps to and from.

A :class:`Message` is created once per send and shared by every subscriber
that receives it: per-delivery state (redelivery count, which consumer holds
it) lives beside it in the core, never in a copy of the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "DEFAULT_PRIORITY",
    "BodyKind",
    "Destination",
    "DestinationKind",
    "DurableSubscriptionInfo",
    "Message",
    "PropertyValue",
    "durable_key",
    "queue_key",
]

PropertyValue = bool | int | float | str | bytes | None

#: JMS default priority, which ActiveMQ uses when a producer names none.
DEFAULT_PRIORITY = 4


class DestinationKind(IntEnum):
    QUEUE = 0
    TOPIC = 1
    TEMP_QUEUE = 2
    TEMP_TOPIC = 3


@dataclass(frozen=True, slots=True)
class Destination:
    """A queue or topic by its ActiveMQ name (dot separated, ``*`` and ``>`` wildcards)."""

    kind: DestinationKind
    name: str

    @property
    def is_queue(self) -> bool:
        return self.kind in (DestinationKind.QUEUE, DestinationKind.TEMP_QUEUE)

    @property
    def is_topic(self) -> bool:
        return not self.is_queue

    @property
    def is_temporary(self) -> bool:
        return self.kind in (DestinationKind.TEMP_QUEUE, DestinationKind.TEMP_TOPIC)

    @property
    def is_wildcard(self) -> bool:
        return any(part in ("*", ">") for part in self.name.split("."))

    @classmethod
    def queue(cls, name: str) -> Destination:
        return cls(DestinationKind.QUEUE, name)

    @classmethod
    def topic(cls, name: str) -> Destination:
        return cls(DestinationKind.TOPIC, name)

    def __str__(self) -> str:
        prefix = ("queue://", "topic://", "temp-queue://", "temp-topic://")[self.kind]
        return prefix + self.name


class BodyKind(IntEnum):
    """What the body bytes mean, so a message crosses protocols as ActiveMQ maps it."""

    BYTES = 0
    TEXT = 1  # UTF-8 text
    MAP = 2
    OBJECT = 3
    STREAM = 4
    EMPTY = 5


@dataclass(slots=True, eq=False)
class Message:
    """One message as the broker knows it.

    ``expiration`` and ``timestamp`` are milliseconds since the Unix epoch;
    ``expiration == 0`` means the message never expires.
    """

    message_id: str
    destination: Destination
    body: bytes = b""
    body_kind: BodyKind = BodyKind.BYTES
    persistent: bool = False
    priority: int = DEFAULT_PRIORITY
    expiration: int = 0
    timestamp: int = 0
    correlation_id: str | None = None
    reply_to: Destination | None = None
    type: str | None = None
    group_id: str | None = None
    group_seq: int = 0
    properties: dict[str, PropertyValue] = field(default_factory=dict)
    #: Redeliveries already made before this copy was stored (ActiveMQ's JMSXDeliveryCount - 1).
    redelivery_count: int = 0
    #: Set on messages moved to a dead-letter queue: where the message was first sent.
    original_destination: Destination | None = None
    #: The producer's connection id, for no-local subscriptions; never persisted.
    origin: str | None = None
    qos: int | None = None
    retain: bool = False

    def expired(self, now_ms: int) -> bool:
        return self.expiration != 0 and now_ms >= self.expiration


@dataclass(frozen=True, slots=True)
class DurableSubscriptionInfo:
    """A durable topic subscription as it is persisted: ``(client_id, name)`` is its key."""

    client_id: str
    name: str
    destination: Destination
    selector: str | None = None
    no_local: bool = False
    #: Protocol-specific options the adapter needs back after a restart (MQTT: granted
    #: QoS, retain-as-published, subscription identifier), opaque to the core and store.
    options: bytes = b""

    @property
    def key(self) -> str:
        return durable_key(self.client_id, self.name)


def durable_key(client_id: str, name: str) -> str:
    """The owner key under which the store tracks a durable subscription's messages."""
    # Length-prefixed so that ("a:b", "c") and ("a", "b:c") never collide.
    return f"sub:{len(client_id)}:{client_id}:{name}"


def queue_key(name: str) -> str:
    """The owner key under which the store tracks a queue's messages."""
    return f"queue:{name}"
