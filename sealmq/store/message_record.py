"""A message in a record: the versioned layout written now, and the first one, still read.

Written (message version 2, inside ADD_MESSAGE_V2 and SET_RETAINED_V2 entries)::

    message  = u8 MESSAGE_VERSION, u8 flags, u8 body kind, u8 destination kind,
               i32 priority, i64 expiration, i64 timestamp, i32 redelivery count,
               text message id, text destination name, bytes body,
               field*, u8 0
    field    = u8 MessageField, u32 length, payload of that length

A field is written only when its value is not the default, so a plain STOMP or MQTT
message is its head, id, destination and body (and properties if it has any).
Adding a field needs a new ``MessageField`` id, not a new version. A reader skips a
field it does not know when its id is below :data:`MUST_UNDERSTAND`, and refuses
the record when it is at or above it (for a field whose loss would change what the
message means). Flags: 0x01 persistent; the other bits are 0.

Read only (message version 1, inside ADD_MESSAGE and SET_RETAINED entries, written
by brokers before version 2): a flags byte of eight fields and a fixed head with
MQTT's QoS and retain, which become the ``mqtt`` annotation
(:data:`~sealmq.core.model.MQTT_ANNOTATION`).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any
from uuid import UUID

from sealmq.core.bodies import read_value, write_value
from sealmq.core.model import (
    MQTT_ANNOTATION,
    BodyKind,
    Destination,
    DestinationKind,
    Message,
    MessageIdValue,
)
from sealmq.store.errors import CorruptRecordError

__all__ = [
    "MESSAGE_VERSION",
    "MUST_UNDERSTAND",
    "MessageField",
    "RecordReader",
    "read_message",
    "read_message_v1",
    "skip_message",
    "write_message",
]

MESSAGE_VERSION = 2
#: Field ids from here up must be understood by a reader, or it refuses the record.
MUST_UNDERSTAND = 0x80


class MessageField(IntEnum):
    """The optional fields of a version 2 message. Never renumber."""

    #: Typed id (see :class:`IdTag`).
    CORRELATION_ID = 1
    #: u8 destination kind, UTF-8 name (the rest of the field).
    REPLY_TO = 2
    #: UTF-8 (the whole field; so are the other plain strings below).
    TYPE = 3
    GROUP_ID = 4
    #: i64.
    GROUP_SEQ = 5
    #: u8 destination kind, UTF-8 name.
    ORIGINAL_DESTINATION = 6
    #: u32 count, (text name, typed value)* (``sealmq.core.bodies`` values).
    PROPERTIES = 7
    USER_ID = 8
    #: Typed id.
    CLIENT_MESSAGE_ID = 9
    CONTENT_TYPE = 10
    CONTENT_ENCODING = 11
    SUBJECT = 12
    REPLY_TO_GROUP_ID = 13
    #: i64 milliseconds since the epoch.
    DELIVERY_TIME = 14
    #: u32 count, text broker id*.
    BROKER_PATH = 15
    #: i64 sequence, u8 1 and the UTF-8 producer id (the rest) or u8 0 (no id).
    PRODUCER = 16
    #: u32 count, (text protocol, bytes annotation)*.
    ANNOTATIONS = 17


class IdTag(IntEnum):
    """The type of a typed message or correlation id. Never renumber."""

    #: UTF-8 (the rest of the field).
    STRING = 0
    #: The rest of the field.
    BINARY = 1
    #: u64.
    ULONG = 2
    #: 16 bytes.
    UUID = 3


_B = struct.Struct(">B")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q")
_UQ = struct.Struct(">Q")
_FIELD = struct.Struct(">BI")
_HEAD = struct.Struct(">BBBBiqqi")
_END = b"\x00"
_PERSISTENT = 0x01
_F = MessageField


class RecordReader:
    """Reads one record payload; anything short raises :class:`CorruptRecordError`."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]:
        pos = self.pos
        if pos + s.size > self.end:
            raise CorruptRecordError("truncated record payload")
        self.pos = pos + s.size
        return s.unpack_from(self.buf, pos)

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise CorruptRecordError("truncated record payload")
        self.pos = pos + 1
        return self.buf[pos]

    def take(self, n: int) -> memoryview:
        pos = self.pos
        if pos + n > self.end:
            raise CorruptRecordError("truncated record payload")
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def raw(self) -> memoryview:
        (n,) = self.unpack(_U32)
        return self.take(n)

    def text(self) -> str:
        return str(self.raw(), "utf-8", "surrogatepass")

    def destination(self) -> Destination:
        return Destination(DestinationKind(self.u8()), self.text())


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def _text(parts: list[bytes], s: str) -> None:
    b = _utf8(s)
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def _string_field(parts: list[bytes], tag: int, s: str) -> None:
    b = _utf8(s)
    parts.append(_FIELD.pack(tag, len(b)))
    parts.append(b)


