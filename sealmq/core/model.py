"""The protocol-neutral message model every adapter maps to and from.

A :class:`Message` is created once per send and shared by every subscriber
that receives it: per-delivery state (redelivery count, which consumer holds
it) lives beside it in the core, never in a copy of the message.

Property values are JMS's types. The common ones are Python's own (``str``,
``bool``, ``int`` for a JMS long, ``float`` for a double, ``bytes``, ``None``), so
a STOMP or MQTT property costs no wrapper; the types Python would lose are small
subclasses that carry their tag in their class (:class:`Byte`, :class:`Short`,
:class:`Int`, :class:`Float32`, :class:`Char`) and behave as the value they wrap
everywhere else. AMQP's extra types map onto :class:`Symbol`, :class:`Timestamp`,
``uuid.UUID`` and ``decimal.Decimal``. ``docs/message-model.md`` has the mapping
of every protocol's headers onto these fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, TypeAlias
from uuid import UUID

if TYPE_CHECKING:
    # Only AMQP decimal values are Decimals: ``decimal`` is imported where one is read.
    from decimal import Decimal

__all__ = [
    "DEFAULT_PRIORITY",
    "MQTT_ANNOTATION",
    "BodyKind",
    "Byte",
    "Char",
    "Destination",
    "DestinationInfo",
    "DestinationKind",
    "DurableSubscriptionInfo",
    "Float32",
    "Int",
    "Message",
    "MessageIdValue",
    "PropertyValue",
    "Short",
    "Symbol",
    "Timestamp",
    "durable_key",
    "id_text",
    "queue_key",
]


_F32 = struct.Struct(">f")


class _Ranged(int):
    """An ``int`` of a fixed width: a JMS/AMQP integer type whose tag Python would lose."""

    __slots__ = ()
    MIN = 0
    MAX = 0

    def __new__(cls, value: int = 0) -> _Ranged:
        self = super().__new__(cls, value)
        if not cls.MIN <= self <= cls.MAX:
            raise ValueError(f"{cls.__name__} out of range: {int(value)}")
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)


class Byte(_Ranged):
    """A JMS byte (AMQP byte): signed 8 bits."""

    __slots__ = ()
    MIN, MAX = -(2**7), 2**7 - 1


class Short(_Ranged):
    """A JMS short (AMQP short): signed 16 bits."""

    __slots__ = ()
    MIN, MAX = -(2**15), 2**15 - 1


class Int(_Ranged):
    """A JMS int (AMQP int): signed 32 bits. A plain ``int`` is a JMS long."""

    __slots__ = ()
    MIN, MAX = -(2**31), 2**31 - 1


class Timestamp(_Ranged):
    """An AMQP timestamp: milliseconds since the Unix epoch, signed 64 bits."""

    __slots__ = ()
    MIN, MAX = -(2**63), 2**63 - 1


class Float32(float):
    """A JMS float (AMQP float): single precision. A plain ``float`` is a double.

    The value is rounded to single precision when made (``OverflowError`` past its range).
    """

    __slots__ = ()

    def __new__(cls, value: float = 0.0) -> Float32:
        return super().__new__(cls, _F32.unpack(_F32.pack(value))[0])

    def __repr__(self) -> str:
        return f"Float32({float(self)!r})"

    def __str__(self) -> str:
        return float.__repr__(self)


class Char(str):
    """A JMS char (AMQP char): one character."""

    __slots__ = ()

    def __new__(cls, value: str) -> Char:
        if len(value) != 1:
            raise ValueError("a Char is one character")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"Char({str(self)!r})"


class Symbol(str):
    """An AMQP symbol: an ASCII name, delivered to JMS as a string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"


#: An application property value; the tagged subclasses above are among ``int``,
#: ``float`` and ``str``.
PropertyValue: TypeAlias = "bool | int | float | str | bytes | UUID | Decimal | None"

#: A protocol-visible message or correlation id: AMQP's string, binary, ulong (an
#: ``int`` from 0 to 2**64 - 1) or uuid; JMS and STOMP use strings.
MessageIdValue = str | bytes | int | UUID

#: Annotation key under which the MQTT adapter keeps what it alone needs of a message:
#: one byte, the QoS it was published with (bits 0-1) and 0x04 if it was published
#: retained. Written only when it says more than ``persistent`` does (QoS 2, retain).
MQTT_ANNOTATION = "mqtt"


