"""The encrypted, segmented, append-only journal. It knows nothing of messages.

Layout: ``<dir>/<8-digit number>.seg``, files 0600 in a 0700 folder. A segment is::

    preamble  = "SEALMQJ\\0", u16 format, u32 header length, u32 its complement
    header    = length-prefixed fields: broker id, u64 segment number,
                u64 fencing token, key id, encryption context, wrapped DEK,
                and in format 2: 16-byte segment id, then the predecessor's
                u64 number, segment id, u64 record count and last record tag
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

Segments chain: a format-2 header names the segment before it and where that
one ended, and ``confirmed`` (:mod:`sealmq.store.confirmed`) records which
segments make up the journal and how far the newest was confirmed.

Recovery (:meth:`Journal.replay`) reads every segment in order. In the last
segment only, an incomplete record at the end (or a zero-filled tail) past the
confirmed point is a torn write: it is cut, logged and reported. A missing,
replaced or out-of-place segment, or a cut past the confirmed point, raises
:class:`JournalIntegrityError`; anything else that fails authentication raises
:class:`CorruptRecordError`. :meth:`Journal.scan` reads the same way without
changing anything and collects every problem instead (``sealmq store verify``).
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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.store.confirmed import (
    CONFIRMED_SYNC_SECONDS,
    NO_ID,
    NO_TAG,
    ConfirmedFile,
    ConfirmedPoint,
    SegmentSeal,
)
from sealmq.store.crypto import TAG_BYTES, counter_nonce, encode_context, encode_fields
from sealmq.store.errors import (
    CorruptRecordError,
    JournalIntegrityError,
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
    "QUARANTINE_DIR",
    "SEGMENT_FORMAT",
    "SEGMENT_MAGIC",
    "Journal",
    "JournalCheck",
    "JournalRecord",
    "Problem",
    "RecoveryReport",
    "SegmentState",
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
#: The format new segments are written in; format 1 (no chain) is still read.
SEGMENT_FORMAT = 2
_READABLE_FORMATS = (1, 2)
_SEGMENT_ID_BYTES = 16
SEGMENT_SUFFIX = ".seg"
#: Where ``sealmq store salvage`` moves segments it cannot keep (still encrypted).
QUARANTINE_DIR = "quarantine"
#: One group commit writes at most about this much; the rest waits for the next fsync.
_MAX_BATCH_BYTES = 8 * 1024 * 1024
#: Chunks at least this large are written on their own rather than joined with the rest
#: of their batch: a large record is never copied into a second buffer.
_WRITE_ALONE_BYTES = 1024 * 1024
#: A header is a few hundred bytes; anything larger is damage, not a header.
_MAX_HEADER = 64 * 1024

_PREAMBLE = struct.Struct(">8sHII")
_FRAME = struct.Struct(">II")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_RECORD_INDEX = struct.Struct(">IQ")  # the last length-prefixed AAD field: (8, index)
_FRAME_CHECK = 0xFFFFFFFF
_SEGMENT_NAME = re.compile(r"^(\d{8})\.seg$")

#: ``on_durable`` receives, in append order, ``(segment number, offset, index, tag)`` for
#: each record that an fsync just made durable (``offset`` and ``index`` as in
#: :class:`JournalRecord`, for :meth:`Journal.read_record`). It runs on the writer thread,
#: before the batch's futures are settled: whoever a write's future wakes finds its
#: records indexed (paging reads a message back as soon as its write completes).
#: ``on_settled`` then runs, after the futures are settled (slower bookkeeping, such as
#: deleting segments, delays no confirmation).
Placed = tuple[int, int, int, Any]
OnDurable = Callable[[list[Placed]], None]


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
    #: The segment's header itself was never completely written: the file goes.
    remove: bool = False


@dataclass(slots=True)
class RecoveryReport:
    segments: list[int] = field(default_factory=list)
    records: int = 0
    torn_tail: TornTail | None = None
    #: Records actually read and applied (fewer than ``records`` from a checkpoint).
    scanned: int = 0
    #: Recovery started from the index checkpoint.
    checkpoint: bool = False


@dataclass(slots=True)
class SegmentState:
    """What reading one segment found (recovery and :meth:`Journal.scan`)."""

    number: int
    path: Path
    format: int = 0
    segment_id: bytes = NO_ID
    #: Records that authenticated, in order from 1.
    records: int = 0
    last_tag: bytes = NO_TAG
    key_id: str = ""
    wrapped: bytes = b""
    #: What the header says the segment before this one was (format 2).
    predecessor: SegmentSeal | None = None
    torn: TornTail | None = None
    #: Why the segment could not be read to its end, if it could not.
    damage: str | None = None
    damage_offset: int | None = None
    #: The tag of the record at the confirmed point (the newest segment only).
    confirmed_tag: bytes | None = None

    def seal(self) -> SegmentSeal:
        return SegmentSeal(self.number, self.segment_id, self.records, self.last_tag)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that keeps the journal from being recovered as it was confirmed.

    ``kind``: ``missing`` (a segment the journal lists is gone), ``orphan`` (a
    segment that is not part of the journal), ``replaced`` (a segment that is not the
    one the journal recorded, or does not end where it did), ``cut`` (the newest
    segment holds less than was confirmed), ``damaged`` (a header or record fails
    authentication), ``confirmed`` (the confirmed record is damaged or missing).
    """

    kind: str
    segment: int | None
    message: str


