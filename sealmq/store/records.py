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
to a newer segment. A message inside an entry has a layout of its own, versioned
and extensible by optional fields (``message_record.py``); entries are written
with the newest message version, and entries holding an older one still read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum

from sealmq.core.model import DestinationInfo, DurableSubscriptionInfo
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddScheduled,
    AddSubscription,
    ForgetPrepared,
    Op,
    PrepareTransaction,
    RemoveDestination,
    RemoveMessage,
    RemoveScheduled,
    RemoveSubscription,
    ScheduledJob,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
)
from sealmq.store.errors import CorruptRecordError, StoreError
from sealmq.store.index import MessageAdded
from sealmq.store.message_record import (
    RecordReader,
    read_message,
    read_message_v1,
    skip_message,
    write_message,
)

__all__ = [
    "RECORD_FORMAT",
    "RecordType",
    "decode_record",
    "decode_record_index",
    "encode_entry",
    "encode_record",
    "join_entries",
]

#: Version of the payload layout below; a reader refuses any other.
RECORD_FORMAT = 1


class RecordType(IntEnum):
    """Every entry type the journal holds (as Artemis ``JournalRecordIds``). Never renumber."""

    #: u64 seq, u32 owner count, owner*, message (version 1). Read only.
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
    #: topic, message (version 1). Read only.
    SET_RETAINED = 6
    #: topic.
    CLEAR_RETAINED = 7
    #: key, state (u32-length bytes).
    SET_SESSION_STATE = 8
    #: key.
    DELETE_SESSION_STATE = 9
    #: u64 seq, u32 owner count, owner*, message (version 2 and later).
    ADD_MESSAGE_V2 = 10
    #: topic, message (version 2 and later).
    SET_RETAINED_V2 = 11
    #: message id, owner, u32 count.
    SET_DELIVERY_COUNT = 12
    #: u8 destination kind, name, options (u32-length bytes).
    ADD_DESTINATION = 13
    #: u8 destination kind, name.
    REMOVE_DESTINATION = 14
    #: job id, schedule (u32-length bytes), message (version 2 and later).
    ADD_SCHEDULED = 15
    #: job id.
    REMOVE_SCHEDULED = 16
    #: xid (u32-length bytes), u32 length, entries of that length (AddMessage with seq 0;
    #: no PREPARE_TRANSACTION among them).
    PREPARE_TRANSACTION = 17
    #: xid (u32-length bytes).
    FORGET_PREPARED = 18


_B = struct.Struct(">B")
_U32 = struct.Struct(">I")
_ADD_HEAD = struct.Struct(">BQI")  # type, seq, owner count
_SUB_FLAGS_NO_LOCAL = 0x01
_SUB_FLAGS_SELECTOR = 0x02

_HEADER = _B.pack(RECORD_FORMAT)
_T_ADD_V1 = RecordType.ADD_MESSAGE.value
_T_ADD = RecordType.ADD_MESSAGE_V2.value
_T_REMOVE = _B.pack(RecordType.REMOVE_MESSAGE)
_T_ADD_SUB = _B.pack(RecordType.ADD_SUBSCRIPTION)
_T_REMOVE_SUB = _B.pack(RecordType.REMOVE_SUBSCRIPTION)
_T_ADD_SUB_V2 = _B.pack(RecordType.ADD_SUBSCRIPTION_V2)
_T_SET_RETAINED = _B.pack(RecordType.SET_RETAINED_V2)
_T_SET_COUNT = _B.pack(RecordType.SET_DELIVERY_COUNT)
_T_ADD_DEST = _B.pack(RecordType.ADD_DESTINATION)
_T_REMOVE_DEST = _B.pack(RecordType.REMOVE_DESTINATION)
_T_ADD_SCHEDULED = _B.pack(RecordType.ADD_SCHEDULED)
_T_REMOVE_SCHEDULED = _B.pack(RecordType.REMOVE_SCHEDULED)
_T_PREPARE = _B.pack(RecordType.PREPARE_TRANSACTION)
_T_FORGET_PREPARED = _B.pack(RecordType.FORGET_PREPARED)
_T_CLEAR_RETAINED = _B.pack(RecordType.CLEAR_RETAINED)
_T_SET_SESSION = _B.pack(RecordType.SET_SESSION_STATE)
_T_DELETE_SESSION = _B.pack(RecordType.DELETE_SESSION_STATE)
#: Payloads at least this large are built in a bytearray that is sealed in place.
SEAL_IN_PLACE_BYTES = 1024 * 1024


