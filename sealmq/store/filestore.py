"""The file store: the core's ``MessageStore`` over the encrypted journal.

``<data_dir>/lock`` (held while open), ``<data_dir>/journal/*.seg``. Each
``write(ops)`` becomes one sealed record; recovery replays the journal and the
liveness index (``index.py``) decides which segments can be deleted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sealmq.core.model import DestinationInfo, DurableSubscriptionInfo, Message, durable_key
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddScheduled,
    AddSubscription,
    ForgetPrepared,
    Op,
    PrepareTransaction,
    RecoveredState,
    RemoveDestination,
    RemoveMessage,
    RemoveScheduled,
    RemoveSubscription,
    ScheduledJob,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
    StoredMessage,
    StoredRef,
)
from sealmq.store.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from sealmq.store.confirmed import CONFIRMED_SYNC_SECONDS, ConfirmedPoint, SegmentSeal
from sealmq.store.crypto import TAG_BYTES
from sealmq.store.errors import (
    CorruptRecordError,
    MessageNotFoundError,
    StoreClosedError,
    StoreError,
)
from sealmq.store.files import make_private_dir, remove_quietly
from sealmq.store.index import LiveIndex, MessageAdded, MessageRef, destination_key
from sealmq.store.journal import DEFAULT_SEGMENT_SIZE, Journal, Placed, RecoveryReport
from sealmq.store.keys import DEFAULT_DATA_KEY_CACHE_SECONDS, DataKeyCache, KeyProvider
from sealmq.store.lock import DataDirLock
from sealmq.store.records import (
    decode_record,
    decode_record_index,
    encode_entry,
    encode_record,
    join_entries,
)

__all__ = ["JOURNAL_DIR", "FileStore", "StateBuilder"]

JOURNAL_DIR = "journal"
#: Compaction re-states live entries in records of about this size, so one record
#: never holds a whole segment and appends can interleave between them.
_COMPACTION_RECORD_BYTES = 1024 * 1024

log = logging.getLogger("sealmq.store")

#: What compaction re-states: everything that can be live.
_LiveEntry = (
    AddMessage
    | AddSubscription
    | SetRetained
    | SetSessionState
    | SetDeliveryCount
    | AddDestination
    | AddScheduled
    | PrepareTransaction
)


class FileStore:
    """A durable, encrypted ``MessageStore`` in ``data_dir``.

    Constructing it takes the folder's lock (:class:`StoreLockedError` if another
    broker holds it). Then call :meth:`recover` once, :meth:`write` from the event
    loop, and :meth:`close` at the end. Key-provider calls happen during
    :meth:`recover` (on the caller's thread) and on the journal's writer thread.
    """

    def __init__(
        self,
        data_dir: Path,
        key_provider: KeyProvider,
        broker_id: str,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        data_key_cache_seconds: float = DEFAULT_DATA_KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        confirmed_sync_seconds: float = CONFIRMED_SYNC_SECONDS,
    ) -> None:
        self.data_dir = Path(data_dir)
        make_private_dir(self.data_dir)
        self._lock = DataDirLock(self.data_dir)
        try:
            self._keys = DataKeyCache(key_provider, data_key_cache_seconds, clock=clock)
            self._journal = Journal(
                self.data_dir / JOURNAL_DIR,
                broker_id,
                self._keys,
                segment_size=segment_size,
                fencing_token=self._lock.fencing_token,
                on_durable=self._on_durable,
                on_settled=self._collect_garbage,
                confirmed_sync_seconds=confirmed_sync_seconds,
            )
        except BaseException:
            self._lock.release()
            raise
        self._index = LiveIndex()
        self._key_provider = key_provider
        self.broker_id = broker_id
        #: Follows the durable state for the checkpoint written at close (None: no
        #: checkpoint, as after a recovery with bodies).
        self._builder: StateBuilder | None = None
        self._seq = 1
        self._recovered = False
        self._closed = False
        self._gc_enabled = True
        self._newest_seen: int | None = None
        #: The last record :meth:`read_messages` decoded: ``(segment, record)`` and its entries.
        self._last_read: tuple[tuple[int, int], list[tuple[int, Op]]] | None = None

    @property
    def fencing_token(self) -> int:
        return self._lock.fencing_token

    @property
    def journal(self) -> Journal:
        return self._journal

    @property
    def key_cache(self) -> DataKeyCache:
        return self._keys

    @property
    def recovery_report(self) -> RecoveryReport:
        """What :meth:`recover` found: segments, records, and any torn tail it cut."""
        return self._journal.recovery_report

    # -- MessageStore ---------------------------------------------------------------------

    def recover(self, *, bodies: bool = True) -> RecoveredState:
        """Replay the journal; delete segments nothing needs. Call once, before :meth:`write`.

        ``bodies=False``: messages are stepped over, not built, and come back as
        :attr:`RecoveredState.refs` (what the broker pages in from).

        Raises :class:`CorruptRecordError` (the broker must not start) or
        :class:`KeyUnavailableError`.
        """
        if self._closed:
            raise StoreClosedError("the store is closed")
        if self._recovered:
            raise StoreError("recover() was already called")
        # A checkpoint holds no bodies: only a recovery without them can start from one.
        checkpoint = None if bodies else self._usable_checkpoint()
        covered: dict[int, SegmentSeal] = {}
        if checkpoint is not None:
            self._index = checkpoint.index
            covered = {n: seal for n, (seal, _) in checkpoint.segments.items()}
        builder = StateBuilder(self._index, bodies=bodies)
        if checkpoint is not None:
            builder.load(checkpoint)
        path = self._journal.segment_path
        decode = decode_record if bodies else decode_record_index
        scanned = 0
        for record in self._journal.replay(covered):
            if record.segment in covered:
                continue  # the newest segment, read whole for its tail: the checkpoint has it
            scanned += 1
            try:
                entries = decode(record.payload)
            except CorruptRecordError as exc:
                raise CorruptRecordError(exc.reason, path(record.segment), record.offset) from None
            builder.apply(record.segment, entries, record.offset, record.index)
        self.recovery_report.scanned = scanned
        self.recovery_report.checkpoint = checkpoint is not None
        state = builder.state()
        # From now on the builder follows what is written (for the checkpoint at close).
        self._builder = builder if not bodies else None
        top_seq = builder.top_seq
        self._seq = top_seq + 1
        self._recovered = True
        self._collect_garbage()
        report = self.recovery_report
        log.info(
            "store recovered: %d segments, %d records (%d read%s), %d messages, "
            "%d subscriptions, %d retained, %d sessions%s",
            len(report.segments),
            report.records,
            report.scanned,
            ", from a checkpoint" if report.checkpoint else "",
            len(self._index.messages),
            len(state.subscriptions),
            len(state.retained),
            len(state.sessions),
            ", torn tail cut" if report.torn_tail else "",
        )
        return state

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        """Append ``ops`` as one atomic record; the future completes once it is fsynced.

        ``sync=False``: once written; durable with the next synced write (see the port).
        """
        if self._closed or not self._recovered:
            error: StoreError = (
                StoreClosedError("the store is closed")
                if self._closed
                else StoreError("recover() the store before writing")
            )
            return _failed(error)
        ops = tuple(ops)
        try:
            payload, self._seq = encode_record(ops, self._seq, tag_room=TAG_BYTES)
        except StoreError as exc:
            return _failed(exc)
        return self._journal.append(payload, ops, sync=sync)

    def read_messages(self, message_ids: Sequence[str]) -> list[Message]:
        """The live messages ``message_ids``, in that order, read back from the journal.

        Each record is decrypted once for all the messages wanted from it, and the
        last one decoded is kept, so reading a backlog in order decrypts each record
        once. Only durable messages can be read (a write is indexed once fsynced).
        Raises :class:`MessageNotFoundError` for an id no owner holds,
        :class:`CorruptRecordError` if its record is damaged, and
        :class:`KeyUnavailableError` if its data key cannot be unwrapped. Blocking
        file I/O: call it off the event loop for more than a few messages.
        """
        self._check_open()
        out: list[Message] = []
        index = self._index
        for mid in message_ids:
            # Compaction may move the message (a new ref) and delete its old segment between
            # the look-up and the read: look again once before calling the record damaged.
            for attempt in (1, 2):
                ref = index.ref(mid)
                if ref is None or ref.record == 0:
                    raise MessageNotFoundError(f"no live message with id {mid!r} in the store")
                try:
                    out.append(self._read_at(mid, ref))
                    break
                except CorruptRecordError:
                    if attempt == 2 or index.messages.get(mid) == ref.packed:
                        raise
        return out

    def _read_at(self, mid: str, ref: MessageRef) -> Message:
        key = (ref.segment, ref.record)
        cached = self._last_read
        if cached is not None and cached[0] == key:
            entries = cached[1]
        else:
            payload = self._journal.read_record(ref.segment, ref.offset, ref.record)
            path = self._journal.segment_path(ref.segment)
            try:
                entries = decode_record(payload)
            except CorruptRecordError as exc:
                raise CorruptRecordError(exc.reason, path, ref.offset) from None
            self._last_read = (key, entries)
        op = entries[ref.entry][1] if ref.entry < len(entries) else None
        if type(op) is not AddMessage or op.message.message_id != mid:
            path = self._journal.segment_path(ref.segment)
            raise CorruptRecordError("record does not hold the indexed message", path, ref.offset)
        return op.message

    async def close(self) -> None:
        """Flush pending writes, stop the writer thread, release the folder's lock."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._journal.close()
            if self._builder is not None and self._journal.failure is None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._write_checkpoint)
        finally:
            self._lock.release()

    @property
    def checkpoint_path(self) -> Path:
        return self.data_dir / CHECKPOINT_FILE

    def _write_checkpoint(self) -> None:
        """After the journal closed: seal the index and state at its final position."""
        assert self._builder is not None
        try:
            journal = self._journal
            segments = [
                (seal, journal.segment_path(seal.number).stat().st_size) for seal in journal.seals()
            ]
            write_checkpoint(
                self.checkpoint_path,
                self._key_provider,
                self.broker_id,
                self._seq,
                segments,
                self._index,
                self._builder.values(),
            )
        except Exception as exc:
            # Without it the next start scans the whole journal: slower, never wrong.
            remove_quietly(self.checkpoint_path)
            log.warning("store: no checkpoint written (%s)", type(exc).__name__)

    def _usable_checkpoint(self) -> Checkpoint | None:
        """The checkpoint, if it matches the journal as the confirmed record gives it;
        else None, said once in the log (recovery then scans everything)."""
        path = self.checkpoint_path
        try:
            checkpoint = read_checkpoint(path, self._key_provider, self.broker_id)
            point = self._journal.read_confirmed()
        except FileNotFoundError:
            log.info("store: no checkpoint; reading the whole journal")
            return None
        except StoreError as exc:
            log.warning("store: checkpoint not used (%s); reading the whole journal", exc)
            return None
        problem = _mismatch(checkpoint, point, self._journal)
        if problem is not None:
            log.warning("store: checkpoint not used (%s); reading the whole journal", problem)
            return None
        return checkpoint

    def close_unopened(self) -> None:
        """Release a store that was only examined (never recovered), without an event loop."""
        if self._recovered:
            raise StoreError("a recovered store is closed with close()")
        self._closed = True
        try:
            self._journal.close_files()
        finally:
            self._lock.release()

    # -- maintenance ----------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every earlier write is durable and its segment bookkeeping is done."""
        self._check_open()
        await self._journal.call_in_writer(lambda: None)

    async def compact(self) -> list[int]:
        """Re-state the live entries of every older segment in the current one.

        Each older segment is rewritten in its own writer-thread step, so appends
        carry on in between; the old segments are deleted as they empty. Returns
        the segments that were rewritten.
        """
        self._check_open()
        targets = await self._journal.call_in_writer(self._compaction_targets)
        for number in targets:
            await self._journal.call_in_writer(partial(self._rewrite_segment, number))
        return targets

    async def rotate_data_keys(self) -> list[int]:
        """Start a segment under a fresh data key, then move every live entry into it.

        When it returns (and no ack dependency pins them) no live entry is left
        under an older data key and the older segments are deleted.
        """
        self._check_open()
        await self._journal.call_in_writer(self._journal.rotate)
        return await self.compact()

    def _check_open(self) -> None:
        if self._closed or not self._recovered:
            raise StoreClosedError("the store is not open")

    def _compaction_targets(self) -> list[int]:
        current = self._journal.current_segment
        index = self._index
        return [n for n in self._journal.segments if n != current and index.live_count(n) > 0]

    def _rewrite_segment(self, number: int) -> None:
        """Writer thread: re-state ``number``'s live entries at the end of the journal."""
        if number not in self._journal.segments or self._index.live_count(number) == 0:
            return
        index = self._index
        # The live entries, keyed by kind and key; a later record of a key replaces an earlier
        # one, so the last value record of a live retained topic or session key is what stays.
        latest: dict[str, tuple[int, _LiveEntry]] = {}
        retained = index.retained.live
        sessions = index.sessions.live
        destinations = index.destinations.live
        scheduled = index.scheduled.live
        prepared = index.prepared.live
        for record in self._journal.read_segment(number):
            try:
                entries = decode_record(record.payload)
            except CorruptRecordError as exc:
                path = self._journal.segment_path(number)
                raise CorruptRecordError(exc.reason, path, record.offset) from None
            for seq, op in entries:
                if type(op) is AddMessage:
                    ref = index.ref(op.message.message_id)
                    if ref is not None and ref.segment == number:
                        mid = op.message.message_id
                        latest["m" + mid] = (seq, AddMessage(op.message, tuple(ref.owners)))
                        # The counts follow the re-stated message, which starts without.
                        for owner, (count, _) in (ref.counts or {}).items():
                            key = f"c{mid}\x00{owner}"
                            latest.pop(key, None)
                            latest[key] = (0, SetDeliveryCount(mid, owner, count))
                elif type(op) is SetDeliveryCount:
                    counts = index.counts.get(op.message_id)
                    held = counts.get(op.owner) if counts else None
                    if held is not None and held[1] == number:
                        key = f"c{op.message_id}\x00{op.owner}"
                        latest[key] = (0, SetDeliveryCount(op.message_id, op.owner, held[0]))
                elif type(op) is AddDestination:
                    if destinations.get(destination_key(op.info.destination)) == number:
                        latest["d" + destination_key(op.info.destination)] = (0, op)
                elif type(op) is AddScheduled and scheduled.get(op.job.job_id) == number:
                    latest["j" + op.job.job_id] = (0, op)
                elif type(op) is PrepareTransaction and prepared.get(op.xid.hex()) == number:
                    latest["x" + op.xid.hex()] = (0, op)
                elif type(op) is AddSubscription and index.subscriptions.get(op.info.key) == number:
                    latest["s" + op.info.key] = (0, op)
                elif type(op) is SetRetained and retained.get(op.topic) == number:
                    latest["r" + op.topic] = (0, op)
                elif type(op) is SetSessionState and sessions.get(op.key) == number:
                    latest["k" + op.key] = (0, op)
        batch: list[bytes] = []
        ops: list[Op] = []
        size = 0
        records: list[tuple[bytes, Any]] = []
        for seq, op in latest.values():
            entry = encode_entry(seq, op)
            batch.append(entry)
            ops.append(op)
            size += len(entry)
            if size >= _COMPACTION_RECORD_BYTES:
                records.append((join_entries(batch), tuple(ops)))
                batch, ops, size = [], [], 0
        if batch:
            records.append((join_entries(batch), tuple(ops)))
        self._journal.write_records(records)
        log.info("store: rewrote %d live entries of segment %08d", len(latest), number)

    # -- writer thread --------------------------------------------------------------------

    def _on_durable(self, placed: list[Placed]) -> None:
        apply = self._index.apply
        builder = self._builder
        for segment, offset, record, ops in placed:
            apply(segment, ops, offset, record)
            if builder is not None:
                builder.apply_values(ops)

    def _collect_garbage(self) -> None:
        if not self._gc_enabled:
            return
        segments = self._journal.segments
        newest = segments[-1] if segments else None
        if not self._index.dirty and newest == self._newest_seen:
            return
        self._newest_seen = newest
        try:
            dead = self._index.deletable(segments)
            if dead:
                self._index.forget(self._journal.delete_segments(dead))
        except Exception:
            # Keeping files is always safe; deleting on a confused index is not.
            self._gc_enabled = False
            log.exception("store: segment deletion disabled after an error")


