"""An AMQP 1.0 message's sections (part 3.2 of the specification), decoded and encoded.

:func:`decode_message` reads what a transfer carries (header, delivery and message
annotations, properties, application properties, the body, a footer) into
:class:`AmqpMessage`; :func:`encode_message` writes one back. Times are milliseconds as
on the wire (``ttl``, ``expiry_time``, ``creation_time``), not Proton's seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from proton import symbol, timestamp, ubyte, uint, ulong

from sealmq.wire.amqp.types import AmqpDecodeError, decode_value, encode_value

__all__ = ["AmqpMessage", "Body", "decode_message", "encode_message"]

_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_PROPERTIES = 0x73
_APPLICATION_PROPERTIES = 0x74
_DATA = 0x75
_SEQUENCE = 0x76
_VALUE = 0x77
_FOOTER = 0x78


class Body(Enum):
    """Which body sections a message had."""

    NONE = "none"
    DATA = "data"  #: one or more data sections, joined: ``body`` is bytes
    VALUE = "amqp-value"  #: ``body`` is the value, ``raw_value`` its encoding
    SEQUENCE = "amqp-sequence"  #: one or more sequences, joined: ``body`` is a list


@dataclass(slots=True)
class AmqpMessage:
    # header
    durable: bool = False
    priority: int = 4
    ttl: int | None = None
    first_acquirer: bool = False
    delivery_count: int = 0
    # annotations
    delivery_annotations: dict[Any, Any] | None = None
    annotations: dict[Any, Any] | None = None
    # properties
    id: Any = None
    user_id: bytes | None = None
    to: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    expiry_time: int | None = None
    creation_time: int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None
    # application properties
    properties: dict[Any, Any] | None = None
    # body
    body_kind: Body = Body.NONE
    body: Any = None
    #: An amqp-value body as it was encoded (so it can be carried on unchanged).
    raw_value: bytes | None = None


def _fields(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise AmqpDecodeError(f"the {name} section is not a list")
    return value


def _padded(value: Any, name: str, count: int) -> list[Any]:
    """A section's list of fields, with the trailing ones it left out as None."""
    fields = _fields(value, name)
    return fields + [None] * (count - len(fields)) if len(fields) < count else fields


def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise AmqpDecodeError(f"{name} of type {type(value).__name__}")
    return value


