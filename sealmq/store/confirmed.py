"""How far the journal was confirmed: a small authenticated record beside the segments.

``<journal>/confirmed`` says which segments the journal is made of and how far
the newest one was confirmed to clients. Recovery compares it with the segment
files, so a missing segment, an older copy put back, or the newest segment cut
(or removed) past what was confirmed is refused instead of silently recovered.

The file holds two slots of ``slot size`` bytes each (the file is twice that).
Each write goes to the slot that does *not* hold the newest valid record, in
place (``pwrite``), so a write torn by a crash leaves the other slot intact;
the reader takes the valid slot with the highest sequence number. A slot is::

    "SEALMQC\\0"  u16 format=1  u32 body length
    body = fields(broker id, u64 sequence, seal of the newest segment, key id,
                  wrapped DEK of the newest segment, seals of the older segments,
                  u64 numbers of segments being deleted)
    seal = u64 number, 16-byte segment id, u64 record count, 16-byte tag of the last record
    32-byte HMAC-SHA256 over ("sealmq-confirmed", slot up to the MAC)

The MAC key is derived (HKDF-SHA256) from the newest segment's data key, which
only the key service can unwrap; the wrapped DEK is in the slot itself, so the
record can be checked even when that segment's file is gone. Nothing in it is
user-supplied.

The slot is written after every synced batch (no fsync of its own: it rides in
the page cache, which a killed process does not lose) and fsynced when a segment
is created or closed, before a segment is deleted, and otherwise at most every
:data:`CONFIRMED_SYNC_SECONDS`.
"""

from __future__ import annotations

import hmac
import os
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealmq.store.crypto import TAG_BYTES, encode_fields
from sealmq.store.errors import CorruptRecordError, KeyUnavailableError
from sealmq.store.files import FILE_MODE, datasync, fsync_dir, remove_quietly, write_all
from sealmq.store.keys import DataKeyCache

__all__ = [
    "CONFIRMED_FILE",
    "CONFIRMED_SYNC_SECONDS",
    "NO_ID",
    "NO_TAG",
    "ConfirmedFile",
    "ConfirmedPoint",
    "SegmentSeal",
]

CONFIRMED_FILE = "confirmed"
#: Longest time a confirmed point written after a batch may stay without an fsync of
#: its own. Only an operating-system crash or power loss can lose it (a killed
#: process cannot), and then recovery checks against the point at most this old.
CONFIRMED_SYNC_SECONDS = 1.0
#: Segment ids are 16 random bytes; a format-1 segment has none.
NO_ID = bytes(16)
#: The "last tag" of a segment without records.
NO_TAG = bytes(TAG_BYTES)

_MAGIC = b"SEALMQC\x00"
_FORMAT = 1
_HEAD = struct.Struct(">8sHI")
_SEAL = struct.Struct(">Q16sQ16s")
#: The sequence and the newest segment's seal, each as a length-prefixed field.
_SEQ_LAST = struct.Struct(">IQIQ16sQ16s")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_MAC_BYTES = 32
#: One slot is at least this big (a page); it grows, by whole pages, with the seal list.
_MIN_SLOT = 4096
#: A slot larger than this is damage, not a record (about 1.3 million segments).
_MAX_SLOT = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentSeal:
    """A segment's identity and how many records it holds, up to the tag of the last one."""

    number: int
    segment_id: bytes
    records: int
    last_tag: bytes

    def fields(self) -> tuple[int, bytes, int, bytes]:
        return (self.number, self.segment_id, self.records, self.last_tag)

    def pack(self) -> bytes:
        return _SEAL.pack(self.number, self.segment_id, self.records, self.last_tag)


@dataclass(frozen=True, slots=True)
class ConfirmedPoint:
    """What the journal was, as last recorded."""

    seq: int
    #: The newest segment; ``records`` is how many of its records were confirmed.
    last: SegmentSeal
    key_id: str
    #: The newest segment's wrapped data key (the MAC key derives from it).
    wrapped: bytes
    #: Every other segment that must exist, with its final state.
    older: tuple[SegmentSeal, ...]
    #: Segments the broker was deleting: present or not, they are not part of the journal.
    deleting: tuple[int, ...]

    def expected(self) -> dict[int, SegmentSeal]:
        """Every segment that must exist, by number (the newest with its confirmed count)."""
        out = {seal.number: seal for seal in self.older}
        out[self.last.number] = self.last
        return out


def _mac_key(dek: bytes, broker: bytes, number: int) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=encode_fields(b"sealmq-confirmed", broker, _U64.pack(number)),
    ).derive(dek)


_MAC_LABEL = encode_fields(b"sealmq-confirmed")


def _mac(key: bytes, signed: bytes) -> bytes:
    return hmac.digest(key, _MAC_LABEL + _U32.pack(len(signed)) + signed, "sha256")


