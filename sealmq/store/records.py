"""Core operations <-> compact binary record payloads.

The journal seals and appends opaque payloads; this module is the only place
that knows what is inside one. A payload is one batch of operations written by
one ``MessageStore.write`` call (or one compaction step)::

    payload  = u8 RECORD_FORMAT, entry*
    entry    = u8 RecordType, fields of that type

All integers are big-endian; strings are UTF-8 (``surrogatepass``, so any
Python ``str`` round-trips) and strings and bytes carry a u32 length prefix.

New entry types are added under new ids and old ones are never changed, so
every journal written so far stays readable (a reader that predates a type
refuses it as an unknown record type rather than misreading it).

Every stored message carries a store-assigned sequence number, so recovery
returns messages in send order even after compaction has moved some of them
to a newer segment.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any

from sealmq.core.model import (
    BodyKind,
    Destination,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
    PropertyValue,
)
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    Op,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
)
from sealmq.store.errors import CorruptRecordError, StoreError

__all__ = [
    "RECORD_FORMAT",
    "PropertyTag",
    "RecordType",
    "decode_record",
    "encode_entry",
    "encode_record",
    "join_entries",
]

#: Version of the payload layout below; a reader refuses any other.
RECORD_FORMAT = 1


class RecordType(IntEnum):
    """Every entry type the journal holds (as Artemis ``JournalRecordIds``). Never renumber."""

    #: u64 seq, u32 owner count, owner*, message.
    ADD_MESSAGE = 1
    #: message id, owner.
    REMOVE_MESSAGE = 2
    #: client id, name, destination, u8 flags (1 no-local, 2 has selector), [selector].
    ADD_SUBSCRIPTION = 3
    #: client id, name.
    REMOVE_SUBSCRIPTION = 4
    #: As ADD_SUBSCRIPTION, then options (u32-length bytes). Written only when a
    #: subscription has options, so journals without any stay readable by older brokers.
    ADD_SUBSCRIPTION_V2 = 5
    #: topic, message (as in ADD_MESSAGE, without seq and owners).
    SET_RETAINED = 6
    #: topic.
    CLEAR_RETAINED = 7
    #: key, state (u32-length bytes).
    SET_SESSION_STATE = 8
    #: key.
    DELETE_SESSION_STATE = 9


class PropertyTag(IntEnum):
    """Type tags of application property values."""

    NONE = 0
    FALSE = 1
    TRUE = 2
    INT64 = 3
    #: An int outside 64 bits: u32 length, signed big-endian two's complement.
    BIGINT = 4
    FLOAT = 5
    STR = 6
    BYTES = 7


# Message flags.
_PERSISTENT = 0x01
_RETAIN = 0x02
_CORRELATION = 0x04
_REPLY_TO = 0x08
_TYPE = 0x10
_GROUP = 0x20
_ORIGINAL = 0x40
_PROPERTIES = 0x80

_B = struct.Struct(">B")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q")
_D = struct.Struct(">d")
_ADD_HEAD = struct.Struct(">BQI")  # type, seq, owner count
# flags, body kind, destination kind, qos (-1: none), priority, expiration, timestamp,
# group seq, redelivery count
_MSG_HEAD = struct.Struct(">BBBbiqqqi")
_SUB_FLAGS_NO_LOCAL = 0x01
_SUB_FLAGS_SELECTOR = 0x02

_HEADER = _B.pack(RECORD_FORMAT)
_T_ADD = RecordType.ADD_MESSAGE.value
_T_REMOVE = _B.pack(RecordType.REMOVE_MESSAGE)
_T_ADD_SUB = _B.pack(RecordType.ADD_SUBSCRIPTION)
_T_REMOVE_SUB = _B.pack(RecordType.REMOVE_SUBSCRIPTION)
_T_ADD_SUB_V2 = _B.pack(RecordType.ADD_SUBSCRIPTION_V2)
_T_SET_RETAINED = _B.pack(RecordType.SET_RETAINED)
_T_CLEAR_RETAINED = _B.pack(RecordType.CLEAR_RETAINED)
_T_SET_SESSION = _B.pack(RecordType.SET_SESSION_STATE)
_T_DELETE_SESSION = _B.pack(RecordType.DELETE_SESSION_STATE)
_NONE = _B.pack(PropertyTag.NONE)
_FALSE = _B.pack(PropertyTag.FALSE)
_TRUE = _B.pack(PropertyTag.TRUE)
_INT64 = _B.pack(PropertyTag.INT64)
_BIGINT = _B.pack(PropertyTag.BIGINT)
_FLOAT = _B.pack(PropertyTag.FLOAT)
_STR = _B.pack(PropertyTag.STR)
_BYTES = _B.pack(PropertyTag.BYTES)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def encode_record(ops: Sequence[Op], seq: int) -> tuple[bytes, int]:
    """One payload for ``ops``; AddMessage entries get ``seq``, ``seq + 1``, …

    Returns the payload and the next unused sequence number. Raises
    :class:`StoreError` for values that cannot be stored (an int out of range).
    """
    parts: list[bytes] = [_HEADER]
    try:
        for op in ops:
            if type(op) is AddMessage:
                _add_message(parts, seq, op)
                seq += 1
            else:
                _other(parts, op)
    except (struct.error, OverflowError, TypeError) as exc:
        raise StoreError(f"operation cannot be stored: {exc}") from None
    return b"".join(parts), seq


def encode_entry(
    seq: int, op: AddMessage | AddSubscription | SetRetained | SetSessionState
) -> bytes:
    """One live entry re-stated (compaction); an AddMessage keeps its original ``seq``.

    Join entries into a payload with :func:`join_entries`.
    """
    parts: list[bytes] = []
    if type(op) is AddMessage:
        _add_message(parts, seq, op)
    else:
        _other(parts, op)
    return b"".join(parts)


def join_entries(entries: Iterable[bytes]) -> bytes:
    """A payload made of entries from :func:`encode_entry`."""
    return _HEADER + b"".join(entries)


def _text(parts: list[bytes], s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def _bytes(parts: list[bytes], b: bytes) -> None:
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def _add_message(parts: list[bytes], seq: int, op: AddMessage) -> None:
    owners = op.owners
    parts.append(_ADD_HEAD.pack(_T_ADD, seq, len(owners)))
    for owner in owners:
        _text(parts, owner)
    _message_fields(parts, op.message)


def _message_fields(parts: list[bytes], m: Message) -> None:
    flags = 0
    if m.persistent:
        flags |= _PERSISTENT
    if m.retain:
        flags |= _RETAIN
    if m.correlation_id is not None:
        flags |= _CORRELATION
    if m.reply_to is not None:
        flags |= _REPLY_TO
    if m.type is not None:
        flags |= _TYPE
    if m.group_id is not None:
        flags |= _GROUP
    if m.original_destination is not None:
        flags |= _ORIGINAL
    if m.properties:
        flags |= _PROPERTIES
    parts.append(
        _MSG_HEAD.pack(
            flags,
            m.body_kind,
            m.destination.kind,
            -1 if m.qos is None else m.qos,
            m.priority,
            m.expiration,
            m.timestamp,
            m.group_seq,
            m.redelivery_count,
        )
    )
    _text(parts, m.message_id)
    _text(parts, m.destination.name)
    body = m.body
    parts.append(_U32.pack(len(body)))
    parts.append(body)
    if m.correlation_id is not None:
        _text(parts, m.correlation_id)
    if m.reply_to is not None:
        parts.append(_B.pack(m.reply_to.kind))
        _text(parts, m.reply_to.name)
    if m.type is not None:
        _text(parts, m.type)
    if m.group_id is not None:
        _text(parts, m.group_id)
    if m.original_destination is not None:
        parts.append(_B.pack(m.original_destination.kind))
        _text(parts, m.original_destination.name)
    if m.properties:
        props = m.properties
        parts.append(_U32.pack(len(props)))
        for key, value in props.items():
            _text(parts, key)
            _property(parts, value)


def _property(parts: list[bytes], value: PropertyValue) -> None:
    t = type(value)
    if t is str:
        parts.append(_STR)
        _text(parts, value)  # type: ignore[arg-type]
    elif t is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            parts.append(_INT64)
            parts.append(_Q.pack(value))
        else:
            n = value.bit_length() // 8 + 1  # type: ignore[union-attr]
            parts.append(_BIGINT)
            parts.append(_U32.pack(n))
            parts.append(value.to_bytes(n, "big", signed=True))  # type: ignore[union-attr]
    elif t is bool:
        parts.append(_TRUE if value else _FALSE)
    elif value is None:
        parts.append(_NONE)
    elif t is float:
        parts.append(_FLOAT)
        parts.append(_D.pack(value))
    elif t is bytes:
        parts.append(_BYTES)
        parts.append(_U32.pack(len(value)))  # type: ignore[arg-type]
        parts.append(value)  # type: ignore[arg-type]
    elif isinstance(value, bool):
        parts.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        _property(parts, int(value))
    elif isinstance(value, float):
        _property(parts, float(value))
    elif isinstance(value, str):
        _property(parts, str(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        _property(parts, bytes(value))
    else:
        raise TypeError(f"property value of type {t.__name__} is not storable")


def _other(parts: list[bytes], op: Op) -> None:
    if type(op) is RemoveMessage:
        parts.append(_T_REMOVE)
        _text(parts, op.message_id)
        _text(parts, op.owner)
    elif type(op) is AddSubscription:
        info = op.info
        parts.append(_T_ADD_SUB_V2 if info.options else _T_ADD_SUB)
        _text(parts, info.client_id)
        _text(parts, info.name)
        parts.append(_B.pack(info.destination.kind))
        _text(parts, info.destination.name)
        flags = (_SUB_FLAGS_NO_LOCAL if info.no_local else 0) | (
            _SUB_FLAGS_SELECTOR if info.selector is not None else 0
        )
        parts.append(_B.pack(flags))
        if info.selector is not None:
            _text(parts, info.selector)
        if info.options:
            _bytes(parts, info.options)
    elif type(op) is RemoveSubscription:
        parts.append(_T_REMOVE_SUB)
        _text(parts, op.client_id)
        _text(parts, op.name)
    elif type(op) is SetRetained:
        if op.message is None:
            parts.append(_T_CLEAR_RETAINED)
            _text(parts, op.topic)
        else:
            parts.append(_T_SET_RETAINED)
            _text(parts, op.topic)
            _message_fields(parts, op.message)
    elif type(op) is SetSessionState:
        if op.state is None:
            parts.append(_T_DELETE_SESSION)
            _text(parts, op.key)
        else:
            parts.append(_T_SET_SESSION)
            _text(parts, op.key)
            _bytes(parts, op.state)
    else:
        raise TypeError(f"not a store operation: {type(op).__name__}")


class _Reader:
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

    def raw(self) -> memoryview:
        (n,) = self.unpack(_U32)
        pos = self.pos
        if pos + n > self.end:
            raise CorruptRecordError("truncated record payload")
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def text(self) -> str:
        return str(self.raw(), "utf-8", "surrogatepass")

    def destination(self) -> Destination:
        return Destination(DestinationKind(self.u8()), self.text())


def decode_record(payload: bytes | memoryview) -> list[tuple[int, Op]]:
    """The ``(seq, op)`` entries of a payload; ``seq`` is 0 for all but AddMessage.

    Raises :class:`CorruptRecordError` (without a file name: the caller knows it)
    for anything malformed.
    """
    r = _Reader(memoryview(payload))
    try:
        if r.u8() != RECORD_FORMAT:
            raise CorruptRecordError("unknown record format")
        out: list[tuple[int, Op]] = []
        while r.pos < r.end:
            kind = r.u8()
            if kind == _T_ADD:
                r.pos -= 1
                _, seq, n_owners = r.unpack(_ADD_HEAD)
                owners = tuple(r.text() for _ in range(n_owners))
                out.append((seq, AddMessage(_message(r), owners)))
            elif kind == RecordType.REMOVE_MESSAGE:
                out.append((0, RemoveMessage(r.text(), r.text())))
            elif kind == RecordType.ADD_SUBSCRIPTION or kind == RecordType.ADD_SUBSCRIPTION_V2:
                client_id, name, dest = r.text(), r.text(), r.destination()
                flags = r.u8()
                selector = r.text() if flags & _SUB_FLAGS_SELECTOR else None
                options = bytes(r.raw()) if kind == RecordType.ADD_SUBSCRIPTION_V2 else b""
                info = DurableSubscriptionInfo(
                    client_id, name, dest, selector, bool(flags & _SUB_FLAGS_NO_LOCAL), options
                )
                out.append((0, AddSubscription(info)))
            elif kind == RecordType.REMOVE_SUBSCRIPTION:
                out.append((0, RemoveSubscription(r.text(), r.text())))
            elif kind == RecordType.SET_RETAINED:
                topic = r.text()
                out.append((0, SetRetained(topic, _message(r))))
            elif kind == RecordType.CLEAR_RETAINED:
                out.append((0, SetRetained(r.text(), None)))
            elif kind == RecordType.SET_SESSION_STATE:
                key = r.text()
                out.append((0, SetSessionState(key, bytes(r.raw()))))
            elif kind == RecordType.DELETE_SESSION_STATE:
                out.append((0, SetSessionState(r.text(), None)))
            else:
                raise CorruptRecordError(f"unknown record type {kind}")
        return out
    except (ValueError, struct.error) as exc:
        raise CorruptRecordError(f"malformed record payload ({type(exc).__name__})") from None


def _message(r: _Reader) -> Message:
    (flags, body_kind, dest_kind, qos, priority, expiration, timestamp, group_seq, redeliveries) = (
        r.unpack(_MSG_HEAD)
    )
    message_id = r.text()
    destination = Destination(DestinationKind(dest_kind), r.text())
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
        group_seq=group_seq,
        redelivery_count=redeliveries,
        qos=None if qos < 0 else qos,
        retain=bool(flags & _RETAIN),
    )
    if flags & _CORRELATION:
        m.correlation_id = r.text()
    if flags & _REPLY_TO:
        m.reply_to = r.destination()
    if flags & _TYPE:
        m.type = r.text()
    if flags & _GROUP:
        m.group_id = r.text()
    if flags & _ORIGINAL:
        m.original_destination = r.destination()
    if flags & _PROPERTIES:
        (count,) = r.unpack(_U32)
        props = m.properties
        for _ in range(count):
            key = r.text()
            props[key] = _read_property(r)
    return m


def _read_property(r: _Reader) -> PropertyValue:
    tag = r.u8()
    if tag == PropertyTag.STR:
        return r.text()
    if tag == PropertyTag.INT64:
        i: int = r.unpack(_Q)[0]
        return i
    if tag == PropertyTag.TRUE:
        return True
    if tag == PropertyTag.FALSE:
        return False
    if tag == PropertyTag.NONE:
        return None
    if tag == PropertyTag.FLOAT:
        f: float = r.unpack(_D)[0]
        return f
    if tag == PropertyTag.BYTES:
        return bytes(r.raw())
    if tag == PropertyTag.BIGINT:
        return int.from_bytes(r.raw(), "big", signed=True)
    raise CorruptRecordError(f"unknown property tag {tag}")