def _field(parts: list[bytes], tag: int, sub: list[bytes]) -> None:
    parts.append(_FIELD.pack(tag, sum(map(len, sub))))
    parts.extend(sub)


def _id_field(parts: list[bytes], tag: int, value: MessageIdValue) -> None:
    t = type(value)
    if t is str:
        b = _utf8(value)  # type: ignore[arg-type]
        parts.append(_FIELD.pack(tag, 1 + len(b)))
        parts.append(_B.pack(IdTag.STRING))
        parts.append(b)
    elif isinstance(value, bytes):
        parts.append(_FIELD.pack(tag, 1 + len(value)))
        parts.append(_B.pack(IdTag.BINARY))
        parts.append(bytes(value))
    elif isinstance(value, UUID):
        parts.append(_FIELD.pack(tag, 17))
        parts.append(_B.pack(IdTag.UUID))
        parts.append(value.bytes)
    elif isinstance(value, int) and not isinstance(value, bool):
        parts.append(_FIELD.pack(tag, 9))
        parts.append(_B.pack(IdTag.ULONG))
        parts.append(_UQ.pack(value))
    elif isinstance(value, str):
        _id_field(parts, tag, str(value))
    else:
        raise TypeError(f"a message id of type {t.__name__} is not storable")


def _destination_field(parts: list[bytes], tag: int, d: Destination) -> None:
    b = _utf8(d.name)
    parts.append(_FIELD.pack(tag, 1 + len(b)))
    parts.append(_B.pack(d.kind))
    parts.append(b)


def write_message(parts: list[bytes], m: Message) -> None:
    """Append message ``m`` in the version 2 layout (``TypeError``, ``struct.error`` or
    ``OverflowError`` for a value that cannot be stored)."""
    parts.append(
        _HEAD.pack(
            MESSAGE_VERSION,
            _PERSISTENT if m.persistent else 0,
            m.body_kind,
            m.destination.kind,
            m.priority,
            m.expiration,
            m.timestamp,
            m.redelivery_count,
        )
    )
    _text(parts, m.message_id)
    _text(parts, m.destination.name)
    body = m.body
    parts.append(_U32.pack(len(body)))
    parts.append(body)
    if m.properties:
        props = m.properties
        sub = [_U32.pack(len(props))]
        for key, value in props.items():
            _text(sub, key)
            write_value(sub, value)
        _field(parts, _F.PROPERTIES, sub)
    if m.correlation_id is not None:
        _id_field(parts, _F.CORRELATION_ID, m.correlation_id)
    if m.reply_to is not None:
        _destination_field(parts, _F.REPLY_TO, m.reply_to)
    if m.type is not None:
        _string_field(parts, _F.TYPE, m.type)
    if m.group_id is not None:
        _string_field(parts, _F.GROUP_ID, m.group_id)
    if m.group_seq:
        parts.append(_FIELD.pack(_F.GROUP_SEQ, 8))
        parts.append(_Q.pack(m.group_seq))
    if m.original_destination is not None:
        _destination_field(parts, _F.ORIGINAL_DESTINATION, m.original_destination)
    if m.user_id is not None:
        _string_field(parts, _F.USER_ID, m.user_id)
    if m.client_message_id is not None:
        _id_field(parts, _F.CLIENT_MESSAGE_ID, m.client_message_id)
    if m.content_type is not None:
        _string_field(parts, _F.CONTENT_TYPE, m.content_type)
    if m.content_encoding is not None:
        _string_field(parts, _F.CONTENT_ENCODING, m.content_encoding)
    if m.subject is not None:
        _string_field(parts, _F.SUBJECT, m.subject)
    if m.reply_to_group_id is not None:
        _string_field(parts, _F.REPLY_TO_GROUP_ID, m.reply_to_group_id)
    if m.delivery_time:
        parts.append(_FIELD.pack(_F.DELIVERY_TIME, 8))
        parts.append(_Q.pack(m.delivery_time))
    if m.broker_path:
        sub = [_U32.pack(len(m.broker_path))]
        for broker in m.broker_path:
            _text(sub, broker)
        _field(parts, _F.BROKER_PATH, sub)
    if m.producer_id is not None or m.producer_seq:
        b = b"\x00" if m.producer_id is None else b"\x01" + _utf8(m.producer_id)
        parts.append(_FIELD.pack(_F.PRODUCER, 8 + len(b)))
        parts.append(_Q.pack(m.producer_seq))
        parts.append(b)
    if m.annotations:
        sub = [_U32.pack(len(m.annotations))]
        for key, blob in m.annotations.items():
            _text(sub, key)
            sub.append(_U32.pack(len(blob)))
            sub.append(bytes(blob))
        _field(parts, _F.ANNOTATIONS, sub)
    parts.append(_END)


