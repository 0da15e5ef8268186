"""What the MQTT codec hands out and takes in: one dataclass per control packet.

Fields are named as in MQTT 5.0 and cover 3.1 and 3.1.1 too: what an older
level cannot carry (properties, most reason codes) is left at its default
when parsed and dropped by ``send``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from .properties import NO_PROPERTIES, Properties

__all__ = [
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "Will",
]

_REPR_PAYLOAD_BYTES = 64


class PacketType(IntEnum):
    """The control packet type, the high nibble of the first byte (2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


def _payload_repr(payload: bytes) -> str:
    if len(payload) > _REPR_PAYLOAD_BYTES:
        return f"{payload[:_REPR_PAYLOAD_BYTES]!r}... ({len(payload)} bytes)"
    return repr(payload)


@dataclass(frozen=True, slots=True, repr=False)
class Will:
    """The will message of a CONNECT (3.1.2.5, 3.1.3.2-4)."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES

    def __repr__(self) -> str:
        return (
            f"Will(topic={self.topic!r}, payload={_payload_repr(self.payload)}, "
            f"qos={self.qos}, retain={self.retain}, properties={self.properties!r})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Connect:
    """CONNECT.  ``protocol_level`` is 3 (3.1, "MQIsdp"), 4 (3.1.1) or 5.

    ``clean_start`` is Clean Session before MQTT 5.  ``password`` is bytes
    (3.1 sends a string; its bytes are kept as they are).
    """

    protocol_level: int = 4
    clean_start: bool = True
    keep_alive: int = 60
    client_id: str = ""
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = NO_PROPERTIES

    @property
    def protocol_name(self) -> str:
        """The protocol name on the wire: "MQIsdp" for 3.1, "MQTT" from 3.1.1 on."""
        return "MQIsdp" if self.protocol_level == 3 else "MQTT"

    @property
    def clean_session(self) -> bool:
        """The 3.1/3.1.1 name of ``clean_start``."""
        return self.clean_start

    def __repr__(self) -> str:
        # CONNECTs end up in debug logs: never show the password.
        password = None if self.password is None else "********"
        return (
            f"Connect(protocol_level={self.protocol_level}, clean_start={self.clean_start}, "
            f"keep_alive={self.keep_alive}, client_id={self.client_id!r}, will={self.will!r}, "
            f"username={self.username!r}, password={password}, "
            f"properties={self.properties!r})"
        )


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK.  ``reason_code``: an MQTT 5 ReasonCode, or before MQTT 5 the return code.

    ``send`` at level 3/4 turns the MQTT 5 codes that have one into the
    ConnectReturnCode (UNSUPPORTED_PROTOCOL_VERSION -> 1, ...) and at level 5
    turns return codes 1-5 into MQTT 5 codes, so an adapter may use either.
    """

    session_present: bool = False
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True, repr=False)
class Publish:
    """PUBLISH.  ``packet_id`` is 0 for QoS 0 (the packet has none).

    ``topic`` may be empty in MQTT 5 when ``properties.topic_alias`` is set;
    resolving aliases is the adapter's job.
    """

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = NO_PROPERTIES

    def __repr__(self) -> str:
        return (
            f"Publish(topic={self.topic!r}, payload={_payload_repr(self.payload)}, "
            f"qos={self.qos}, retain={self.retain}, dup={self.dup}, "
            f"packet_id={self.packet_id}, properties={self.properties!r})"
        )


@dataclass(frozen=True, slots=True)
class Puback:
    """PUBACK: QoS 1 delivered.  Reason code and properties are MQTT 5 only."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Pubrec:
    """PUBREC: QoS 2, part 1.  Reason code and properties are MQTT 5 only."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Pubrel:
    """PUBREL: QoS 2, part 2.  Reason code and properties are MQTT 5 only."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Pubcomp:
    """PUBCOMP: QoS 2, part 3.  Reason code and properties are MQTT 5 only."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE and its options (3.8.3.1).

    Only ``qos`` exists before MQTT 5; ``retain_handling`` is 0 (send retained
    messages), 1 (only for a new subscription) or 2 (never).
    """

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: at least one subscription."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK: one reason code (granted QoS, or a failure >= 0x80) per subscription.

    Before MQTT 5 every failure is sent as 0x80.
    """

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: at least one topic filter."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK.  Reason codes (one per filter) and properties are MQTT 5 only."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ."""


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT.  Reason code and properties are MQTT 5 only.

    Before MQTT 5 only clients send it; ``send`` on a server codec below
    level 5 queues nothing (closing the connection is the signal).
    """

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (MQTT 5 only): enhanced authentication exchange."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


Packet: TypeAlias = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
