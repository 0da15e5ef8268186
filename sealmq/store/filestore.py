"""The file store: the core's ``MessageStore`` over the encrypted journal.

``<data_dir>/lock`` (held while open), ``<data_dir>/journal/*.seg``. Each
``write(ops)`` becomes one sealed record; recovery replays the journal and the
liveness index (``index.py``) decides which segments can be deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sealmq.core.model import DurableSubscriptionInfo, Message, durable_key
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    Op,
    RecoveredState,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
    StoredMessage,
)
from sealmq.store.errors import CorruptRecordError, StoreClosedError, StoreError
from sealmq.store.files import make_private_dir
from sealmq.store.index import LiveIndex
from sealmq.store.journal import DEFAULT_SEGMENT_SIZE, Journal, RecoveryReport
from sealmq.store.keys import DEFAULT_DATA_KEY_CACHE_SECONDS, DataKeyCache, KeyProvider
from sealmq.store.lock import DataDirLock
from sealmq.store.records import decode_record, encode_entry, encode_record, join_entries

__all__ = ["JOURNAL_DIR", "FileStore"]

JOURNAL_DIR = "journal"
#: Compaction re-states live entries in records of about this size, so one record
#: never holds a whole segment and appends can interleave between them.
_COMPACTION_RECORD_BYTES = 1024 * 1024

log = logging.getLogger("sealmq.store")

#: What compaction re-states: everything that can be live.
_LiveEntry = AddMessage | AddSubscription | SetRetained | SetSessionState


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
            )
        except BaseException:
            self._lock.release()
            raise
        self._index = LiveIndex()
        self._seq = 1
        self._recovered = False
        self._closed = False
        self._gc_enabled = True
        self._newest_seen: int | None = None

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

    def recover(self) -> RecoveredState:
        """Replay the journal; delete segments nothing needs. Call once, before :meth:`write`.

        Raises :class:`CorruptRecordError` (the broker must not start) or
        :class:`KeyUnavailableError`.
        """
        if self._closed:
            raise StoreClosedError("the store is closed")
        if self._recovered:
            raise StoreError("recover() was already called")
        index = self._index
        # Latest content of each message and subscription; dead ones are dropped as we go.
        contents: dict[str, tuple[int, Message]] = {}
        subscriptions: dict[str, DurableSubscriptionInfo] = {}
        retained: dict[str, Message] = {}
        sessions: dict[str, bytes] = {}
        top_seq = 0
        path = self._journal.segment_path
        for record in self._journal.replay():
            try:
                entries = decode_record(record.payload)
            except CorruptRecordError as exc:
                raise CorruptRecordError(exc.reason, path(record.segment), record.offset) from None
            index.apply(record.segment, [op for _, op in entries])
            for seq, op in entries:
                if type(op) is AddMessage:
                    mid = op.message.message_id
                    contents.pop(mid, None)  # a newer AddMessage goes to its own place
                    if mid in index.messages:
                        contents[mid] = (seq, op.message)
                    top_seq = max(top_seq, seq)
                elif type(op) is RemoveMessage:
                    if op.message_id not in index.messages:
                        contents.pop(op.message_id, None)
                elif type(op) is AddSubscription:
                    subscriptions[op.info.key] = op.info
                elif type(op) is RemoveSubscription:
                    subscriptions.pop(durable_key(op.client_id, op.name), None)
                    for mid in [m for m in contents if m not in index.messages]:
                        del contents[mid]
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
        live = index.messages
        ordered = sorted(
            (item for mid, item in contents.items() if mid in live), key=lambda item: item[0]
        )
        state = RecoveredState(
            [StoredMessage(m, list(live[m.message_id].owners)) for _, m in ordered],
            list(subscriptions.values()),
            [retained[topic] for topic in sorted(retained)],
            sessions,
        )
        self._seq = top_seq + 1
        self._recovered = True
        self._collect_garbage()
        report = self.recovery_report
        log.info(
            "store recovered: %d segments, %d records, %d messages, %d subscriptions, "
            "%d retained, %d sessions%s",
            len(report.segments),
            report.records,
            len(state.messages),
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
            payload, self._seq = encode_record(ops, self._seq)
        except StoreError as exc:
            return _failed(exc)
        return self._journal.append(payload, ops, sync=sync)

    async def close(self) -> None:
        """Flush pending writes, stop the writer thread, release the folder's lock."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._journal.close()
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
        for record in self._journal.read_segment(number):
            try:
                entries = decode_record(record.payload)
            except CorruptRecordError as exc:
                path = self._journal.segment_path(number)
                raise CorruptRecordError(exc.reason, path, record.offset) from None
            for seq, op in entries:
                if type(op) is AddMessage:
                    ref = index.messages.get(op.message.message_id)
                    if ref is not None and ref.segment == number:
                        latest["m" + op.message.message_id] = (
                            seq,
                            AddMessage(op.message, tuple(ref.owners)),
                        )
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

    def _on_durable(self, placed: list[tuple[int, Any]]) -> None:
        apply = self._index.apply
        for segment, ops in placed:
            apply(segment, ops)
        self._collect_garbage()

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


def _failed(error: BaseException) -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_exception(error)
    return fut
