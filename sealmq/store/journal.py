"""The encrypted, segmented, append-only journal. It knows nothing of messages.

Layout: ``<dir>/<8-digit number>.seg``, files 0600 in a 0700 folder. A segment is::

    preamble  = "SEALMQJ\\0", u16 format, u32 header length, u32 its complement
    header    = length-prefixed fields: broker id, u64 segment number,
                u64 fencing token, key id, encryption context, wrapped DEK
    tag       = 16-byte GCM tag over preamble+header (nonce counter 0, empty text)
    record*   = u32 n, u32 n ^ 0xFFFFFFFF, n bytes of AES-256-GCM ciphertext+tag

Each segment has a fresh data key (DEK) from the key provider; only its wrapped
form is on disk. Record ``i`` (from 1) uses the 96-bit counter nonce ``i`` and
the associated data ``fields("sealmq-record", broker id, segment, i)``, so a
record moved to another place, segment or broker fails authentication. The
GCM tag is the checksum.

Writes: :meth:`Journal.append` (event loop thread) queues a payload; one writer
thread takes everything queued, seals, writes, fsyncs once per batch, and
settles the batch's futures with one ``call_soon_threadsafe``. The journal never
appends to a segment it did not create in this run: a restart starts a new
segment, so no record counter is ever reused after a torn write.

Recovery (:meth:`Journal.replay`) reads every segment in order. In the last
segment only, an incomplete record at the end (or a zero-filled tail) is a torn
write: it is cut, logged and reported. Anything else that fails authentication
raises :class:`CorruptRecordError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.store.crypto import TAG_BYTES, counter_nonce, encode_context, encode_fields
from sealmq.store.errors import (
    CorruptRecordError,
    KeyUnavailableError,
    StoreClosedError,
    StoreError,
)
from sealmq.store.files import (
    FILE_MODE,
    datasync,
    fsync_dir,
    make_private_dir,
    remove_quietly,
    write_all,
)
from sealmq.store.keys import DataKeyCache

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_RECORD_SIZE",
    "SEGMENT_FORMAT",
    "SEGMENT_MAGIC",
    "Journal",
    "JournalRecord",
    "RecoveryReport",
    "TornTail",
]

T = TypeVar("T")
log = logging.getLogger("sealmq.store")

#: Rotate to a new segment (and a new data key) past this size. KahaDB uses 32 MiB journal
#: files; Artemis 10 MiB. Recovery reads one segment into memory at a time.
DEFAULT_SEGMENT_SIZE = 32 * 1024 * 1024
#: Largest payload one record may hold (the frame length is a u32; ActiveMQ's default
#: maxFrameSize is 100 MiB, so this leaves room).
MAX_RECORD_SIZE = 1 << 30
SEGMENT_MAGIC = b"SEALMQJ\x00"
SEGMENT_FORMAT = 1
SEGMENT_SUFFIX = ".seg"
#: One group commit writes at most about this much; the rest waits for the next fsync.
_MAX_BATCH_BYTES = 8 * 1024 * 1024
#: A header is a few hundred bytes; anything larger is damage, not a header.
_MAX_HEADER = 64 * 1024

_PREAMBLE = struct.Struct(">8sHII")
_FRAME = struct.Struct(">II")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_RECORD_INDEX = struct.Struct(">IQ")  # the last length-prefixed AAD field: (8, index)
_FRAME_CHECK = 0xFFFFFFFF
_SEGMENT_NAME = re.compile(r"^(\d{8})\.seg$")

#: ``on_durable`` receives, in append order, ``(segment number, tag)`` for each record
#: that an fsync just made durable. It runs on the writer thread.
OnDurable = Callable[[list[tuple[int, Any]]], None]


@dataclass(frozen=True, slots=True)
class JournalRecord:
    segment: int
    index: int
    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TornTail:
    """An incomplete write found at the end of the last segment and cut off."""

    path: Path
    offset: int
    discarded_bytes: int


@dataclass(slots=True)
class RecoveryReport:
    segments: list[int] = field(default_factory=list)
    records: int = 0
    torn_tail: TornTail | None = None


class _Segment:
    """The segment being written (writer thread only)."""

    __slots__ = (
        "aad_prefix",
        "aead",
        "context",
        "dek",
        "dirty",
        "fd",
        "next_index",
        "number",
        "size",
    )

    def __init__(self, number: int, fd: int, size: int, dek: bytes, context: dict[str, str]):
        self.number = number
        self.fd = fd
        self.size = size
        self.dek = dek
        self.aead = AESGCM(dek)
        self.context = context
        self.next_index = 1
        self.aad_prefix = b""
        #: Written but not yet fsynced (only records appended with ``sync=False``).
        self.dirty = False


class _Control:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any] | None, future: asyncio.Future[Any]):
        self.fn = fn
        self.future = future


# Queue items: (payload, tag, future) for appends; _Control for everything else.
_Item = tuple[bytes, Any, "asyncio.Future[None]", bool] | _Control


class Journal:
    """Segmented, sealed, group-committed journal in ``directory``.

    Use: construct, :meth:`replay` (once, before anything else), then
    :meth:`append` from the event loop; :meth:`close` at the end. Segment files
    are deleted only when the layer above calls :meth:`delete_segments`.
    """

    def __init__(
        self,
        directory: Path,
        broker_id: str,
        keys: DataKeyCache,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        fencing_token: int = 0,
        on_durable: OnDurable | None = None,
    ) -> None:
        if segment_size <= 0:
            raise ValueError("segment_size must be positive")
        self.directory = Path(directory)
        self.broker_id = broker_id
        self._broker = broker_id.encode()
        self._keys = keys
        self._segment_size = segment_size
        self._fencing_token = fencing_token
        self._on_durable = on_durable
        make_private_dir(self.directory)
        self._lock = threading.Lock()
        self._segments: list[int] = []  # existing, ascending; guarded by _lock
        self._wrapped: dict[int, bytes] = {}
        self._next_number = 1
        self._current: _Segment | None = None
        self._failure: StoreError | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replayed = False
        self._replay_done = False
        self._closing = False
        self.recovery_report = RecoveryReport()
        #: fsyncs of record data so far (group commit makes this far below the appends).
        self.fsync_count = 0
        #: Records made durable so far in this run.
        self.records_written = 0

    # -- naming ---------------------------------------------------------------------------

    def segment_path(self, number: int) -> Path:
        return self.directory / f"{number:08d}{SEGMENT_SUFFIX}"

    def context_for(self, number: int) -> dict[str, str]:
        """The encryption context a segment's data key is bound to."""
        return {"purpose": "sealmq-journal", "broker": self.broker_id, "segment": str(number)}

    @property
    def segments(self) -> list[int]:
        """Existing segment numbers, ascending."""
        with self._lock:
            return list(self._segments)

    @property
    def current_segment(self) -> int | None:
        """The segment being appended to, if one was created in this run."""
        current = self._current
        return None if current is None else current.number

    # -- recovery -------------------------------------------------------------------------

    def replay(self) -> Iterator[JournalRecord]:
        """Every record of every segment, in order; cuts a torn tail of the last segment.

        Must be consumed completely before :meth:`append`. Raises
        :class:`CorruptRecordError` or :class:`KeyUnavailableError`.
        """
        if self._replayed:
            raise StoreError("the journal was already replayed")
        self._replayed = True
        numbers = self._scan()
        with self._lock:
            self._segments = list(numbers)
        report = self.recovery_report
        for i, number in enumerate(numbers):
            last = i == len(numbers) - 1
            for record in self._read(number, last=last):
                report.records += 1
                yield record
            if self.segment_path(number).exists():
                report.segments.append(number)
        self._next_number = (numbers[-1] + 1) if numbers else 1
        self._replay_done = True

    def read_segment(self, number: int) -> list[JournalRecord]:
        """All records of a complete segment (not the one being written); for compaction."""
        current = self._current
        if current is not None and current.number == number:
            raise StoreError("cannot read the segment being written")
        return list(self._read(number, last=False))

    def _scan(self) -> list[int]:
        numbers = []
        for entry in os.scandir(self.directory):
            match = _SEGMENT_NAME.match(entry.name)
            if match:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _read(self, number: int, *, last: bool) -> Iterator[JournalRecord]:
        path = self.segment_path(number)
        with open(path, "rb") as f:
            data = f.read()
        end = len(data)
        head = _PREAMBLE.size
        if end < head or data.count(0) == end:
            if last:
                # Crashed while creating the segment: nothing in it was ever confirmed.
                self._cut(path, 0, end, remove=True)
                return
            raise CorruptRecordError("segment header is truncated", path, 0)
        magic, fmt, header_len, check = _PREAMBLE.unpack_from(data)
        if magic != SEGMENT_MAGIC:
            raise CorruptRecordError("not a sealmq journal segment", path, 0)
        if fmt != SEGMENT_FORMAT:
            raise CorruptRecordError(f"unsupported segment format {fmt}", path, 0)
        if header_len ^ check != _FRAME_CHECK or header_len > _MAX_HEADER:
            raise CorruptRecordError("segment header length is damaged", path, 0)
        if end < head + header_len + TAG_BYTES:
            if last:
                self._cut(path, 0, end, remove=True)
                return
            raise CorruptRecordError("segment header is truncated", path, 0)
        body = data[head : head + header_len]
        fields = _split_fields(body, path)
        if len(fields) != 6:
            raise CorruptRecordError("segment header is malformed", path, 0)
        broker, seg_no, _token, _key_id, context_bytes, wrapped = fields
        if broker != self._broker:
            raise CorruptRecordError(
                "segment belongs to another broker "
                f"({broker.decode('utf-8', 'replace')!r}, expected {self.broker_id!r})",
                path,
                0,
            )
        if len(seg_no) != 8 or _U64.unpack(seg_no)[0] != number:
            raise CorruptRecordError("segment number does not match the file name", path, 0)
        context = self.context_for(number)
        if context_bytes != encode_context(context):
            raise CorruptRecordError("segment encryption context is not this broker's", path, 0)
        dek = self._keys.decrypt(wrapped, context)
        aead = AESGCM(dek)
        pos = head + header_len
        try:
            aead.decrypt(counter_nonce(0), data[pos : pos + TAG_BYTES], _header_aad(data[:pos]))
        except InvalidTag:
            raise CorruptRecordError("segment header failed authentication", path, 0) from None
        with self._lock:
            self._wrapped[number] = wrapped
        pos += TAG_BYTES
        prefix = self._aad_prefix(number)
        view = memoryview(data)
        index = 1
        while pos < end:
            if pos + _FRAME.size > end:
                if last:
                    self._cut(path, pos, end)
                    return
                raise CorruptRecordError("truncated record", path, pos)
            n, check = _FRAME.unpack_from(data, pos)
            start = pos + _FRAME.size
            frame_ok = n ^ check == _FRAME_CHECK and n >= TAG_BYTES
            if not frame_ok or start + n > end:
                # Only the last batch can be torn: a frame running past the end, or the
                # zero-filled blocks some file systems leave after a crash.
                if last and (frame_ok or data.count(0, pos) == end - pos):
                    self._cut(path, pos, end)
                    return
                reason = "truncated record" if frame_ok else "record frame is damaged"
                raise CorruptRecordError(reason, path, pos)
            try:
                payload = aead.decrypt(
                    counter_nonce(index),
                    view[start : start + n],
                    prefix + _RECORD_INDEX.pack(8, index),
                )
            except InvalidTag:
                raise CorruptRecordError(
                    "record failed authentication (damaged, moved or from another broker)",
                    path,
                    pos,
                ) from None
            yield JournalRecord(number, index, pos, payload)
            index += 1
            pos = start + n

    def _cut(self, path: Path, offset: int, end: int, *, remove: bool = False) -> None:
        torn = TornTail(path, offset, end - offset)
        self.recovery_report.torn_tail = torn
        log.warning(
            "journal %s: cut a torn write of %d bytes at offset %d (never confirmed)",
            path.name,
            torn.discarded_bytes,
            offset,
        )
        if remove:
            os.unlink(path)
            with self._lock:
                self._segments.remove(int(path.stem))
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.directory)

    def _aad_prefix(self, number: int) -> bytes:
        return encode_fields(b"sealmq-record", self._broker, _U64.pack(number))

    # -- appending (event loop thread) ----------------------------------------------------

    def append(self, payload: bytes, tag: Any = None, *, sync: bool = True) -> asyncio.Future[None]:
        """Queue ``payload`` as one record; the future completes once it is fsynced.

        With ``sync=False`` the future completes once the record is written; it
        becomes durable with the next synced batch, or when its segment is closed.
        A batch holding only such records costs no fsync.

        ``tag`` is handed back to ``on_durable`` with the record's segment. Must be
        called on the event loop thread. Failures (a closed journal, an unavailable
        key, an I/O error) come back through the future as :class:`StoreError`.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._closing:
            fut.set_exception(StoreClosedError("the store is closed"))
            return fut
        if self._failure is not None:
            fut.set_exception(self._failure)
            return fut
        if len(payload) > MAX_RECORD_SIZE:
            fut.set_exception(StoreError(f"record of {len(payload)} bytes exceeds the limit"))
            return fut
        if self._thread is None:
            self._start(loop)
        self._queue.put((payload, tag, fut, sync))
        return fut

    def call_in_writer(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the writer thread after everything queued so far; its result or error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._closing:
            fut.set_exception(StoreClosedError("the store is closed"))
            return fut
        if self._thread is None:
            self._start(loop)
        self._queue.put(_Control(fn, fut))
        return fut

    async def close(self) -> None:
        """Write everything queued, stop the writer, close the segment. Idempotent."""
        loop = asyncio.get_running_loop()
        thread = self._thread
        if not self._closing:
            self._closing = True
            if thread is not None and thread.is_alive():
                fut: asyncio.Future[None] = loop.create_future()
                self._queue.put(_Control(None, fut))
        if thread is not None:
            await loop.run_in_executor(None, thread.join)
        self._close_current()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._replay_done:
            raise StoreError("replay() the journal (to the end) before appending")
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="sealmq-journal", daemon=True)
        self._thread.start()

    # -- writer thread --------------------------------------------------------------------

    def rotate(self) -> int:
        """Writer thread: start a new segment under a fresh data key now; returns its number."""
        if self._failure is not None:
            raise self._failure
        self._close_current()
        try:
            seg = self._current = self._create_segment()
        except OSError as exc:
            self._failure = StoreError(f"journal I/O failed: {exc.strerror or exc}")
            raise self._failure from None
        return seg.number

    def write_records(self, records: Sequence[tuple[bytes, Any]]) -> None:
        """Writer thread (inside ``call_in_writer``): append and fsync now, then ``on_durable``."""
        placed, error = self._write_batch([(payload, tag, None, True) for payload, tag in records])
        self._report_durable(placed)
        if error is not None:
            raise error

    def delete_segments(self, numbers: Iterable[int]) -> list[int]:
        """Delete these segments (oldest first, each durably); returns those deleted.

        Called by the layer above, which alone knows liveness, on the writer thread or
        before the first append. The newest segment is never deleted, so segment
        numbers never go back.
        """
        deleted = []
        for number in sorted(set(numbers)):
            with self._lock:
                if number not in self._segments:
                    continue
                if number == self._segments[-1] or (
                    self._current is not None and number == self._current.number
                ):
                    log.debug("journal: kept segment %08d (newest)", number)
                    continue
            remove_quietly(self.segment_path(number))
            fsync_dir(self.directory)
            with self._lock:
                self._segments.remove(number)
                wrapped = self._wrapped.pop(number, None)
            if wrapped is not None:
                self._keys.forget(wrapped)
            deleted.append(number)
        if deleted:
            log.info("journal: deleted segments %s", ", ".join(f"{n:08d}" for n in deleted))
        return deleted

    def _run(self) -> None:
        q = self._queue
        batch: list[_Item] = []
        try:
            while True:
                batch = [q.get()]
                size = 0
                # Everything queued goes into one batch (one fsync), up to a bound that
                # keeps a flood from turning into one huge write and a long wait.
                while size < _MAX_BATCH_BYTES:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(item)
                    if type(item) is tuple:
                        size += len(item[0])
                appends: list[tuple[bytes, Any, asyncio.Future[None] | None, bool]] = []
                for item in batch:
                    if type(item) is tuple:
                        appends.append(item)
                        continue
                    assert isinstance(item, _Control)
                    if appends:
                        self._commit(appends)
                        appends = []
                    if item.fn is None:
                        self._close_current()
                        self._settle([item.future], None)
                        return
                    self._run_control(item)
                if appends:
                    self._commit(appends)
        except BaseException as exc:  # a bug: fail everything rather than hang callers
            log.exception("journal writer thread failed")
            self._failure = StoreError(f"journal writer failed: {type(exc).__name__}")
            while True:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            # Futures already settled stay as they are (settling checks done()).
            for item in batch:
                fut = item[2] if type(item) is tuple else item.future  # type: ignore[union-attr]
                self._settle([fut], self._failure)

    def _run_control(self, item: _Control) -> None:
        assert item.fn is not None
        try:
            result = item.fn()
        except BaseException as exc:
            self._settle_value(item.future, None, exc)
        else:
            self._settle_value(item.future, result, None)

    def _commit(self, items: list[tuple[bytes, Any, asyncio.Future[None] | None, bool]]) -> None:
        placed, error = self._write_batch(items)
        done = len(placed)
        ok = [item[2] for item in items[:done] if item[2] is not None]
        failed = [item[2] for item in items[done:] if item[2] is not None]
        self._settle(ok, None)
        if failed:
            self._settle(failed, error)
        self._report_durable(placed)

    def _report_durable(self, placed: list[tuple[int, Any]]) -> None:
        if placed and self._on_durable is not None:
            try:
                self._on_durable(placed)
            except Exception:
                log.exception("journal: on_durable hook failed")

    def _write_batch(
        self, items: Sequence[tuple[bytes, Any, asyncio.Future[None] | None, bool]]
    ) -> tuple[list[tuple[int, Any]], StoreError | None]:
        """Seal, write and fsync ``items``; returns the durable prefix and the error, if any."""
        placed: list[tuple[int, Any]] = []
        durable = 0
        if not items:
            return placed, None
        if self._failure is not None:
            return placed, self._failure
        try:
            seg = self._writable_segment()
            chunks: list[bytes] = []
            pending = 0
            limit = self._segment_size
            sync = False
            for payload, tag, _, wants_sync in items:
                sync = sync or wants_sync
                n = len(payload) + TAG_BYTES
                if seg.size + pending + _FRAME.size + n > limit and (seg.next_index > 1 or chunks):
                    self._flush(seg, chunks)
                    durable = len(placed)
                    chunks, pending = [], 0
                    self._close_current()
                    seg = self._writable_segment()
                index = seg.next_index
                seg.next_index = index + 1
                chunks.append(_FRAME.pack(n, n ^ _FRAME_CHECK))
                chunks.append(
                    seg.aead.encrypt(
                        counter_nonce(index), payload, seg.aad_prefix + _RECORD_INDEX.pack(8, index)
                    )
                )
                pending += _FRAME.size + n
                placed.append((seg.number, tag))
            self._flush(seg, chunks, sync=sync)
            durable = len(placed)
        except KeyUnavailableError as exc:
            log.error("journal: %s", exc)
            return placed[:durable], exc
        except OSError as exc:
            # After a failed write or fsync the file's state is unknown (fsyncgate): stop.
            self._failure = StoreError(f"journal I/O failed: {exc.strerror or exc}")
            log.error("journal: %s; no further writes", self._failure)
            return placed[:durable], self._failure
        except StoreError as exc:
            self._failure = exc
            return placed[:durable], exc
        return placed, None

    def _flush(self, seg: _Segment, chunks: list[bytes], *, sync: bool = True) -> None:
        if not chunks:
            return
        data = b"".join(chunks)
        write_all(seg.fd, data)
        seg.size += len(data)
        self.records_written += len(chunks) // 2
        if sync:
            # Covers every earlier unsynced write to this file too.
            datasync(seg.fd)
            seg.dirty = False
            self.fsync_count += 1
        else:
            seg.dirty = True

    def _writable_segment(self) -> _Segment:
        seg = self._current
        if seg is None:
            seg = self._create_segment()
            self._current = seg
            return seg
        # Re-check access each time the cached key expires: a revoked grant stops writes.
        with self._lock:
            wrapped = self._wrapped[seg.number]
        dek = self._keys.decrypt(wrapped, seg.context)
        if dek != seg.dek:
            raise KeyUnavailableError("key provider returned a different data key")
        return seg

    def _create_segment(self) -> _Segment:
        number = self._next_number
        context = self.context_for(number)
        key_id = self._keys.key_id()
        dek, wrapped = self._keys.generate(context)
        body = encode_fields(
            self._broker,
            _U64.pack(number),
            _U64.pack(self._fencing_token),
            key_id.encode(),
            encode_context(context),
            wrapped,
        )
        preamble = (
            _PREAMBLE.pack(SEGMENT_MAGIC, SEGMENT_FORMAT, len(body), len(body) ^ _FRAME_CHECK)
            + body
        )
        tag = AESGCM(dek).encrypt(counter_nonce(0), b"", _header_aad(preamble))
        header = preamble + tag
        path = self.segment_path(number)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            raise StoreError(f"{path.name} already exists: is another broker writing?") from None
        try:
            write_all(fd, header)
            os.fsync(fd)
            fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            remove_quietly(path)
            raise
        self._next_number = number + 1
        with self._lock:
            self._segments.append(number)
            self._wrapped[number] = wrapped
        seg = _Segment(number, fd, len(header), dek, context)
        seg.aad_prefix = self._aad_prefix(number)
        log.debug("journal: created segment %s", path.name)
        return seg

    def _close_current(self) -> None:
        seg, self._current = self._current, None
        if seg is not None:
            try:
                if seg.dirty:
                    datasync(seg.fd)
                    self.fsync_count += 1
            finally:
                os.close(seg.fd)

    def _settle(self, futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
        if not futures or self._loop is None:
            return
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle_futures, futures, error)

    def _settle_value(self, fut: asyncio.Future[T], value: T, error: BaseException | None) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle_one, fut, value, error)


def _settle_futures(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            # One exception object per future, so awaiters' tracebacks do not pile up on one.
            try:
                fut.set_exception(type(error)(*error.args))
            except TypeError:
                fut.set_exception(error)


def _settle_one(fut: asyncio.Future[T], value: T, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)


def _header_aad(preamble_and_header: bytes) -> bytes:
    return encode_fields(b"sealmq-segment-header", preamble_and_header)


def _split_fields(body: bytes, path: Path) -> list[bytes]:
    fields = []
    pos, end = 0, len(body)
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("segment header is malformed", path, 0)
        (n,) = _U32.unpack_from(body, pos)
        pos += 4
        if pos + n > end:
            raise CorruptRecordError("segment header is malformed", path, 0)
        fields.append(body[pos : pos + n])
        pos += n
    return fields