def id_text(value: MessageIdValue) -> str:
    """A typed id as a string, for protocols whose ids are strings (STOMP, JMS).

    A string stays itself; the others get the prefixes JMS clients of AMQP use
    (``AMQP_UUID:``, ``AMQP_ULONG:``, ``AMQP_BINARY:`` with upper-case hex).
    """
    if type(value) is str:
        return value
    if isinstance(value, UUID):
        return f"AMQP_UUID:{value}"
    if isinstance(value, bytes):
        return "AMQP_BINARY:" + value.hex().upper()
    if isinstance(value, int):
        return f"AMQP_ULONG:{value}"
    return str(value)


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

    ``expiration``, ``timestamp`` and ``delivery_time`` are milliseconds since the
    Unix epoch; ``expiration == 0`` means the message never expires.

    The core stamps ``message_id``, ``timestamp`` (unless the producer set one) and
    ``user_id`` when the message is sent (``Connection.send``): adapters leave
    ``message_id`` empty and never set ``user_id``.
    """

    #: The broker's own id, the key the store and the index use: assigned by the core.
    message_id: str
    destination: Destination
    body: bytes = b""
    body_kind: BodyKind = BodyKind.BYTES
    persistent: bool = False
    priority: int = DEFAULT_PRIORITY
    expiration: int = 0
    timestamp: int = 0
    correlation_id: MessageIdValue | None = None
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
    #: The authenticated user who sent it (JMSXUserID, AMQP user-id): set by the core.
    user_id: str | None = None
    #: The id the producer gave the message (AMQP message-id, a JMS client's
    #: JMSMessageID), when the protocol lets producers name it; else None.
    client_message_id: MessageIdValue | None = None
    #: MIME type and encoding of the body (AMQP content-type, content-encoding; MQTT 5).
    content_type: str | None = None
    content_encoding: str | None = None
    #: AMQP subject (JMSType when AMQP carries a JMS message).
    subject: str | None = None
    #: AMQP reply-to-group-id.
    reply_to_group_id: str | None = None
    #: Not to be delivered before this time (scheduled delivery); 0: at once.
    delivery_time: int = 0
    #: Ids of the brokers the message has passed through, oldest first (networks of
    #: brokers refuse to forward it to one of them again).
    broker_path: tuple[str, ...] = ()
    #: The producer's id and its count of sent messages, for duplicate detection.
    producer_id: str | None = None
    producer_seq: int = 0
    #: Per protocol (``"mqtt"``, ``"amqp"``, ``"openwire"``): what that protocol's
    #: adapter alone needs back on delivery, opaque to the core and the store.
    annotations: dict[str, bytes] | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expiration != 0 and now_ms >= self.expiration


@dataclass(frozen=True, slots=True)
class DestinationInfo:
    """A destination as it is persisted, so it outlives a restart while it is empty."""

    destination: Destination
    #: The destination's policy and options as the registry that made it encodes
    #: them; opaque to the store.
    options: bytes = b""


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


#: The message properties that ask for scheduled delivery (``core/scheduler.py``).
SCHEDULING_PROPERTIES = frozenset(
    ("AMQ_SCHEDULED_DELAY", "AMQ_SCHEDULED_PERIOD", "AMQ_SCHEDULED_REPEAT", "AMQ_SCHEDULED_CRON")
)


def composite_parts(destination: Destination) -> list[Destination] | None:
    """The destinations a composite one names (``a,b,topic://c``), or None if it is not one.

    ActiveMQ's composite destinations: comma-separated names, each a destination of the
    composite's kind unless it starts with ``queue://`` or ``topic://``. A send reaches
    each. Empty names are refused with ``ValueError``.
    """
    if "," not in destination.name or destination.is_temporary:
        return None
    parts = []
    for raw in destination.name.split(","):
        name = raw.strip()
        kind = destination.kind
        if name.startswith("queue://"):
            kind, name = DestinationKind.QUEUE, name[len("queue://") :]
        elif name.startswith("topic://"):
            kind, name = DestinationKind.TOPIC, name[len("topic://") :]
        if not name:
            raise ValueError(f"composite destination {destination.name!r} has an empty name")
        parts.append(Destination(kind, name))
    return parts


def queue_key(name: str) -> str:
    """The owner key under which the store tracks a queue's messages."""
    return f"queue:{name}"
