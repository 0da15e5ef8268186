"""MQTT 5 properties, and the data types they share with the packets.

The readers take a buffer, a start offset and the offset the field must end
by, and return the value and the offset after it; they raise MqttError, never
read past ``end``, and never loop in Python over a string or binary value.
The writers raise MqttError (IMPLEMENTATION_SPECIFIC_ERROR) for a value the
wire cannot carry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from operator import attrgetter
from typing import Any, Final

from .errors import MqttError, ReasonCode

__all__ = [
    "MAX_VARIABLE_BYTE_INTEGER",
    "NO_PROPERTIES",
    "WILL_PROPERTIES",
    "Properties",
    "PropertyId",
    "encode_binary",
    "encode_properties",
    "encode_string",
    "encode_variable_byte_integer",
    "read_binary",
    "read_properties",
    "read_string",
    "read_variable_byte_integer",
    "take",
    "truncated",
]

Buffer = bytes | bytearray

# 1.5.5: four bytes of seven bits each.  Remaining Length, property lengths
# and Subscription Identifiers cannot exceed it.
MAX_VARIABLE_BYTE_INTEGER: Final = 268_435_455

# Strings and binary data carry a two-byte length (1.5.4, 1.5.6).
_MAX_FIELD: Final = 0xFFFF

# Values at least this long are copied out of the receive buffer through a
# memoryview (one copy) instead of slice-then-bytes (two).
_VIEW_COPY_FROM: Final = 64 * 1024

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_ID_U16: Final = struct.Struct(">BH")
_ID_U32: Final = struct.Struct(">BI")
_SMALL_VBI: Final = tuple(bytes((i,)) for i in range(0x80))

_MALFORMED: Final = ReasonCode.MALFORMED_PACKET
_PROTOCOL: Final = ReasonCode.PROTOCOL_ERROR
_CANNOT_ENCODE: Final = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR


def truncated() -> MqttError:
    """The error for a field that runs past the end of its packet or block."""
    return MqttError(_MALFORMED, "packet shorter than its fields")


# -- data types (1.5) ----------------------------------------------------------


def read_variable_byte_integer(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a Variable Byte Integer: at most 4 bytes, minimally encoded (1.5.5)."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise truncated()
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                # [MQTT-1.5.5-1] the encoding uses the fewest bytes.
                raise MqttError(_MALFORMED, "variable byte integer not minimally encoded")
            return value, pos
    raise MqttError(_MALFORMED, "variable byte integer longer than 4 bytes")


def read_string(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    """Read a UTF-8 Encoded String: well-formed UTF-8 without U+0000 (1.5.4)."""
    start = pos + 2
    if start > end:
        raise truncated()
    stop = start + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise truncated()
    try:
        # Strict UTF-8 refuses surrogates and overlong forms [MQTT-1.5.4-1]
        # and keeps a BOM as U+FEFF [MQTT-1.5.4-3].
        text = buf[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise MqttError(_MALFORMED, "string is not valid UTF-8") from None
    if "\x00" in text:
        raise MqttError(_MALFORMED, "string contains U+0000")  # [MQTT-1.5.4-2]
    return text, stop


def read_binary(buf: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    """Read Binary Data: a two-byte length, then that many bytes (1.5.6)."""
    start = pos + 2
    if start > end:
        raise truncated()
    stop = start + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise truncated()
    return take(buf, start, stop), stop


def take(buf: Buffer, start: int, stop: int) -> bytes:
    """Copy buf[start:stop] out as bytes, copying large values only once."""
    if stop - start < _VIEW_COPY_FROM or isinstance(buf, bytes):
        return bytes(buf[start:stop])
    with memoryview(buf) as view, view[start:stop] as part:
        return part.tobytes()


def encode_variable_byte_integer(value: int) -> bytes:
    """Encode ``value`` (0 to 268435455) in the fewest bytes."""
    if 0 <= value < 0x80:
        return _SMALL_VBI[value]
    if not 0 <= value <= MAX_VARIABLE_BYTE_INTEGER:
        raise MqttError(_CANNOT_ENCODE, "variable byte integer out of range")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(text: str) -> bytes:
    """Encode a UTF-8 Encoded String with its two-byte length."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MqttError(_CANNOT_ENCODE, "string is not valid UTF-8") from None
    if len(raw) > _MAX_FIELD:
        raise MqttError(_CANNOT_ENCODE, "string longer than 65535 bytes")
    if b"\x00" in raw:
        raise MqttError(_CANNOT_ENCODE, "string contains U+0000")
    return _U16.pack(len(raw)) + raw