class StateBuilder:
    """What recovery rebuilds from records fed in journal order (also used by salvage)."""

    def __init__(self, index: LiveIndex | None = None, *, bodies: bool = True) -> None:
        self.index = LiveIndex() if index is None else index
        self.bodies = bodies
        # Latest content of each message and subscription; dead ones are dropped as we go.
        self._contents: dict[str, tuple[int, Message]] = {}
        #: Without bodies: the ids of the messages added in send order (each seq higher
        #: than any before), with their seqs and body sizes: 20 bytes a message while
        #: replaying, dead ones dropped at the end.
        self._ids: list[str] = []
        self._seqs = array("Q")
        self._sizes = array("I")
        #: Messages re-stated by compaction (an AddMessage with an older seq), by id:
        #: ``(seq, size)``; merged back into send order at the end.
        self._moved: dict[str, tuple[int, int]] = {}
        #: How many of :attr:`_ids` came from a checkpoint (their seqs stand-ins).
        self._checkpointed = 0
        self._subscriptions: dict[str, DurableSubscriptionInfo] = {}
        self._retained: dict[str, Message] = {}
        self._sessions: dict[str, bytes] = {}
        self._destinations: dict[str, DestinationInfo] = {}
        self._scheduled: dict[str, ScheduledJob] = {}
        self._prepared: dict[bytes, tuple[Op, ...]] = {}
        self.top_seq = 0

    def apply(
        self,
        segment: int,
        entries: Sequence[tuple[int, Op | MessageAdded]],
        offset: int = 0,
        record: int = 0,
    ) -> None:
        index, contents = self.index, self._contents
        subscriptions = self._subscriptions
        index.apply(segment, [op for _, op in entries], offset, record)
        for seq, op in entries:
            if type(op) is MessageAdded:
                size = min(op.size, 0xFFFFFFFF)
                if seq > self.top_seq:
                    self.top_seq = seq
                    self._ids.append(op.message_id)
                    self._seqs.append(seq)
                    self._sizes.append(size)
                else:
                    self._moved[op.message_id] = (seq, size)
            elif type(op) is AddMessage:
                mid = op.message.message_id
                contents.pop(mid, None)  # a newer AddMessage goes to its own place
                if mid in index.messages:
                    contents[mid] = (seq, op.message)
                self.top_seq = max(self.top_seq, seq)
            elif type(op) is RemoveMessage:
                if op.message_id not in index.messages:
                    contents.pop(op.message_id, None)
            elif type(op) is RemoveSubscription:
                subscriptions.pop(durable_key(op.client_id, op.name), None)
                for mid in [m for m in contents if m not in index.messages]:
                    del contents[mid]
            else:
                self._value(op)
            # SetDeliveryCount: the index keeps the latest count of each live message.

    def apply_values(self, ops: Sequence[Op]) -> None:
        """Follow the durable ``ops`` of a running store (the index follows the messages),
        so that a checkpoint can be written at close."""
        for op in ops:
            if type(op) is RemoveSubscription:
                self._subscriptions.pop(durable_key(op.client_id, op.name), None)
            elif type(op) is not AddMessage and type(op) is not RemoveMessage:
                self._value(op)

    def _value(self, op: Op | MessageAdded) -> None:
        subscriptions, retained, sessions = self._subscriptions, self._retained, self._sessions
        if type(op) is AddSubscription:
            subscriptions[op.info.key] = op.info
        elif type(op) is SetRetained:
            if op.message is None:
                retained.pop(op.topic, None)
            else:
                retained[op.topic] = op.message
        elif type(op) is SetSessionState:
            if op.state is None:
                sessions.pop(op.key, None)
            else:
                sessions[op.key] = op.state
        elif type(op) is AddDestination:
            self._destinations[destination_key(op.info.destination)] = op.info
        elif type(op) is RemoveDestination:
            self._destinations.pop(destination_key(op.destination), None)
        elif type(op) is AddScheduled:
            self._scheduled[op.job.job_id] = op.job
        elif type(op) is RemoveScheduled:
            self._scheduled.pop(op.job_id, None)
        elif type(op) is PrepareTransaction:
            self._prepared[op.xid] = op.ops
        elif type(op) is ForgetPrepared:
            self._prepared.pop(op.xid, None)

    def load(self, checkpoint: Checkpoint) -> None:
        """Start from ``checkpoint`` (whose index is :attr:`index`); replay what follows."""
        state = checkpoint.state
        self._subscriptions = {info.key: info for info in state.subscriptions}
        self._retained = {m.destination.name: m for m in state.retained}
        self._sessions = dict(state.sessions)
        self._destinations = {destination_key(i.destination): i for i in state.destinations}
        self._scheduled = {job.job_id: job for job in state.scheduled}
        self._prepared = dict(state.prepared)
        # Stand-in seqs 1..n keep the checkpoint's send order; every message added after
        # it has a higher seq (the checkpoint's next seq is above n).
        self._ids = checkpoint.order
        self._seqs = array("Q", range(1, len(checkpoint.order) + 1))
        self._sizes = array("I", bytes(4 * len(checkpoint.order)))
        self._checkpointed = len(checkpoint.order)
        self.top_seq = checkpoint.next_seq - 1

    def values(self) -> RecoveredState:
        """Everything but the messages, as it is now (what a checkpoint keeps)."""
        destinations = self._destinations.values()
        return RecoveredState(
            [],
            list(self._subscriptions.values()),
            [self._retained[topic] for topic in sorted(self._retained)],
            dict(self._sessions),
            sorted(destinations, key=lambda i: (i.destination.kind, i.destination.name)),
            [self._scheduled[job] for job in sorted(self._scheduled)],
            dict(self._prepared),
        )

    def state(self) -> RecoveredState:
        index = self.index
        live = index.messages
        ordered = sorted(
            (item for mid, item in self._contents.items() if mid in live), key=lambda item: item[0]
        )
        destinations = self._destinations.values()
        return RecoveredState(
            [_stored(m, index, m.message_id) for _, m in ordered],
            list(self._subscriptions.values()),
            [self._retained[topic] for topic in sorted(self._retained)],
            dict(self._sessions),
            sorted(destinations, key=lambda i: (i.destination.kind, i.destination.name)),
            [self._scheduled[job] for job in sorted(self._scheduled)],
            dict(self._prepared),
            self._refs_in_order() if not self.bodies else [],
        )

    def _refs_in_order(self) -> Iterator[StoredRef]:
        """Every live message recovered without bodies, in send order, made one at a time
        (the broker takes each into its queue: no list of a million refs)."""
        index = self.index
        live, moved = index.messages, self._moved
        if moved and self._checkpointed:
            # Re-stated after the checkpoint but held by it: the checkpoint's place stands
            # (its seq is a stand-in that cannot be compared with the real one).
            held = {mid for mid in itertools.islice(self._ids, self._checkpointed) if mid in moved}
            for mid in held:
                del moved[mid]
        if moved:
            # The index follows first-add order, which compaction re-statements replayed
            # without their first AddMessage broke: put it back in send order (checkpoints
            # are written from it).
            order = list(self._in_order(live, moved))
            index.messages = {mid: live[mid] for _, mid, _ in order}
            live = index.messages
            for _, mid, size in order:
                yield _ref(mid, index, live[mid], size)
            return
        for _, mid, size in self._in_order(live, moved):
            yield _ref(mid, index, live[mid], size)

    def _in_order(
        self, live: dict[str, int], moved: dict[str, tuple[int, int]]
    ) -> Iterator[tuple[int, str, int]]:
        fresh = (
            (seq, mid, size)
            for mid, seq, size in zip(self._ids, self._seqs, self._sizes, strict=True)
            if mid in live and mid not in moved
        )
        restated = sorted((seq, mid, size) for mid, (seq, size) in moved.items() if mid in live)
        return heapq.merge(fresh, restated)