class ConfirmedFile:
    """Reads and writes ``<journal>/confirmed``. Writes: one thread at a time (the writer)."""

    def __init__(
        self,
        directory: Path,
        broker_id: str,
        keys: DataKeyCache,
        context_for: Callable[[int], Mapping[str, str]],
    ) -> None:
        self.path = Path(directory) / CONFIRMED_FILE
        self._broker = broker_id.encode()
        self._keys = keys
        self._context_for = context_for
        self._fd: int | None = None
        self._slot_size = 0
        self._next_slot = 0
        self._seq = 0
        self._mac_for: tuple[int, bytes] | None = None
        self._mac_key = b""
        self._prefix = encode_fields(self._broker)
        self._suffix = b""
        self._suffix_for: tuple[str, bytes, tuple[SegmentSeal, ...], tuple[int, ...]] | None = None
        #: fsyncs of this file so far.
        self.sync_count = 0

    # -- reading --------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> ConfirmedPoint | None:
        """The newest valid record, or None when there is no file.

        Raises :class:`CorruptRecordError` when no slot authenticates, and
        :class:`KeyUnavailableError` when the key service refuses the data key.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * _MAX_SLOT + 1)
        except FileNotFoundError:
            return None
        size = len(data) // 2
        if len(data) % 2 or size < _HEAD.size or size > _MAX_SLOT:
            raise CorruptRecordError("the confirmed record has a damaged size", self.path, 0)
        best: tuple[ConfirmedPoint, int] | None = None
        failure = "the confirmed record failed authentication"
        refused: KeyUnavailableError | None = None
        for slot in (0, 1):
            try:
                point = self._parse(data[slot * size : (slot + 1) * size])
            except CorruptRecordError as exc:
                failure = exc.reason
                continue
            except KeyUnavailableError as exc:
                # A slot torn inside its wrapped key fails at the key service: the other
                # slot decides. Only if neither can be read is the key service to blame.
                refused = exc
                continue
            if best is None or point.seq > best[0].seq:
                best = (point, slot)
        if best is None:
            if refused is not None:
                raise refused
            raise CorruptRecordError(failure, self.path, 0)
        point, slot = best
        self._seq = point.seq
        self._slot_size = size
        self._next_slot = 1 - slot
        return point

    def _parse(self, slot: bytes) -> ConfirmedPoint:
        magic, fmt, n = _HEAD.unpack_from(slot)
        if magic != _MAGIC or fmt != _FORMAT or _HEAD.size + n + _MAC_BYTES > len(slot):
            raise CorruptRecordError("the confirmed record is damaged")
        end = _HEAD.size + n
        fields = _split(slot[_HEAD.size : end])
        if len(fields) != 7 or len(fields[1]) != 8 or len(fields[2]) != _SEAL.size:
            raise CorruptRecordError("the confirmed record is malformed")
        broker, seq, last, key_id, wrapped, older, deleting = fields
        if broker != self._broker:
            raise CorruptRecordError("the confirmed record belongs to another broker")
        if len(older) % _SEAL.size or len(deleting) % 8:
            raise CorruptRecordError("the confirmed record is malformed")
        tip = SegmentSeal(*_SEAL.unpack(last))
        dek = self._keys.decrypt(wrapped, self._context_for(tip.number))
        key = _mac_key(dek, self._broker, tip.number)
        if not hmac.compare_digest(_mac(key, slot[:end]), slot[end : end + _MAC_BYTES]):
            raise CorruptRecordError("the confirmed record failed authentication")
        return ConfirmedPoint(
            _U64.unpack(seq)[0],
            tip,
            key_id.decode("utf-8", "replace"),
            wrapped,
            tuple(
                SegmentSeal(*_SEAL.unpack_from(older, i)) for i in range(0, len(older), _SEAL.size)
            ),
            tuple(_U64.unpack_from(deleting, i)[0] for i in range(0, len(deleting), 8)),
        )

    # -- writing --------------------------------------------------------------------------

    def write(
        self,
        last: SegmentSeal,
        key_id: str,
        wrapped: bytes,
        older: tuple[SegmentSeal, ...],
        deleting: tuple[int, ...] = (),
        *,
        sync: bool,
    ) -> None:
        """Record this point in the slot not holding the newest one; fsync if ``sync``.

        Blocking, may call the key provider (once per newest segment). Raises
        ``OSError`` or :class:`KeyUnavailableError`.
        """
        if self._mac_for != (last.number, wrapped):
            dek = self._keys.decrypt(wrapped, self._context_for(last.number))
            self._mac_key = _mac_key(dek, self._broker, last.number)
            self._mac_for = (last.number, wrapped)
        # Per batch only the sequence and the newest segment's count and tag change: the
        # rest is encoded again only when it changes.
        suffix_for = (key_id, wrapped, older, deleting)
        if self._suffix_for is None or any(
            a is not b and a != b for a, b in zip(suffix_for, self._suffix_for, strict=True)
        ):
            self._suffix = encode_fields(
                key_id.encode(),
                wrapped,
                b"".join(seal.pack() for seal in older),
                b"".join(_U64.pack(n) for n in deleting),
            )
            self._suffix_for = suffix_for
        self._seq += 1
        body = b"".join(
            (self._prefix, _SEQ_LAST.pack(8, self._seq, _SEAL.size, *last.fields()), self._suffix)
        )
        signed = _HEAD.pack(_MAGIC, _FORMAT, len(body)) + body
        slot = signed + _mac(self._mac_key, signed)
        if self._fd is None and 0 < len(slot) <= self._slot_size and self.path.exists():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        if self._fd is None or len(slot) > self._slot_size:
            self._replace(slot)
            return
        os.pwrite(self._fd, slot, self._next_slot * self._slot_size)
        self._next_slot = 1 - self._next_slot
        if sync:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None:
            datasync(self._fd)
            self.sync_count += 1

    def _replace(self, slot: bytes) -> None:
        """A new file (first write, or slots too small) with ``slot`` in both places."""
        size = max(_MIN_SLOT, -(-len(slot) // _MIN_SLOT) * _MIN_SLOT)
        padded = slot + bytes(size - len(slot))
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, padded + padded)
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            remove_quietly(tmp)
            raise
        fsync_dir(self.path.parent)
        self.sync_count += 1
        self.close()
        self._fd = fd
        self._slot_size = size
        self._next_slot = 1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _split(body: bytes) -> list[bytes]:
    fields = []
    pos, end = 0, len(body)
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("the confirmed record is malformed")
        n = int.from_bytes(body[pos : pos + 4], "big")
        pos += 4
        if pos + n > end:
            raise CorruptRecordError("the confirmed record is malformed")
        fields.append(body[pos : pos + n])
        pos += n
    return fields