def encode_record(
    ops: Sequence[Op], seq: int, *, tag_room: int = 0
) -> tuple[bytes | bytearray, int]:
    """One payload for ``ops``; AddMessage entries get ``seq``, ``seq + 1``, …

    Returns the payload and the next unused sequence number. Raises
    :class:`StoreError` for values that cannot be stored (an int out of range).
    With ``tag_room``, a payload of :data:`SEAL_IN_PLACE_BYTES` or more comes as a
    ``bytearray`` with that many spare bytes at its end, for the journal to seal in
    place (one buffer besides the message body, not two).
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
    if tag_room:
        size = sum(map(len, parts))
        if size >= SEAL_IN_PLACE_BYTES:
            buf = bytearray(size + tag_room)
            pos = 0
            # Through a memoryview: bytearray slice assignment copies a bytes value first.
            with memoryview(buf) as view:
                for part in parts:
                    view[pos : pos + len(part)] = part
                    pos += len(part)
            return buf, seq
    return b"".join(parts), seq


def encode_entry(
    seq: int,
    op: AddMessage
    | AddSubscription
    | SetRetained
    | SetSessionState
    | SetDeliveryCount
    | AddDestination
    | AddScheduled
    | PrepareTransaction,
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
    write_message(parts, op.message)


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
            write_message(parts, op.message)
    elif type(op) is SetSessionState:
        if op.state is None:
            parts.append(_T_DELETE_SESSION)
            _text(parts, op.key)
        else:
            parts.append(_T_SET_SESSION)
            _text(parts, op.key)
            _bytes(parts, op.state)
    elif type(op) is SetDeliveryCount:
        parts.append(_T_SET_COUNT)
        _text(parts, op.message_id)
        _text(parts, op.owner)
        parts.append(_U32.pack(op.count))
    elif type(op) is AddDestination:
        parts.append(_T_ADD_DEST)
        parts.append(_B.pack(op.info.destination.kind))
        _text(parts, op.info.destination.name)
        _bytes(parts, op.info.options)
    elif type(op) is RemoveDestination:
        parts.append(_T_REMOVE_DEST)
        parts.append(_B.pack(op.destination.kind))
        _text(parts, op.destination.name)
    elif type(op) is AddScheduled:
        parts.append(_T_ADD_SCHEDULED)
        _text(parts, op.job.job_id)
        _bytes(parts, op.job.schedule)
        write_message(parts, op.job.message)
    elif type(op) is RemoveScheduled:
        parts.append(_T_REMOVE_SCHEDULED)
        _text(parts, op.job_id)
    elif type(op) is PrepareTransaction:
        inner: list[bytes] = []
        for each in op.ops:
            if type(each) is PrepareTransaction:
                raise TypeError("a prepared transaction cannot hold another")
            if type(each) is AddMessage:
                _add_message(inner, 0, each)
            else:
                _other(inner, each)
        parts.append(_T_PREPARE)
        _bytes(parts, op.xid)
        parts.append(_U32.pack(sum(map(len, inner))))
        parts.extend(inner)
    elif type(op) is ForgetPrepared:
        parts.append(_T_FORGET_PREPARED)
        _bytes(parts, op.xid)
    else:
        raise TypeError(f"not a store operation: {type(op).__name__}")


def decode_record(payload: bytes | memoryview) -> list[tuple[int, Op]]:
    """The ``(seq, op)`` entries of a payload; ``seq`` is 0 for all but AddMessage.

    Raises :class:`CorruptRecordError` (without a file name: the caller knows it)
    for anything malformed.
    """
    return _decode(payload, bodies=True)  # type: ignore[return-value]


def decode_record_index(payload: bytes | memoryview) -> list[tuple[int, Op | MessageAdded]]:
    """As :func:`decode_record`, but each AddMessage (outside prepared transactions)
    comes as a :class:`MessageAdded`: its id, owners and body size, the message
    stepped over without being built (recovery without bodies)."""
    return _decode(payload, bodies=False)


def _decode(payload: bytes | memoryview, *, bodies: bool) -> list[tuple[int, Op | MessageAdded]]:
    r = RecordReader(memoryview(payload))
    try:
        if r.u8() != RECORD_FORMAT:
            raise CorruptRecordError("unknown record format")
        return _entries(r, nested=False, bodies=bodies)
    except (ValueError, struct.error) as exc:
        raise CorruptRecordError(f"malformed record payload ({type(exc).__name__})") from None


def _entries(
    r: RecordReader, *, nested: bool, bodies: bool = True
) -> list[tuple[int, Op | MessageAdded]]:
    out: list[tuple[int, Op | MessageAdded]] = []
    while r.pos < r.end:
        kind = r.u8()
        if kind in (_T_ADD, _T_ADD_V1):
            r.pos -= 1
            _, seq, n_owners = r.unpack(_ADD_HEAD)
            owners = tuple(r.text() for _ in range(n_owners))
            if not bodies:
                if kind == _T_ADD:
                    message_id, size = skip_message(r)
                else:  # a version 1 message (journals of older brokers): read whole
                    old = read_message_v1(r)
                    message_id, size = old.message_id, len(old.body)
                out.append((seq, MessageAdded(message_id, owners, size)))
                continue
            message = read_message(r) if kind == _T_ADD else read_message_v1(r)
            out.append((seq, AddMessage(message, owners)))
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
        elif kind == RecordType.SET_RETAINED_V2:
            topic = r.text()
            out.append((0, SetRetained(topic, read_message(r))))
        elif kind == RecordType.SET_RETAINED:
            topic = r.text()
            out.append((0, SetRetained(topic, read_message_v1(r))))
        elif kind == RecordType.CLEAR_RETAINED:
            out.append((0, SetRetained(r.text(), None)))
        elif kind == RecordType.SET_SESSION_STATE:
            key = r.text()
            out.append((0, SetSessionState(key, bytes(r.raw()))))
        elif kind == RecordType.DELETE_SESSION_STATE:
            out.append((0, SetSessionState(r.text(), None)))
        elif kind == RecordType.SET_DELIVERY_COUNT:
            mid, owner = r.text(), r.text()
            out.append((0, SetDeliveryCount(mid, owner, r.unpack(_U32)[0])))
        elif kind == RecordType.ADD_DESTINATION:
            added = DestinationInfo(r.destination(), bytes(r.raw()))
            out.append((0, AddDestination(added)))
        elif kind == RecordType.REMOVE_DESTINATION:
            out.append((0, RemoveDestination(r.destination())))
        elif kind == RecordType.ADD_SCHEDULED:
            job_id, schedule = r.text(), bytes(r.raw())
            out.append((0, AddScheduled(ScheduledJob(job_id, read_message(r), schedule))))
        elif kind == RecordType.REMOVE_SCHEDULED:
            out.append((0, RemoveScheduled(r.text())))
        elif kind == RecordType.PREPARE_TRANSACTION and not nested:
            xid = bytes(r.raw())
            inner = _entries(RecordReader(r.raw()), nested=True)
            ops = tuple(op for _, op in inner if not isinstance(op, MessageAdded))
            out.append((0, PrepareTransaction(xid, ops)))
        elif kind == RecordType.FORGET_PREPARED:
            out.append((0, ForgetPrepared(bytes(r.raw()))))
        else:
            raise CorruptRecordError(f"unknown record type {kind}")
    return out