def _stored(message: Message, index: LiveIndex, mid: str) -> StoredMessage:
    held = index.counts.get(mid)
    counts = {owner: count for owner, (count, _) in held.items()} if held else {}
    return StoredMessage(message, list(index.owners_of(index.messages[mid])), counts)


def _mismatch(checkpoint: Checkpoint, point: ConfirmedPoint | None, journal: Journal) -> str | None:
    """Why ``checkpoint`` does not describe the journal's start, or None if it does."""
    if point is None:
        return "the journal has no confirmed record"
    if not checkpoint.segments:
        return "it covers no segment"
    expected = point.expected()
    newest = max(checkpoint.segments)
    for number, (seal, size) in checkpoint.segments.items():
        if expected.get(number) != seal or number in point.deleting:
            return f"segment {number} is not as it recorded"
        try:
            if journal.segment_path(number).stat().st_size != size:
                return f"segment {number} changed size"
        except OSError:
            return f"segment {number} is missing"
    if any(n < newest and n not in checkpoint.segments for n in expected):
        return "the journal has a segment it does not cover"
    return None


def _ref(mid: str, index: LiveIndex, packed: int, size: int) -> StoredRef:
    held = index.counts.get(mid) if index.counts else None
    counts = {owner: count for owner, (count, _) in held.items()} if held else None
    # The index's interned owner tuple: shared by every message of the same owners.
    return StoredRef(mid, index.owners_of(packed), counts, size)


def _failed(error: BaseException) -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_exception(error)
    return fut
