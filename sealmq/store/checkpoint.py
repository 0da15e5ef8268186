"""The index checkpoint: what recovery would rebuild, sealed, so a restart need not
read the journal's whole history.

Written at a clean close (``FileStore.close``) to ``<data_dir>/checkpoint`` with
:func:`~sealmq.store.sealed.write_sealed_stream` (a fresh data key, context
``{"purpose": "sealmq-checkpoint", "broker": <id>}``, replaced atomically). It names
the journal position it covers: every segment then on disk, with its seal (id,
record count, last tag) and file size. Recovery uses it only if every one of those
segments is still there, the same size, with the seal the journal's confirmed record
gives it; then only the headers of those segments are read and the records after
them are replayed. Anything else (missing, damaged, another broker's, a segment
deleted or changed since) is logged once and recovery scans the whole journal.

Layout (inside the sealed chunks), big-endian. The first chunk::

    u8 CHECKPOINT_FORMAT, u64 next seq,
    u32 n, n × (u64 number, bytes id, u64 records, bytes last tag, u64 size)   segments
    bytes JSON of LiveIndex.export()                                            liveness
    u32 n, n × (u32 k, k × text)                                               owner tuples
    bytes record payload (records.py) of the live subscriptions, retained messages,
          session states, destinations, scheduled jobs and prepared transactions
    u32 n                                                 the number of live messages

then the live messages in send order, each ``text id, u8 len, packed place``, whole
in chunks of about :data:`MESSAGES_CHUNK` bytes, so that neither writing nor reading
holds the file (a million messages: about 60 MB) at once. Strings and bytes carry a
u32 length. Messages' bodies are not in it: they stay in the journal, where the
index says.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sealmq.core.ports import (
    AddDestination,
    AddScheduled,
    AddSubscription,
    PrepareTransaction,
    RecoveredState,
    SetRetained,
    SetSessionState,
)
from sealmq.store.confirmed import SegmentSeal
from sealmq.store.errors import CorruptRecordError
from sealmq.store.index import LiveIndex
from sealmq.store.keys import KeyProvider
from sealmq.store.message_record import RecordReader
from sealmq.store.records import decode_record, encode_entry, join_entries
from sealmq.store.sealed import read_sealed_stream, write_sealed_stream

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "Checkpoint", "read_checkpoint"]

CHECKPOINT_FILE = "checkpoint"
CHECKPOINT_FORMAT = 2
#: About how many bytes of message entries go in one sealed chunk.
MESSAGES_CHUNK = 1024 * 1024
_HEAD = struct.Struct(">BQ")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_B = struct.Struct(">B")


def context(broker_id: str) -> dict[str, str]:
    return {"purpose": "sealmq-checkpoint", "broker": broker_id}


@dataclass(slots=True)
class Checkpoint:
    """A checkpoint as read back: the position it covers and the state at it."""

    next_seq: int
    #: Each covered segment's seal and file size, by number.
    segments: dict[int, tuple[SegmentSeal, int]]
    index: LiveIndex
    #: The live messages' ids in send order.
    order: list[str]
    #: Subscriptions, retained messages, sessions, destinations, scheduled jobs and
    #: prepared transactions (``messages`` empty).
    state: RecoveredState


def _text(parts: list[bytes], s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def _bytes(parts: list[bytes], b: bytes) -> None:
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def write_checkpoint(
    path: Path,
    key_provider: KeyProvider,
    broker_id: str,
    next_seq: int,
    segments: list[tuple[SegmentSeal, int]],
    index: LiveIndex,
    state: RecoveredState,
) -> None:
    """Seal the state at the journal position ``segments`` into ``path`` (replacing it)."""
    write_sealed_stream(
        path, _chunks(next_seq, segments, index, state), key_provider, context(broker_id)
    )


def _chunks(
    next_seq: int,
    segments: list[tuple[SegmentSeal, int]],
    index: LiveIndex,
    state: RecoveredState,
) -> Iterator[bytes | bytearray]:
    parts: list[bytes] = [_HEAD.pack(CHECKPOINT_FORMAT, next_seq), _U32.pack(len(segments))]
    for seal, size in segments:
        parts.append(_U64.pack(seal.number))
        _bytes(parts, seal.segment_id)
        parts.append(_U64.pack(seal.records))
        _bytes(parts, seal.last_tag)
        parts.append(_U64.pack(size))
    _bytes(parts, json.dumps(index.export(), separators=(",", ":")).encode())
    owner_sets = index.owner_sets()
    parts.append(_U32.pack(len(owner_sets)))
    for owners in owner_sets:
        parts.append(_U32.pack(len(owners)))
        for owner in owners:
            _text(parts, owner)
    entries = [encode_entry(0, AddSubscription(info)) for info in state.subscriptions]
    entries += [encode_entry(0, SetRetained(m.destination.name, m)) for m in state.retained]
    entries += [encode_entry(0, SetSessionState(k, v)) for k, v in state.sessions.items()]
    entries += [encode_entry(0, AddDestination(info)) for info in state.destinations]
    entries += [encode_entry(0, AddScheduled(job)) for job in state.scheduled]
    entries += [encode_entry(0, PrepareTransaction(x, ops)) for x, ops in state.prepared.items()]
    _bytes(parts, join_entries(entries))
    messages = index.messages
    parts.append(_U32.pack(len(messages)))
    yield b"".join(parts)
    # One growing buffer per chunk, not four small objects per message (a million).
    out = bytearray()
    u32 = _U32.pack
    for mid, packed in messages.items():
        b = mid.encode("utf-8", "surrogatepass")
        out += u32(len(b))
        out += b
        n = (packed.bit_length() + 7) // 8 or 1
        out.append(n)
        out += packed.to_bytes(n, "big")
        if len(out) >= MESSAGES_CHUNK:
            yield out
            out = bytearray()
    if out:
        yield out


def read_checkpoint(path: Path, key_provider: KeyProvider, broker_id: str) -> Checkpoint:
    """The checkpoint at ``path``. Raises ``FileNotFoundError`` if there is none,
    :class:`CorruptRecordError` if it is damaged, :class:`KeyUnavailableError`."""
    chunks = read_sealed_stream(path, key_provider, context(broker_id))
    try:
        r = RecordReader(memoryview(next(chunks)))
        fmt, next_seq = r.unpack(_HEAD)
        if fmt != CHECKPOINT_FORMAT:
            raise CorruptRecordError(f"unknown checkpoint format {fmt}", path)
        segments: dict[int, tuple[SegmentSeal, int]] = {}
        for _ in range(r.unpack(_U32)[0]):
            (number,) = r.unpack(_U64)
            segment_id = bytes(r.raw())
            (records,) = r.unpack(_U64)
            last_tag = bytes(r.raw())
            (size,) = r.unpack(_U64)
            segments[number] = (SegmentSeal(number, segment_id, records, last_tag), size)
        exported = json.loads(bytes(r.raw()))
        owner_sets = []
        for _ in range(r.unpack(_U32)[0]):
            (k,) = r.unpack(_U32)
            owner_sets.append(tuple(r.text() for _ in range(k)))
        payload = bytes(r.raw())
        (count,) = r.unpack(_U32)
        if r.pos != r.end:
            raise CorruptRecordError("bytes left over in the checkpoint's head", path)
        messages: dict[str, int] = {}
        for chunk in chunks:
            _read_messages(chunk, messages, path)
        if len(messages) != count:
            raise CorruptRecordError("the checkpoint's messages are not all there", path)
        index = LiveIndex()
        index.load(exported, owner_sets, messages)
        state = RecoveredState()
        for _, op in decode_record(payload):
            if type(op) is AddSubscription:
                state.subscriptions.append(op.info)
            elif type(op) is SetRetained and op.message is not None:
                state.retained.append(op.message)
            elif type(op) is SetSessionState and op.state is not None:
                state.sessions[op.key] = op.state
            elif type(op) is AddDestination:
                state.destinations.append(op.info)
            elif type(op) is AddScheduled:
                state.scheduled.append(op.job)
            elif type(op) is PrepareTransaction:
                state.prepared[op.xid] = op.ops
    except StopIteration:
        raise CorruptRecordError("empty checkpoint", path) from None
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise CorruptRecordError(f"malformed checkpoint ({type(exc).__name__})", path) from None
    return Checkpoint(next_seq, segments, index, list(messages), state)


def _read_messages(chunk: bytes, messages: dict[str, int], path: Path) -> None:
    """Add the whole message entries of ``chunk`` to ``messages``."""
    buf, pos, end = chunk, 0, len(chunk)
    unpack_u32 = _U32.unpack_from
    from_bytes = int.from_bytes
    while pos < end:
        # Inlined reads: a million ids take a second, not several.
        if pos + 4 > end:
            raise CorruptRecordError("truncated checkpoint", path)
        (n,) = unpack_u32(buf, pos)
        pos += 4
        mid = str(buf[pos : pos + n], "utf-8", "surrogatepass")
        pos += n
        if pos >= end:
            raise CorruptRecordError("truncated checkpoint", path)
        size = buf[pos]
        place = from_bytes(buf[pos + 1 : pos + 1 + size], "big")
        pos += 1 + size
        if pos > end:
            raise CorruptRecordError("truncated checkpoint", path)
        messages[mid] = place