@dataclass(slots=True)
class JournalCheck:
    """Everything :meth:`Journal.scan` (or the last replay) found."""

    point: ConfirmedPoint | None = None
    segments: list[SegmentState] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    #: Segments the broker was deleting when it stopped (removed at the next start).
    leftovers: list[int] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


class _Segment:
    """The segment being written (writer thread only)."""

    __slots__ = (
        "aad_prefix",
        "aead",
        "context",
        "dek",
        "dirty",
        "fd",
        "key_id",
        "last_tag",
        "next_index",
        "number",
        "segment_id",
        "size",
        "synced",
        "synced_tag",
        "wrapped",
    )

    def __init__(self, number: int, fd: int, size: int, dek: bytes, context: dict[str, str]):
        self.number = number
        self.segment_id = NO_ID
        self.key_id = ""
        self.wrapped = b""
        #: Tag of the last record written; ``synced``/``synced_tag``: of the last fsynced.
        self.last_tag = NO_TAG
        self.synced = 0
        self.synced_tag = NO_TAG
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
_Item = tuple[bytes | bytearray, Any, "asyncio.Future[None]", bool] | _Control


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
        on_settled: Callable[[], None] | None = None,
        confirmed_sync_seconds: float = CONFIRMED_SYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
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
        self._on_settled = on_settled
        make_private_dir(self.directory)
        self._lock = threading.Lock()
        self._segments: list[int] = []  # existing, ascending; guarded by _lock
        self._wrapped: dict[int, bytes] = {}
        #: Ciphers for :meth:`read_record`, by segment; guarded by _lock.
        self._readers: dict[int, AESGCM] = {}
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
        #: What the last replay or scan found.
        self.check = JournalCheck()
        self._confirmed = ConfirmedFile(self.directory, broker_id, keys, self.context_for)
        self._confirmed_sync_seconds = confirmed_sync_seconds
        self._clock = clock
        self._confirmed_synced_at = clock()
        #: Final state of every complete segment that exists (all but the one being written).
        self._seals: dict[int, SegmentSeal] = {}
        self._older: tuple[SegmentSeal, ...] | None = None
        #: The newest segment while none is being written: its seal, key id, wrapped DEK.
        self._tip: tuple[SegmentSeal, str, bytes] | None = None
        self._deleting: tuple[int, ...] = ()
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
    def confirmed_sync_count(self) -> int:
        """fsyncs of the confirmed record so far (far below the batches: see the module doc)."""
        return self._confirmed.sync_count

    @property
    def current_segment(self) -> int | None:
        """The segment being appended to, if one was created in this run."""
        current = self._current
        return None if current is None else current.number

    # -- recovery -------------------------------------------------------------------------

    def replay(self, covered: Mapping[int, SegmentSeal] | None = None) -> Iterator[JournalRecord]:
        """Every record of every segment, in order; cuts a torn tail of the last segment.

        ``covered``: segments a checkpoint already holds, with their seals (the caller
        checked them against :meth:`read_confirmed` and the files' sizes): only their
        headers are read and authenticated (the chain is still checked), their records
        are not yielded.

        Must be consumed completely before :meth:`append`. Raises
        :class:`JournalIntegrityError` (a segment missing, replaced, out of place, or
        cut past the confirmed point), :class:`CorruptRecordError` or
        :class:`KeyUnavailableError`; nothing on disk is changed before every check
        has passed.
        """
        if self._replayed:
            raise StoreError("the journal was already replayed")
        self._replayed = True
        check = JournalCheck()
        yield from self._walk(check, strict=True, covered=covered or {})
        self._settle_recovery(check)
        self._replay_done = True

    def scan(self) -> Iterator[JournalRecord]:
        """Every record that authenticates, changing nothing; problems go to :attr:`check`.

        For ``sealmq store verify`` / ``salvage`` with the broker stopped. Records of
        orphaned segments are not yielded. Raises only :class:`KeyUnavailableError`.
        """
        self.check = JournalCheck()
        yield from self._walk(self.check, strict=False)

    def quarantine(self, numbers: Iterable[int]) -> list[Path]:
        """Move these segments, still encrypted, into ``<journal>/quarantine/``; where they went.

        Salvage only, with the broker stopped and before :meth:`accept`.
        """
        folder = self.directory / QUARANTINE_DIR
        make_private_dir(folder)
        moved = []
        for number in sorted(set(numbers)):
            source = self.segment_path(number)
            if not source.exists():
                continue
            target, i = folder / source.name, 1
            while target.exists():  # an earlier salvage's segment of the same number
                target, i = folder / f"{source.name}.{i}", i + 1
            os.rename(source, target)
            moved.append(target)
        fsync_dir(folder)
        fsync_dir(self.directory)
        return moved

    def accept(self, kept: Sequence[SegmentState]) -> None:
        """Record ``kept`` (segments :meth:`scan` read) as the whole journal, as they are now.

        Salvage's last step: the next start checks the journal against this.
        """
        if not kept:
            remove_quietly(self._confirmed.path)
            fsync_dir(self.directory)
            return
        tip = kept[-1]
        older = tuple(state.seal() for state in kept[:-1])
        self._confirmed.write(tip.seal(), tip.key_id, tip.wrapped, older, sync=True)
        self._confirmed.close()

    def read_segment(self, number: int) -> list[JournalRecord]:
        """All records of a complete segment (not the one being written); for compaction."""
        current = self._current
        if current is not None and current.number == number:
            raise StoreError("cannot read the segment being written")
        return list(self._read(SegmentState(number, self.segment_path(number)), last=False))

    def read_record(self, number: int, offset: int, index: int) -> bytes:
        """The payload of one durable record: ``(number, offset, index)`` as in ``on_durable``.

        Any thread; reads only what an fsync already made durable. Raises
        :class:`CorruptRecordError` if the record is missing, cut or fails
        authentication, :class:`KeyUnavailableError` if its data key cannot be unwrapped.
        """
        path = self.segment_path(number)
        with self._lock:
            wrapped = self._wrapped.get(number)
            aead = self._readers.get(number)
        if wrapped is None:
            raise CorruptRecordError("no such segment in the journal", path, offset)
        if aead is None:
            aead = AESGCM(self._keys.decrypt(wrapped, self.context_for(number)))
            with self._lock:
                if number in self._wrapped:
                    self._readers[number] = aead
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CorruptRecordError("segment file is missing", path, offset) from None
        try:
            frame = os.pread(fd, _FRAME.size, offset)
            if len(frame) < _FRAME.size:
                raise CorruptRecordError("truncated record", path, offset)
            n, check = _FRAME.unpack(frame)
            if n ^ check != _FRAME_CHECK or n < TAG_BYTES or n > MAX_RECORD_SIZE + TAG_BYTES:
                raise CorruptRecordError("record frame is damaged", path, offset)
            sealed = os.pread(fd, n, offset + _FRAME.size)
        finally:
            os.close(fd)
        if len(sealed) < n:
            raise CorruptRecordError("truncated record", path, offset)
        try:
            return aead.decrypt(
                counter_nonce(index),
                sealed,
                self._aad_prefix(number) + _RECORD_INDEX.pack(8, index),
            )
        except InvalidTag:
            raise CorruptRecordError(
                "record failed authentication (damaged, moved or from another broker)",
                path,
                offset,
            ) from None

    def _scan(self) -> list[int]:
        numbers = []
        for entry in os.scandir(self.directory):
            match = _SEGMENT_NAME.match(entry.name)
            if match:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _problem(self, check: JournalCheck, strict: bool, problem: Problem) -> None:
        check.problems.append(problem)
        if strict:
            raise self._refusal(problem)

    def _refusal(self, problem: Problem) -> JournalIntegrityError:
        error = JournalIntegrityError(
            f"{self.directory}: {problem.message}. The broker does not start on a journal "
            "that lost confirmed data: see `sealmq store verify` and `sealmq store "
            "salvage` (docs/store.md)"
        )
        error.path = None if problem.segment is None else self.segment_path(problem.segment)
        return error

    def seals(self) -> list[SegmentSeal]:
        """Every segment's seal, oldest first (complete once the journal is closed)."""
        return [self._seals[n] for n in sorted(self._seals)]

    @property
    def failure(self) -> StoreError | None:
        """The write error that stopped the journal, if one did."""
        return self._failure

    def read_confirmed(self) -> ConfirmedPoint | None:
        """The confirmed record as it is on disk (None when there is none); raises
        :class:`CorruptRecordError` if it is damaged."""
        return self._confirmed.read()

    def _walk(
        self,
        check: JournalCheck,
        *,
        strict: bool,
        covered: Mapping[int, SegmentSeal] | None = None,
    ) -> Iterator[JournalRecord]:
        self.check = check
        numbers = self._scan()
        try:
            point = self._confirmed.read()
        except KeyUnavailableError:
            raise
        except CorruptRecordError as exc:
            point = None
            self._problem(check, strict, Problem("confirmed", None, str(exc)))
        check.point = point
        expected = point.expected() if point is not None else {}
        tip = point.last.number if point is not None else 0
        present = set(numbers)
        for number in sorted(expected):
            if number not in present:
                check.missing.append(number)
                self._problem(
                    check,
                    False,  # all of them are named at once, below
                    Problem(
                        "missing",
                        number,
                        f"journal segment {_name(number)} is missing: the journal's confirmed "
                        f"record lists it with {expected[number].records} records",
                    ),
                )
        readable = []
        for number in numbers:
            if number in expected or number > tip:
                readable.append(number)
            elif point is not None and number in point.deleting:
                check.leftovers.append(number)
            elif point is not None:
                check.orphans.append(number)
                self._problem(
                    check,
                    False,
                    Problem(
                        "orphan",
                        number,
                        f"journal segment {_name(number)} is not part of the journal: the "
                        "broker deleted it earlier (an older copy put back?)",
                    ),
                )
        if strict and check.problems:
            first = check.problems[0]
            combined = Problem(
                first.kind, first.segment, "; ".join(p.message for p in check.problems)
            )
            raise self._refusal(combined)
        states: dict[int, SegmentState] = {}
        previous: SegmentState | None = None
        for i, number in enumerate(readable):
            state = SegmentState(number, self.segment_path(number))
            want = expected[number].records if number == tip and point is not None else 0
            last = i == len(readable) - 1
            seal = covered.get(number) if covered and not last else None
            try:
                yield from self._read(state, last=last, confirmed=want, covered=seal)
            except CorruptRecordError as exc:
                if strict:
                    raise
                state.damage, state.damage_offset = exc.reason, exc.offset
                check.problems.append(Problem("damaged", number, str(exc)))
            states[number] = state
            check.segments.append(state)
            for problem in self._chain_problems(state, previous, point):
                if problem.kind == "confirmed" and any(
                    p.kind == "confirmed" for p in check.problems
                ):
                    continue  # said once is enough
                self._problem(check, strict, problem)
            previous = state

    def _chain_problems(
        self, state: SegmentState, previous: SegmentState | None, point: ConfirmedPoint | None
    ) -> Iterator[Problem]:
        name = _name(state.number)
        claim = state.predecessor
        if (
            claim is not None
            and claim.number
            and previous is not None
            and previous.number == claim.number
            and previous.damage is None
        ):
            before = _name(previous.number)
            if previous.segment_id != claim.segment_id:
                yield Problem(
                    "replaced",
                    previous.number,
                    f"journal segment {before} is not the segment {name} follows "
                    "(replaced by another copy)",
                )
            elif (previous.records, previous.last_tag) != (claim.records, claim.last_tag):
                yield Problem(
                    "replaced",
                    previous.number,
                    f"journal segment {before} does not end where {name} says it does: "
                    f"it holds {previous.records} records, {claim.records} were written "
                    "(cut short, or replaced by an older copy)",
                )
        if point is None:
            if state.format >= 2 and state.records > 0:
                yield Problem(
                    "confirmed",
                    None,
                    f"the journal's confirmed record ({self._confirmed.path.name}) is missing, "
                    f"but segment {name} was written by a broker that keeps one",
                )
            return
        tip = point.last
        if state.number > tip.number:
            if state.torn is not None and state.torn.remove:
                return  # a segment whose creation a crash interrupted: it goes
            follows = claim is not None and previous is not None and claim.number == previous.number
            if not follows:
                yield Problem(
                    "orphan",
                    state.number,
                    f"journal segment {name} is newer than the journal's confirmed record "
                    "and does not follow the segment before it",
                )
            return
        if state.damage is not None:
            return
        if state.number == tip.number:
            torn_header = state.torn is not None and state.torn.remove
            if torn_header or state.segment_id != tip.segment_id:
                yield Problem(
                    "replaced",
                    state.number,
                    f"journal segment {name} is not the segment the journal recorded as its "
                    "newest (replaced by another copy)",
                )
            elif state.records < tip.records:
                yield Problem(
                    "cut",
                    state.number,
                    f"journal segment {name} was cut short of what was confirmed to clients: "
                    f"it holds {state.records} records, {tip.records} were confirmed",
                )
            elif tip.records and state.confirmed_tag != tip.last_tag:
                yield Problem(
                    "replaced",
                    state.number,
                    f"journal segment {name} is not the segment the journal recorded as its "
                    "newest (its records differ)",
                )
            return
        seal = point.expected()[state.number]
        if state.segment_id != seal.segment_id:
            yield Problem(
                "replaced",
                state.number,
                f"journal segment {name} is another copy than the one the journal recorded",
            )
        elif (state.records, state.last_tag) != (seal.records, seal.last_tag):
            yield Problem(
                "replaced",
                state.number,
                f"journal segment {name} holds {state.records} records, the journal recorded "
                f"{seal.records} (cut short, or replaced by an older copy)",
            )

    def _settle_recovery(self, check: JournalCheck) -> None:
        """After a strict walk passed: cut the torn tail, finish deletions, take stock."""
        report = self.recovery_report
        states = check.segments
        if states and states[-1].torn is not None:
            self._cut(states[-1].torn)
            if states[-1].torn.remove:
                states.pop()
        for number in check.leftovers:
            remove_quietly(self.segment_path(number))
            log.info("journal: removed segment %s (its deletion was interrupted)", _name(number))
        if check.leftovers:
            fsync_dir(self.directory)
        with self._lock:
            self._segments = [state.number for state in states]
        report.segments = [state.number for state in states]
        report.records = sum(state.records for state in states)
        self._seals = {state.number: state.seal() for state in states}
        self._older = None
        if states:
            last = states[-1]
            self._tip = (last.seal(), last.key_id, last.wrapped)
            if last.records:
                # What was read may still be only in the page cache (a killed broker's
                # last unsynced writes): make it durable before anything records it.
                fd = os.open(last.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        numbers = [state.number for state in states] + check.leftovers
        if report.torn_tail is not None and report.torn_tail.remove:
            numbers.append(int(report.torn_tail.path.stem))
        self._next_number = max(numbers) + 1 if numbers else 1

    def _read(
        self,
        state: SegmentState,
        *,
        last: bool,
        confirmed: int = 0,
        covered: SegmentSeal | None = None,
    ) -> Iterator[JournalRecord]:
        number, path = state.number, state.path
        with open(path, "rb") as f:
            # A segment a checkpoint covers: its header only (the key, the chain).
            data = f.read(_PREAMBLE.size + _MAX_HEADER + TAG_BYTES) if covered else f.read()
        end = len(data)
        head = _PREAMBLE.size
        if end < head or data.count(0) == end:
            if last:
                # Crashed while creating the segment: nothing in it was ever confirmed.
                state.torn = TornTail(path, 0, end, remove=True)
                return
            raise CorruptRecordError("segment header is truncated", path, 0)
        magic, fmt, header_len, check = _PREAMBLE.unpack_from(data)
        if magic != SEGMENT_MAGIC:
            raise CorruptRecordError("not a sealmq journal segment", path, 0)
        if fmt not in _READABLE_FORMATS:
            raise CorruptRecordError(f"unsupported segment format {fmt}", path, 0)
        if header_len ^ check != _FRAME_CHECK or header_len > _MAX_HEADER:
            raise CorruptRecordError("segment header length is damaged", path, 0)
        if end < head + header_len + TAG_BYTES:
            if last:
                state.torn = TornTail(path, 0, end, remove=True)
                return
            raise CorruptRecordError("segment header is truncated", path, 0)
        body = data[head : head + header_len]
        fields = _split_fields(body, path)
        if len(fields) != (6 if fmt == 1 else 11):
            raise CorruptRecordError("segment header is malformed", path, 0)
        broker, seg_no, _token, key_id, context_bytes, wrapped = fields[:6]
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
        state.format = fmt
        state.key_id = key_id.decode("utf-8", "replace")
        state.wrapped = wrapped
        if fmt == 2:
            seg_id, prev_no, prev_id, prev_count, prev_tag = fields[6:]
            if len(prev_no) != 8 or len(prev_count) != 8:
                raise CorruptRecordError("segment header is malformed", path, 0)
            state.segment_id = seg_id
            state.predecessor = SegmentSeal(
                _U64.unpack(prev_no)[0], prev_id, _U64.unpack(prev_count)[0], prev_tag
            )
        with self._lock:
            self._wrapped[number] = wrapped
        if covered is not None:
            state.records, state.last_tag = covered.records, covered.last_tag
            return
        pos += TAG_BYTES
        prefix = self._aad_prefix(number)
        view = memoryview(data)
        index = 1
        while pos < end:
            if pos + _FRAME.size > end:
                if last:
                    state.torn = TornTail(path, pos, end - pos)
                    return
                raise CorruptRecordError("truncated record", path, pos)
            n, check = _FRAME.unpack_from(data, pos)
            start = pos + _FRAME.size
            frame_ok = n ^ check == _FRAME_CHECK and n >= TAG_BYTES
            if not frame_ok or start + n > end:
                # Only the last batch can be torn: a frame running past the end, or the
                # zero-filled blocks some file systems leave after a crash.
                if last and (frame_ok or data.count(0, pos) == end - pos):
                    state.torn = TornTail(path, pos, end - pos)
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
            state.records = index
            state.last_tag = data[start + n - TAG_BYTES : start + n]
            if index == confirmed:
                state.confirmed_tag = state.last_tag
            yield JournalRecord(number, index, pos, payload)
            index += 1
            pos = start + n

    def _cut(self, torn: TornTail) -> None:
        path, offset = torn.path, torn.offset
        self.recovery_report.torn_tail = torn
        log.warning(
            "journal %s: cut a torn write of %d bytes at offset %d (never confirmed)",
            path.name,
            torn.discarded_bytes,
            offset,
        )
        if torn.remove:
            os.unlink(path)
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

    def append(
        self, payload: bytes | bytearray, tag: Any = None, *, sync: bool = True
    ) -> asyncio.Future[None]:
        """Queue ``payload`` as one record; the future completes once it is fsynced.

        With ``sync=False`` the future completes once the record is written; it
        becomes durable with the next synced batch, or when its segment is closed.
        A batch holding only such records costs no fsync.

        A ``bytearray`` payload (see ``records.encode_record``) ends with ``TAG_BYTES``
        of room and is sealed in place: the caller must not use it afterwards.

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
        self._confirmed.close()

    def close_files(self) -> None:
        """Close what a journal that never appended holds open (after :meth:`scan`)."""
        if self._thread is not None:
            raise StoreError("close() a journal that was written to")
        self._closing = True
        self._confirmed.close()

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
        self._close_current(rotating=True)
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
        self._report_settled(placed)
        if error is not None:
            raise error

    def delete_segments(self, numbers: Iterable[int]) -> list[int]:
        """Delete these segments (oldest first, each durably); returns those deleted.

        Called by the layer above, which alone knows liveness, on the writer thread or
        before the first append. The newest segment is never deleted, so segment
        numbers never go back.
        """
        going = []
        for number in sorted(set(numbers)):
            with self._lock:
                if number not in self._segments:
                    continue
                if number == self._segments[-1] or (
                    self._current is not None and number == self._current.number
                ):
                    log.debug("journal: kept segment %08d (newest)", number)
                    continue
            going.append(number)
        if not going:
            return []
        # The confirmed record stops listing them (durably) before any file goes, so a
        # crash in between leaves leftovers the next start removes, never a "missing" one.
        for number in going:
            self._seals.pop(number, None)
        self._older = None
        self._deleting = tuple(going)
        self._confirm(sync=True)
        deleted = []
        for number in going:
            remove_quietly(self.segment_path(number))
            with self._lock:
                self._segments.remove(number)
                wrapped = self._wrapped.pop(number, None)
                self._readers.pop(number, None)
            if wrapped is not None:
                self._keys.forget(wrapped)
            deleted.append(number)
        fsync_dir(self.directory)
        self._deleting = ()
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
                # empty() first: at light load the queue is empty after the first item
                # every time, and an Empty raised per batch costs more than the check.
                while size < _MAX_BATCH_BYTES and not q.empty():
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(item)
                    if type(item) is tuple:
                        size += len(item[0])
                appends: list[tuple[bytes | bytearray, Any, asyncio.Future[None] | None, bool]] = []
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
                # Drop the batch before waiting for the next: a large record's payload
                # (and the message it holds) must not stay alive until then.
                batch = []
                appends = []
                del item
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

    def _commit(
        self, items: list[tuple[bytes | bytearray, Any, asyncio.Future[None] | None, bool]]
    ) -> None:
        placed, error = self._write_batch(items)
        done = len(placed)
        ok = [item[2] for item in items[:done] if item[2] is not None]
        failed = [item[2] for item in items[done:] if item[2] is not None]
        self._report_durable(placed)
        self._settle(ok, None)
        if failed:
            self._settle(failed, error)
        self._report_settled(placed)

    def _report_durable(self, placed: list[Placed]) -> None:
        if placed and self._on_durable is not None:
            try:
                self._on_durable(placed)
            except Exception:
                log.exception("journal: on_durable hook failed")

    def _report_settled(self, placed: list[Placed]) -> None:
        if placed and self._on_settled is not None:
            try:
                self._on_settled()
            except Exception:
                log.exception("journal: on_settled hook failed")

    def _write_batch(
        self, items: Sequence[tuple[bytes | bytearray, Any, asyncio.Future[None] | None, bool]]
    ) -> tuple[list[Placed], StoreError | None]:
        """Seal, write and fsync ``items``; returns the durable prefix and the error, if any."""
        placed: list[Placed] = []
        durable = 0
        if not items:
            return placed, None
        if self._failure is not None:
            return placed, self._failure
        try:
            seg = self._writable_segment()
            chunks: list[bytes | bytearray] = []
            pending = 0
            limit = self._segment_size
            sync = False
            for payload, tag, _, wants_sync in items:
                sync = sync or wants_sync
                n = len(payload) + (0 if isinstance(payload, bytearray) else TAG_BYTES)
                if seg.size + pending + _FRAME.size + n > limit and (seg.next_index > 1 or chunks):
                    self._flush(seg, chunks)
                    durable = len(placed)
                    chunks, pending = [], 0
                    self._close_current(rotating=True)
                    seg = self._writable_segment()
                index = seg.next_index
                seg.next_index = index + 1
                offset = seg.size + pending
                chunks.append(_FRAME.pack(n, n ^ _FRAME_CHECK))
                aad = seg.aad_prefix + _RECORD_INDEX.pack(8, index)
                if isinstance(payload, bytearray):
                    _seal_in_place(seg.aead, counter_nonce(index), payload, aad)
                    chunks.append(payload)
                else:
                    chunks.append(seg.aead.encrypt(counter_nonce(index), payload, aad))
                pending += _FRAME.size + n
                placed.append((seg.number, offset, index, tag))
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

    def _flush(
        self, seg: _Segment, chunks: Sequence[bytes | bytearray], *, sync: bool = True
    ) -> None:
        if not chunks:
            return
        written = 0
        run: list[bytes | bytearray] = []
        for chunk in chunks:
            if len(chunk) < _WRITE_ALONE_BYTES:
                run.append(chunk)
                continue
            if run:
                written += _write_joined(seg.fd, run)
                run = []
            write_all(seg.fd, chunk)
            written += len(chunk)
        if run:
            written += _write_joined(seg.fd, run)
        seg.size += written
        # The chain names each segment's last tag; a sealed record ends with its tag.
        seg.last_tag = bytes(chunks[-1][-TAG_BYTES:])
        self.records_written += len(chunks) // 2
        if sync:
            # Covers every earlier unsynced write to this file too.
            datasync(seg.fd)
            seg.dirty = False
            self.fsync_count += 1
            seg.synced, seg.synced_tag = seg.next_index - 1, seg.last_tag
            now = self._clock()
            due = now - self._confirmed_synced_at >= self._confirmed_sync_seconds
            self._confirm(sync=due)
        else:
            seg.dirty = True

    def _confirm(self, *, sync: bool) -> None:
        """Record how far the journal is durable (writer thread, or before the first append)."""
        seg = self._current
        if seg is not None:
            last = SegmentSeal(seg.number, seg.segment_id, seg.synced, seg.synced_tag)
            key_id, wrapped = seg.key_id, seg.wrapped
        elif self._tip is not None:
            last, key_id, wrapped = self._tip
        else:
            return
        older = self._older
        if older is None:  # reset whenever the seals or the newest segment change
            older = self._older = tuple(
                self._seals[n] for n in sorted(self._seals) if n != last.number
            )
        self._confirmed.write(last, key_id, wrapped, older, self._deleting, sync=sync)
        if sync:
            self._confirmed_synced_at = self._clock()

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
        previous = self._tip[0] if self._tip is not None else SegmentSeal(0, NO_ID, 0, NO_TAG)
        segment_id = os.urandom(_SEGMENT_ID_BYTES)
        body = encode_fields(
            self._broker,
            _U64.pack(number),
            _U64.pack(self._fencing_token),
            key_id.encode(),
            encode_context(context),
            wrapped,
            segment_id,
            _U64.pack(previous.number),
            previous.segment_id,
            _U64.pack(previous.records),
            previous.last_tag,
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
        seg.segment_id, seg.key_id, seg.wrapped = segment_id, key_id, wrapped
        self._current = seg
        self._older = None
        try:
            self._confirm(sync=True)
        except BaseException:
            self._current = None
            os.close(fd)
            raise
        log.debug("journal: created segment %s", path.name)
        return seg

    def _close_current(self, *, rotating: bool = False) -> None:
        """Close the segment being written, recording its seal.

        ``rotating``: a new segment follows at once, and creating it records the
        seal (fsynced), so closing records nothing itself. Should that creation
        fail, the confirmed record still names this segment, with a count no
        higher than what it holds.
        """
        seg = self._current
        if seg is None:
            return
        try:
            if seg.dirty and self._failure is None:
                datasync(seg.fd)
                self.fsync_count += 1
                seg.dirty = False
                seg.synced, seg.synced_tag = seg.next_index - 1, seg.last_tag
            if self._failure is None and not seg.dirty:
                # The segment's seal: its final state, recorded before anything follows it.
                seal = SegmentSeal(seg.number, seg.segment_id, seg.synced, seg.synced_tag)
                self._seals[seal.number] = seal
                self._tip = (seal, seg.key_id, seg.wrapped)
                self._current = None
                self._older = None
                if not rotating:
                    self._confirm(sync=True)
        finally:
            self._current = None
            os.close(seg.fd)

    def _settle(self, futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
        if not futures or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(_settle_futures, futures, error)
        except RuntimeError:
            return  # a closed loop: nobody is waiting any more (no suppress(): per batch)

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
                copy = type(error)(*error.args)
            except TypeError:
                fut.set_exception(error)
            else:
                copy.__cause__ = error.__cause__  # what the key provider said, for the broker
                fut.set_exception(copy)


def _settle_one(fut: asyncio.Future[T], value: T, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)


def _seal_in_place(aead: AESGCM, nonce: bytes, buf: bytearray, aad: bytes) -> None:
    """Encrypt ``buf[:-TAG_BYTES]`` over itself and put the tag in its last bytes."""
    with memoryview(buf) as view, view[:-TAG_BYTES] as plain:
        encrypt_into = getattr(aead, "encrypt_into", None)
        if encrypt_into is not None:  # cryptography >= 45: no second buffer
            encrypt_into(nonce, plain, aad, buf)
        else:
            view[:] = aead.encrypt(nonce, plain, aad)


def _write_joined(fd: int, chunks: list[bytes | bytearray]) -> int:
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    write_all(fd, data)
    return len(data)


def _name(number: int) -> str:
    return f"{number:08d}{SEGMENT_SUFFIX}"


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