def encode_binary(data: bytes) -> bytes:
    """Encode Binary Data with its two-byte length."""
    if len(data) > _MAX_FIELD:
        raise MqttError(_CANNOT_ENCODE, "binary data longer than 65535 bytes")
    return _U16.pack(len(data)) + data


# -- properties (2.2.2) --------------------------------------------------------


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


# Secret values that must never reach a log line through repr().
_SECRET_FIELDS: Final = frozenset({"authentication_data"})


@dataclass(frozen=True, slots=True, repr=False)
class Properties:
    """The MQTT 5 properties of one packet (or of a will); None means absent.

    Each field is one property, typed as the spec types it: Byte, Two and
    Four Byte Integer and Variable Byte Integer are ``int``, UTF-8 strings
    ``str``, Binary Data ``bytes``.  ``user_properties`` keeps the pairs in
    wire order with repeats; ``subscription_identifiers`` holds the one
    identifier of a SUBSCRIBE, or every identifier of a PUBLISH.  Before MQTT
    5 packets carry no properties: ``send`` drops them.  ``bool(props)`` is
    True when any property is present.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __bool__(self) -> bool:
        return any(value is not None and value != () for value in _all_values(self))

    def __repr__(self) -> str:
        shown = []
        for name, value in zip(_FIELD_NAMES, _all_values(self), strict=True):
            if value is None or value == ():
                continue
            if name in _SECRET_FIELDS:
                shown.append(f"{name}=<{len(value)} bytes>")
            else:
                shown.append(f"{name}={value!r}")
        return f"Properties({', '.join(shown)})"


NO_PROPERTIES: Final = Properties()

_FIELD_NAMES: Final = tuple(f.name for f in fields(Properties))
_all_values: Final = attrgetter(*_FIELD_NAMES)

# Value types (2.2.2.2).
_BYTE: Final = 0
_U16_KIND: Final = 1
_U32_KIND: Final = 2
_VBI: Final = 3
_STRING: Final = 4
_BINARY: Final = 5
_PAIR: Final = 6

# Where properties may appear: packet types 1-15, and the will (0).
WILL_PROPERTIES: Final = 0
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _DISCONNECT, _AUTH = 8, 9, 10, 11, 14, 15
_ACKS: Final = (_PUBACK, _PUBREC, _PUBREL, _PUBCOMP)
_MESSAGE: Final = (_PUBLISH, WILL_PROPERTIES)

_WHERE_NAMES: Final = {
    WILL_PROPERTIES: "will properties",
    _CONNECT: "CONNECT",
    _CONNACK: "CONNACK",
    _PUBLISH: "PUBLISH",
    _PUBACK: "PUBACK",
    _PUBREC: "PUBREC",
    _PUBREL: "PUBREL",
    _PUBCOMP: "PUBCOMP",
    _SUBSCRIBE: "SUBSCRIBE",
    _SUBACK: "SUBACK",
    _UNSUBSCRIBE: "UNSUBSCRIBE",
    _UNSUBACK: "UNSUBACK",
    _DISCONNECT: "DISCONNECT",
    _AUTH: "AUTH",
}

# id: (spec name, Properties field, type, where allowed) -- 2.2.2.2, Table 2-4.
_TABLE: Final[dict[int, tuple[str, str, int, tuple[int, ...]]]] = {
    0x01: ("Payload Format Indicator", "payload_format_indicator", _BYTE, _MESSAGE),
    0x02: ("Message Expiry Interval", "message_expiry_interval", _U32_KIND, _MESSAGE),
    0x03: ("Content Type", "content_type", _STRING, _MESSAGE),
    0x08: ("Response Topic", "response_topic", _STRING, _MESSAGE),
    0x09: ("Correlation Data", "correlation_data", _BINARY, _MESSAGE),
    0x0B: ("Subscription Identifier", "subscription_identifiers", _VBI, (_PUBLISH, _SUBSCRIBE)),
    0x11: (
        "Session Expiry Interval",
        "session_expiry_interval",
        _U32_KIND,
        (_CONNECT, _CONNACK, _DISCONNECT),
    ),
    0x12: ("Assigned Client Identifier", "assigned_client_identifier", _STRING, (_CONNACK,)),
    0x13: ("Server Keep Alive", "server_keep_alive", _U16_KIND, (_CONNACK,)),
    0x15: (
        "Authentication Method",
        "authentication_method",
        _STRING,
        (_CONNECT, _CONNACK, _AUTH),
    ),
    0x16: ("Authentication Data", "authentication_data", _BINARY, (_CONNECT, _CONNACK, _AUTH)),
    0x17: ("Request Problem Information", "request_problem_information", _BYTE, (_CONNECT,)),
    0x18: ("Will Delay Interval", "will_delay_interval", _U32_KIND, (WILL_PROPERTIES,)),
    0x19: ("Request Response Information", "request_response_information", _BYTE, (_CONNECT,)),
    0x1A: ("Response Information", "response_information", _STRING, (_CONNACK,)),
    0x1C: ("Server Reference", "server_reference", _STRING, (_CONNACK, _DISCONNECT)),
    0x1F: (
        "Reason String",
        "reason_string",
        _STRING,
        (_CONNACK, *_ACKS, _SUBACK, _UNSUBACK, _DISCONNECT, _AUTH),
    ),
    0x21: ("Receive Maximum", "receive_maximum", _U16_KIND, (_CONNECT, _CONNACK)),
    0x22: ("Topic Alias Maximum", "topic_alias_maximum", _U16_KIND, (_CONNECT, _CONNACK)),
    0x23: ("Topic Alias", "topic_alias", _U16_KIND, (_PUBLISH,)),
    0x24: ("Maximum QoS", "maximum_qos", _BYTE, (_CONNACK,)),
    0x25: ("Retain Available", "retain_available", _BYTE, (_CONNACK,)),
    0x26: (
        "User Property",
        "user_properties",
        _PAIR,
        (WILL_PROPERTIES, *range(_CONNECT, _UNSUBACK + 1), _DISCONNECT, _AUTH),
    ),
    0x27: ("Maximum Packet Size", "maximum_packet_size", _U32_KIND, (_CONNECT, _CONNACK)),
    0x28: (
        "Wildcard Subscription Available",
        "wildcard_subscription_available",
        _BYTE,
        (_CONNACK,),
    ),
    0x29: (
        "Subscription Identifier Available",
        "subscription_identifier_available",
        _BYTE,
        (_CONNACK,),
    ),
    0x2A: (
        "Shared Subscription Available",
        "shared_subscription_available",
        _BYTE,
        (_CONNACK,),
    ),
}

# Property ids allowed in each place.
_ALLOWED: Final = {
    where: frozenset(pid for pid, entry in _TABLE.items() if where in entry[3])
    for where in _WHERE_NAMES
}

# "It is a Protocol Error to include ... a value other than 0 or 1" (3.1.2.11,
# 3.2.2.3, 3.3.2.3.2); MAXIMUM_QOS is 0 or 1 as well (3.2.2.3.4).
_ZERO_OR_ONE: Final = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
# "It is a Protocol Error ... to have the value 0" (Receive Maximum, Maximum
# Packet Size, Subscription Identifier).  Topic Alias 0 has its own code.
_NOT_ZERO: Final = frozenset({0x0B, 0x21, 0x27})

# Properties declares its fields in ascending id order, which is also the
# order they are written in (as paho-mqtt and mosquitto write them).
_BY_FIELD: Final = tuple((pid, name, kind) for pid, (name, _, kind, _) in _TABLE.items())
assert [field for _, field, _, _ in _TABLE.values()] == list(_FIELD_NAMES)

# The last Properties encoded for each packet type, and its bytes: a message
# fanned out to many subscribers is encoded once.  Properties is immutable.
_LAST_ENCODED: Final[dict[int, tuple[Properties, bytes]]] = {}


def read_properties(buf: Buffer, pos: int, end: int, where: int) -> tuple[Properties, int]:
    """Read a property block for packet type ``where`` (or WILL_PROPERTIES).

    Unknown ids and ids not allowed there are Malformed Packets (2.2.2.2);
    repeats of a property that may appear once, and values the spec forbids,
    are Protocol Errors.  A Topic Alias of 0 is TOPIC_ALIAS_INVALID.
    """
    length, pos = read_variable_byte_integer(buf, pos, end)
    if not length:
        return NO_PROPERTIES, pos
    stop = pos + length
    if stop > end:
        raise truncated()
    allowed = _ALLOWED[where]
    values: dict[str, Any] = {}
    pairs: list[tuple[str, str]] = []
    sub_ids: list[int] = []
    while pos < stop:
        # Identifiers are Variable Byte Integers, but every defined one is
        # below 0x80: a byte with the high bit set is an unknown id anyway.
        pid = buf[pos]
        pos += 1
        entry = _TABLE.get(pid)
        if entry is None:
            raise MqttError(_MALFORMED, f"unknown property identifier 0x{pid:02X}")
        name, field, kind, _ = entry
        if pid not in allowed:
            raise MqttError(_MALFORMED, f"{name} is not allowed in {_WHERE_NAMES[where]}")
        value: Any
        if kind == _BYTE:
            if pos >= stop:
                raise truncated()
            value = buf[pos]
            pos += 1
        elif kind == _U16_KIND:
            if pos + 2 > stop:
                raise truncated()
            (value,) = _U16.unpack_from(buf, pos)
            pos += 2
        elif kind == _U32_KIND:
            if pos + 4 > stop:
                raise truncated()
            (value,) = _U32.unpack_from(buf, pos)
            pos += 4
        elif kind == _STRING:
            value, pos = read_string(buf, pos, stop)
        elif kind == _BINARY:
            value, pos = read_binary(buf, pos, stop)
        elif kind == _PAIR:
            key, pos = read_string(buf, pos, stop)
            value, pos = read_string(buf, pos, stop)
            pairs.append((key, value))
            continue
        else:
            value, pos = read_variable_byte_integer(buf, pos, stop)
            if value == 0:
                raise MqttError(_PROTOCOL, "Subscription Identifier 0")
            if sub_ids and where != _PUBLISH:
                raise MqttError(_PROTOCOL, f"duplicate {name}")
            sub_ids.append(value)
            continue
        if field in values:
            raise MqttError(_PROTOCOL, f"duplicate {name}")
        if pid in _ZERO_OR_ONE:
            if value > 1:
                raise MqttError(_PROTOCOL, f"{name} must be 0 or 1")
        elif pid in _NOT_ZERO:
            if value == 0:
                raise MqttError(_PROTOCOL, f"{name} must not be 0")
        elif pid == PropertyId.TOPIC_ALIAS:
            if value == 0:
                raise MqttError(ReasonCode.TOPIC_ALIAS_INVALID, "Topic Alias 0")
        elif pid == PropertyId.RESPONSE_TOPIC and (not value or "+" in value or "#" in value):
            # [MQTT-3.3.2-14]: it is a Topic Name.
            raise MqttError(_PROTOCOL, "Response Topic is not a valid topic name")
        values[field] = value
    if pairs:
        values["user_properties"] = tuple(pairs)
    if sub_ids:
        values["subscription_identifiers"] = tuple(sub_ids)
    if (
        where == _CONNECT
        and "authentication_data" in values
        and "authentication_method" not in values
    ):
        raise MqttError(_PROTOCOL, "Authentication Data without Authentication Method")
    return Properties(**values), pos


def encode_properties(props: Properties, where: int) -> bytes:
    """Encode ``props`` for packet type ``where``, property length included.

    Raises MqttError (IMPLEMENTATION_SPECIFIC_ERROR) for a property not allowed
    there or a value out of its type's range.
    """
    if props is NO_PROPERTIES:
        return b"\x00"
    last = _LAST_ENCODED.get(where)
    if last is not None and last[0] is props:
        return last[1]
    allowed = _ALLOWED[where]
    parts: list[bytes] = []
    try:
        for value, (pid, name, kind) in zip(_all_values(props), _BY_FIELD, strict=True):
            if value is None or value == ():
                continue
            if pid not in allowed:
                raise MqttError(_CANNOT_ENCODE, f"{name} cannot be sent in {_WHERE_NAMES[where]}")
            if kind == _BYTE:
                parts.append(bytes((pid, value)))
            elif kind == _U16_KIND:
                parts.append(_ID_U16.pack(pid, value))
            elif kind == _U32_KIND:
                parts.append(_ID_U32.pack(pid, value))
            elif kind == _STRING:
                parts.append(_SMALL_VBI[pid] + encode_string(value))
            elif kind == _BINARY:
                parts.append(_SMALL_VBI[pid] + encode_binary(value))
            elif kind == _PAIR:
                parts.extend(
                    _SMALL_VBI[pid] + encode_string(key) + encode_string(text)
                    for key, text in value
                )
            else:
                if len(value) > 1 and where != _PUBLISH:
                    raise MqttError(_CANNOT_ENCODE, f"only one {name} fits in SUBSCRIBE")
                parts.extend(
                    _SMALL_VBI[pid] + encode_variable_byte_integer(sub_id) for sub_id in value
                )
    except (struct.error, ValueError):
        raise MqttError(_CANNOT_ENCODE, "property value out of range") from None
    body = b"".join(parts)
    encoded = encode_variable_byte_integer(len(body)) + body
    _LAST_ENCODED[where] = (props, encoded)
    return encoded