def _utf8_of(view: memoryview) -> str:
    return str(view, "utf-8", "surrogatepass")


def _read_id(view: memoryview) -> MessageIdValue:
    if not view:
        raise CorruptRecordError("empty message id field")
    tag, rest = view[0], view[1:]
    if tag == IdTag.STRING:
        return _utf8_of(rest)
    if tag == IdTag.BINARY:
        return bytes(rest)
    if tag == IdTag.ULONG and len(rest) == 8:
        ulong: int = _UQ.unpack(rest)[0]
        return ulong
    if tag == IdTag.UUID and len(rest) == 16:
        return UUID(bytes=bytes(rest))
    raise CorruptRecordError(f"malformed message id (tag {tag})")


def _read_destination(view: memoryview) -> Destination:
    if not view:
        raise CorruptRecordError("empty destination field")
    return Destination(DestinationKind(view[0]), _utf8_of(view[1:]))


def _read_i64(view: memoryview) -> int:
    if len(view) != 8:
        raise CorruptRecordError("malformed integer field")
    value: int = _Q.unpack(view)[0]
    return value


#: Destinations read back, by kind and encoded name: a backlog paged in shares one
#: object per destination rather than a Destination and a name per message (about
#: 100 bytes each). Bounded; reset when full.
_DESTINATIONS: dict[tuple[int, bytes], Destination] = {}
_DESTINATIONS_MAX = 4096


def _destination(kind: int, name: memoryview) -> Destination:
    key = (kind, bytes(name))
    found = _DESTINATIONS.get(key)
    if found is None:
        found = Destination(DestinationKind(kind), _utf8_of(name))
        if len(_DESTINATIONS) >= _DESTINATIONS_MAX:
            _DESTINATIONS.clear()
        _DESTINATIONS[key] = found
    return found


def read_message(r: RecordReader) -> Message:
    """A version 2 message (the reader is at its version byte)."""
    (version, flags, body_kind, dest_kind, priority, expiration, timestamp, redeliveries) = (
        r.unpack(_HEAD)
    )
    if version != MESSAGE_VERSION:
        raise CorruptRecordError(f"unknown message version {version}")
    message_id = r.text()
    destination = _destination(dest_kind, r.raw())
    body = bytes(r.raw())
    m = Message(
        message_id,
        destination,
        body,
        BodyKind(body_kind),
        bool(flags & _PERSISTENT),
        priority,
        expiration,
        timestamp,
        redelivery_count=redeliveries,
    )
    while True:
        tag = r.u8()
        if tag == 0:
            return m
        (n,) = r.unpack(_U32)
        view = r.take(n)
        if tag == _F.PROPERTIES:
            sub = RecordReader(view)
            (count,) = sub.unpack(_U32)
            props = m.properties
            for _ in range(count):
                key = sub.text()
                props[key] = read_value(sub)
            _exhausted(sub)
        elif tag == _F.CORRELATION_ID:
            m.correlation_id = _read_id(view)
        elif tag == _F.REPLY_TO:
            m.reply_to = _read_destination(view)
        elif tag == _F.TYPE:
            m.type = _utf8_of(view)
        elif tag == _F.GROUP_ID:
            m.group_id = _utf8_of(view)
        elif tag == _F.GROUP_SEQ:
            m.group_seq = _read_i64(view)
        elif tag == _F.ORIGINAL_DESTINATION:
            m.original_destination = _read_destination(view)
        elif tag == _F.USER_ID:
            m.user_id = _utf8_of(view)
        elif tag == _F.CLIENT_MESSAGE_ID:
            m.client_message_id = _read_id(view)
        elif tag == _F.CONTENT_TYPE:
            m.content_type = _utf8_of(view)
        elif tag == _F.CONTENT_ENCODING:
            m.content_encoding = _utf8_of(view)
        elif tag == _F.SUBJECT:
            m.subject = _utf8_of(view)
        elif tag == _F.REPLY_TO_GROUP_ID:
            m.reply_to_group_id = _utf8_of(view)
        elif tag == _F.DELIVERY_TIME:
            m.delivery_time = _read_i64(view)
        elif tag == _F.BROKER_PATH:
            sub = RecordReader(view)
            (count,) = sub.unpack(_U32)
            m.broker_path = tuple(sub.text() for _ in range(count))
            _exhausted(sub)
        elif tag == _F.PRODUCER:
            m.producer_seq = _read_i64(view[:8])
            if len(view) < 9:
                raise CorruptRecordError("malformed producer field")
            m.producer_id = _utf8_of(view[9:]) if view[8] else None
        elif tag == _F.ANNOTATIONS:
            sub = RecordReader(view)
            (count,) = sub.unpack(_U32)
            m.annotations = {sub.text(): bytes(sub.raw()) for _ in range(count)}
            _exhausted(sub)
        elif tag >= MUST_UNDERSTAND:
            raise CorruptRecordError(f"message field {tag} is not known to this broker")
        # else: a field a newer broker added that may be left out; skipped.