def _map_section(value: Any, name: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise AmqpDecodeError(f"the {name} section is not a map")
    return value


def decode_message(encoded: bytes) -> AmqpMessage:
    """The sections of one message; :class:`AmqpDecodeError` if they are not well-formed."""
    try:
        return _decode_message(encoded)
    except RecursionError:
        raise AmqpDecodeError("a value nested deeper than the broker reads") from None


def _decode_message(encoded: bytes) -> AmqpMessage:
    message = AmqpMessage()
    pos = 0
    size = len(encoded)
    body_parts: list[Any] = []
    while pos < size:
        if encoded[pos] != 0x00:
            raise AmqpDecodeError("a message section that is not a described type")
        if encoded[pos + 1 : pos + 2] == b"\x53" and pos + 2 < size:  # smallulong: usual
            code: int | None = encoded[pos + 2]
            descriptor: Any = code
            pos += 3
        else:
            descriptor, pos = decode_value(encoded, pos + 1)
            if isinstance(descriptor, int):
                code = int(descriptor)
            else:
                code = _SYMBOLIC.get(symbol(descriptor)) if isinstance(descriptor, str) else None
        start = pos
        value, pos = decode_value(encoded, pos)
        if code == _HEADER:
            fields = _padded(value, "header", 5)
            message.durable = bool(fields[0])
            priority = fields[1]
            message.priority = 4 if priority is None else int(_typed(priority, int, "priority"))
            message.ttl = _typed(fields[2], int, "ttl")
            message.first_acquirer = bool(fields[3])
            message.delivery_count = int(_typed(fields[4], int, "delivery-count") or 0)
        elif code == _DELIVERY_ANNOTATIONS:
            message.delivery_annotations = _map_section(value, "delivery-annotations")
        elif code == _MESSAGE_ANNOTATIONS:
            message.annotations = _map_section(value, "message-annotations")
        elif code == _PROPERTIES:
            fields = _padded(value, "properties", 13)
            message.id = fields[0]
            user = _typed(fields[1], bytes, "user-id")
            message.user_id = bytes(user) if user is not None else None
            message.to = _typed(fields[2], str, "to")
            message.subject = _typed(fields[3], str, "subject")
            message.reply_to = _typed(fields[4], str, "reply-to")
            message.correlation_id = fields[5]
            content_type = _typed(fields[6], str, "content-type")
            message.content_type = str(content_type) if content_type is not None else None
            encoding = _typed(fields[7], str, "content-encoding")
            message.content_encoding = str(encoding) if encoding is not None else None
            message.expiry_time = _typed(fields[8], int, "absolute-expiry-time")
            message.creation_time = _typed(fields[9], int, "creation-time")
            message.group_id = _typed(fields[10], str, "group-id")
            message.group_sequence = _typed(fields[11], int, "group-sequence")
            message.reply_to_group_id = _typed(fields[12], str, "reply-to-group-id")
        elif code == _APPLICATION_PROPERTIES:
            message.properties = _map_section(value, "application-properties")
        elif code in (_DATA, _SEQUENCE, _VALUE):
            kind = {_DATA: Body.DATA, _SEQUENCE: Body.SEQUENCE, _VALUE: Body.VALUE}[code]
            if message.body_kind is not Body.NONE and (
                kind is not message.body_kind or kind is Body.VALUE
            ):
                raise AmqpDecodeError("a message with more than one kind of body section")
            message.body_kind = kind
            if kind is Body.DATA:
                if not isinstance(value, bytes):
                    raise AmqpDecodeError(f"a data section of type {type(value).__name__}")
                body_parts.append(value)
            elif kind is Body.SEQUENCE:
                body_parts.extend(_fields(value, "amqp-sequence"))
            else:
                message.body = value
                message.raw_value = bytes(encoded[start:pos])
        elif code == _FOOTER:
            _map_section(value, "footer")
        else:
            raise AmqpDecodeError(f"an unknown message section {descriptor!r}")
    if message.body_kind is Body.DATA:
        message.body = b"".join(body_parts)
    elif message.body_kind is Body.SEQUENCE:
        message.body = body_parts
    return message


_SYMBOLIC = {
    symbol("amqp:header:list"): _HEADER,
    symbol("amqp:delivery-annotations:map"): _DELIVERY_ANNOTATIONS,
    symbol("amqp:message-annotations:map"): _MESSAGE_ANNOTATIONS,
    symbol("amqp:properties:list"): _PROPERTIES,
    symbol("amqp:application-properties:map"): _APPLICATION_PROPERTIES,
    symbol("amqp:data:binary"): _DATA,
    symbol("amqp:amqp-sequence:list"): _SEQUENCE,
    symbol("amqp:amqp-value:*"): _VALUE,
    symbol("amqp:footer:map"): _FOOTER,
}


def _message_id(value: Any) -> Any:
    """A message-id / correlation-id as AMQP types it: ulong, uuid, binary or string."""
    if value is None or isinstance(value, ulong | uuid.UUID):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return ulong(value) if value >= 0 else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value)


def _section(code: int, value: Any, out: bytearray) -> None:
    out += b"\x00\x53"
    out.append(code)
    encode_value(value, out)


def _trimmed(fields: list[Any]) -> list[Any]:
    while fields and fields[-1] is None:
        fields.pop()
    return fields


def encode_message(message: AmqpMessage) -> bytes:
    """The sections of ``message``, as a transfer carries them."""
    out = bytearray()
    header = _trimmed(
        [
            True if message.durable else None,
            ubyte(message.priority) if message.priority != 4 else None,
            uint(message.ttl) if message.ttl is not None else None,
            True if message.first_acquirer else None,
            uint(message.delivery_count) if message.delivery_count else None,
        ]
    )
    if header:
        _section(_HEADER, header, out)
    if message.delivery_annotations:
        _section(_DELIVERY_ANNOTATIONS, message.delivery_annotations, out)
    if message.annotations:
        _section(_MESSAGE_ANNOTATIONS, message.annotations, out)
    properties = _trimmed(
        [
            _message_id(message.id),
            message.user_id,
            message.to,
            message.subject,
            message.reply_to,
            _message_id(message.correlation_id),
            symbol(message.content_type) if message.content_type else None,
            symbol(message.content_encoding) if message.content_encoding else None,
            timestamp(message.expiry_time) if message.expiry_time is not None else None,
            timestamp(message.creation_time) if message.creation_time is not None else None,
            message.group_id,
            uint(message.group_sequence) if message.group_sequence is not None else None,
            message.reply_to_group_id,
        ]
    )
    if properties:
        _section(_PROPERTIES, properties, out)
    if message.properties:
        _section(_APPLICATION_PROPERTIES, message.properties, out)
    kind = message.body_kind
    if kind is Body.DATA:
        _section(_DATA, bytes(message.body or b""), out)
    elif kind is Body.SEQUENCE:
        _section(_SEQUENCE, list(message.body or []), out)
    elif kind is Body.VALUE:
        if message.raw_value is not None:
            out += b"\x00\x53"
            out.append(_VALUE)
            out += message.raw_value
        else:
            _section(_VALUE, message.body, out)
    return bytes(out)