def skip_message(r: RecordReader) -> tuple[str, int]:
    """Step over a version 2 message, reading only its id and body size (recovery
    without bodies: nothing of the message is built)."""
    version = r.unpack(_HEAD)[0]
    if version != MESSAGE_VERSION:
        raise CorruptRecordError(f"unknown message version {version}")
    message_id = r.text()
    r.raw()  # destination name
    (size,) = r.unpack(_U32)
    r.take(size)
    while True:
        tag = r.u8()
        if tag == 0:
            return message_id, size
        (n,) = r.unpack(_U32)
        r.take(n)
        if tag >= MUST_UNDERSTAND:
            raise CorruptRecordError(f"message field {tag} is not known to this broker")


def _exhausted(sub: RecordReader) -> None:
    if sub.pos != sub.end:
        raise CorruptRecordError("bytes left over in a message field")


# Version 1: flags of the fields present, and the head below.
_V1_PERSISTENT = 0x01
_V1_RETAIN = 0x02
_V1_CORRELATION = 0x04
_V1_REPLY_TO = 0x08
_V1_TYPE = 0x10
_V1_GROUP = 0x20
_V1_ORIGINAL = 0x40
_V1_PROPERTIES = 0x80
# flags, body kind, destination kind, qos (-1: none), priority, expiration, timestamp,
# group seq, redelivery count
_V1_HEAD = struct.Struct(">BBBbiqqqi")


def read_message_v1(r: RecordReader) -> Message:
    """A version 1 message, as brokers before version 2 wrote it."""
    (flags, body_kind, dest_kind, qos, priority, expiration, timestamp, group_seq, redeliveries) = (
        r.unpack(_V1_HEAD)
    )
    message_id = r.text()
    destination = Destination(DestinationKind(dest_kind), r.text())
    body = bytes(r.raw())
    m = Message(
        message_id,
        destination,
        body,
        BodyKind(body_kind),
        bool(flags & _V1_PERSISTENT),
        priority,
        expiration,
        timestamp,
        group_seq=group_seq,
        redelivery_count=redeliveries,
    )
    retain = bool(flags & _V1_RETAIN)
    # QoS 0 and 1 are what ``persistent`` says already; QoS 2 and retain need saying.
    if qos == 2 or retain:
        m.annotations = {MQTT_ANNOTATION: bytes([max(qos, 0) | (0x04 if retain else 0)])}
    if flags & _V1_CORRELATION:
        m.correlation_id = r.text()
    if flags & _V1_REPLY_TO:
        m.reply_to = r.destination()
    if flags & _V1_TYPE:
        m.type = r.text()
    if flags & _V1_GROUP:
        m.group_id = r.text()
    if flags & _V1_ORIGINAL:
        m.original_destination = r.destination()
    if flags & _V1_PROPERTIES:
        (count,) = r.unpack(_U32)
        props = m.properties
        for _ in range(count):
            key = r.text()
            props[key] = read_value(r)
    return m
