"""Which journal segments still matter: live messages, subscriptions, and ack dependencies.

The index follows every durable record (during recovery, then on the journal's
writer thread) and answers one question: which segments can be deleted without
changing what recovery would rebuild. A segment is deletable when

- it holds no live entry (a message some owner still holds, the latest delivery
  count of an owner still holding its message, the latest record of an existing
  durable subscription, destination, scheduled job or prepared transaction, or
  the current retained message of a topic or session state of a key), and
- every older segment holding a message it removed a reference to, or whose
  AddMessage it replaced, is gone (KahaDB's ack-dependency rule: deleting the
  ack first would resurrect the message on the next recovery), and
- every older segment holding a value (retained message, session state,
  destination, scheduled job, prepared transaction) that one of its records
  cleared is gone (the value would come back otherwise), and
- if it removed a durable subscription, every older segment is gone (their
  messages for that subscription would otherwise come back with it), and
- it is not the newest segment (the journal keeps that one anyway).

A value replaced by a newer one needs no such care: recovery applies the newer
one last whether or not the older is still on disk. Nor does a delivery count
whose owner let its message go: a count for a message recovery does not know,
or an owner not holding it, is ignored.

Segments are deleted oldest first, each unlink made durable before the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sealmq.core.model import Destination, durable_key
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
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
)

__all__ = ["KeyedValues", "LiveIndex", "MessageAdded", "MessageRef", "destination_key"]


class MessageAdded:
    """An AddMessage read without its message (recovery without bodies): what the index
    and recovery need of it, and nothing of the message itself."""

    __slots__ = ("message_id", "owners", "size")

    def __init__(self, message_id: str, owners: tuple[str, ...], size: int) -> None:
        self.message_id = message_id
        self.owners = owners
        #: The body's size in bytes.
        self.size = size


class MessageRef:
    """Where a live message's latest AddMessage is and who still holds it: a view built
    by :meth:`LiveIndex.ref` (the index itself keeps one packed int per message).

    The AddMessage is entry ``entry`` (0-based) of the record at byte ``offset`` of
    ``segment``, which is that segment's record number ``record`` (see
    :meth:`Journal.read_record`); ``record`` is 0 where the place is not known
    (an index rebuilt by salvage). ``counts``: the latest delivery count of each owner
    that has one, ``owner -> (count, segment)``; ``packed`` is the index's value, to
    tell whether the message moved since.
    """

    __slots__ = ("counts", "entry", "offset", "owners", "packed", "record", "segment")

    def __init__(
        self,
        segment: int,
        owners: tuple[str, ...],
        offset: int = 0,
        record: int = 0,
        entry: int = 0,
        counts: dict[str, tuple[int, int]] | None = None,
        packed: int = 0,
    ) -> None:
        self.segment = segment
        self.owners = owners
        self.offset = offset
        self.record = record
        self.entry = entry
        self.counts = counts
        self.packed = packed


# A live message's place and owners, packed into one int (a Python int of up to 150
# bits is 44 bytes; an object with six fields and an owner list was about 200): from the
# low bits, the entry in its record (24 bits: a record is at most 1 GiB), the byte offset
# of the record (32: segments are under 2 GiB), the record number (28), the segment
# number (32), then the number of its interned owner tuple.
_ENTRY_BITS, _OFFSET_BITS, _RECORD_BITS, _SEGMENT_BITS = 24, 32, 28, 32
_OFFSET_SHIFT = _ENTRY_BITS
_RECORD_SHIFT = _OFFSET_SHIFT + _OFFSET_BITS
_SEGMENT_SHIFT = _RECORD_SHIFT + _RECORD_BITS
_OWNERS_SHIFT = _SEGMENT_SHIFT + _SEGMENT_BITS
_SEGMENT_MASK = (1 << _SEGMENT_BITS) - 1


def _pack(owners: int, segment: int, offset: int, record: int, entry: int) -> int:
    if (
        entry >> _ENTRY_BITS
        or offset >> _OFFSET_BITS
        or record >> _RECORD_BITS
        or segment >> _SEGMENT_BITS
    ):
        raise ValueError("a message's place does not fit the index")
    return (
        owners << _OWNERS_SHIFT
        | segment << _SEGMENT_SHIFT
        | record << _RECORD_SHIFT
        | offset << _OFFSET_SHIFT
        | entry
    )


def _segment_of(packed: int) -> int:
    return packed >> _SEGMENT_SHIFT & _SEGMENT_MASK


def destination_key(destination: Destination) -> str:
    """The key of a destination's record among :attr:`LiveIndex.destinations`."""
    return f"{destination.kind}:{destination.name}"


class _SegmentInfo:
    __slots__ = ("barrier", "deps", "live")

    def __init__(self) -> None:
        self.live = 0
        self.deps: set[int] = set()
        self.barrier = False


class KeyedValues:
    """One value per key, last write wins (retained messages, session states).

    ``live`` maps each key that has a value to the segment of the record that
    set it. ``history`` maps a key to the segments holding a value record for it
    since it was last cleared (the current value and any it replaced): a clearing
    record must outlive all of them. Entries of deleted segments are dropped the
    next time the key is written.
    """

    __slots__ = ("history", "live")

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.history: dict[str, list[int]] = {}


class LiveIndex:
    """Liveness per segment. Not thread-safe: one thread at a time applies records."""

    def __init__(self) -> None:
        #: Each live message by id: its place and owners, packed (:meth:`ref` unpacks).
        self.messages: dict[str, int] = {}
        #: The distinct owner tuples messages have, and each one's number: a queue's
        #: messages share one tuple (never forgotten: there are few).
        self._owner_sets: list[tuple[str, ...]] = []
        self._owner_numbers: dict[tuple[str, ...], int] = {}
        #: The latest delivery count of each owner that has one, by message id, then
        #: owner: ``(count, segment)`` (rare: only redelivered messages).
        self.counts: dict[str, dict[str, tuple[int, int]]] = {}
        #: Durable subscription key -> segment of its latest AddSubscription.
        self.subscriptions: dict[str, int] = {}
        #: Retained messages by topic.
        self.retained = KeyedValues()
        #: Session states by key.
        self.sessions = KeyedValues()
        #: Destination records by :func:`destination_key`.
        self.destinations = KeyedValues()
        #: Scheduled jobs by job id.
        self.scheduled = KeyedValues()
        #: Prepared transactions by xid (hex).
        self.prepared = KeyedValues()
        self._segments: dict[int, _SegmentInfo] = {}
        #: Set when a segment may have become deletable; cleared by :meth:`deletable`.
        self.dirty = True

    def _owners_number(self, owners: tuple[str, ...]) -> int:
        number = self._owner_numbers.get(owners)
        if number is None:
            number = self._owner_numbers[owners] = len(self._owner_sets)
            self._owner_sets.append(owners)
        return number

    def owners_of(self, packed: int) -> tuple[str, ...]:
        return self._owner_sets[packed >> _OWNERS_SHIFT]

    def ref(self, message_id: str) -> MessageRef | None:
        """Where the live message ``message_id`` is, or None if no owner holds it."""
        packed = self.messages.get(message_id)
        if packed is None:
            return None
        return MessageRef(
            _segment_of(packed),
            self._owner_sets[packed >> _OWNERS_SHIFT],
            packed >> _OFFSET_SHIFT & ((1 << _OFFSET_BITS) - 1),
            packed >> _RECORD_SHIFT & ((1 << _RECORD_BITS) - 1),
            packed & ((1 << _ENTRY_BITS) - 1),
            self.counts.get(message_id),
            packed,
        )

    def _with_owners(self, packed: int, owners: tuple[str, ...]) -> int:
        keep = packed & ((1 << _OWNERS_SHIFT) - 1)
        return self._owners_number(owners) << _OWNERS_SHIFT | keep

    def export(self) -> dict[str, Any]:
        """Everything but the messages and owner tuples, as plain data (checkpoints)."""
        keyed = {
            name: {"live": values.live, "history": values.history}
            for name, values in self._keyed().items()
        }
        return {
            "subscriptions": self.subscriptions,
            "keyed": keyed,
            "counts": {
                mid: {o: list(c) for o, c in held.items()} for mid, held in self.counts.items()
            },
            "segments": {
                str(n): [info.live, sorted(info.deps), info.barrier]
                for n, info in self._segments.items()
            },
        }

    def load(
        self,
        exported: dict[str, Any],
        owner_sets: list[tuple[str, ...]],
        messages: dict[str, int],
    ) -> None:
        """Take the state :meth:`export` gave (and the messages and owner tuples)."""
        self.subscriptions = dict(exported["subscriptions"])
        for name, values in self._keyed().items():
            values.live = dict(exported["keyed"][name]["live"])
            values.history = {k: list(v) for k, v in exported["keyed"][name]["history"].items()}
        self.counts = {
            mid: {o: (c[0], c[1]) for o, c in held.items()}
            for mid, held in exported["counts"].items()
        }
        self._segments = {}
        for number, (live, deps, barrier) in exported["segments"].items():
            info = self._segments[int(number)] = _SegmentInfo()
            info.live, info.deps, info.barrier = live, set(deps), barrier
        self._owner_sets = list(owner_sets)
        self._owner_numbers = {owners: i for i, owners in enumerate(owner_sets)}
        self.messages = messages
        self.dirty = True

    def owner_sets(self) -> list[tuple[str, ...]]:
        return list(self._owner_sets)

    def _keyed(self) -> dict[str, KeyedValues]:
        return {
            "retained": self.retained,
            "sessions": self.sessions,
            "destinations": self.destinations,
            "scheduled": self.scheduled,
            "prepared": self.prepared,
        }

    def live_count(self, segment: int) -> int:
        info = self._segments.get(segment)
        return 0 if info is None else info.live

    def _seg(self, segment: int) -> _SegmentInfo:
        info = self._segments.get(segment)
        if info is None:
            info = self._segments[segment] = _SegmentInfo()
        return info

    def _release(self, segment: int) -> None:
        info = self._seg(segment)
        info.live -= 1
        if info.live == 0:
            self.dirty = True

    def apply(
        self, segment: int, ops: Iterable[Op | MessageAdded], offset: int = 0, record: int = 0
    ) -> None:
        """Account for ``ops``, the entries of the record at ``offset`` of ``segment`` (its
        record number ``record``), durable, in journal order."""
        messages = self.messages
        for entry, op in enumerate(ops):
            if type(op) is AddMessage or type(op) is MessageAdded:
                mid = op.message.message_id if isinstance(op, AddMessage) else op.message_id
                # Replaced in place (a dict keeps a key's position), so the index stays in
                # send order when compaction re-states a message: checkpoints rely on it.
                old = messages.get(mid)
                if old is not None:
                    # A later AddMessage (a compaction rewrite) replaces the earlier one, so,
                    # like an ack, it must outlive the segment holding the earlier one.
                    old_segment = _segment_of(old)
                    self._release(old_segment)
                    if old_segment != segment:
                        self._seg(segment).deps.add(old_segment)
                if op.owners:
                    owners = op.owners
                    if len(owners) > 1:
                        owners = tuple(dict.fromkeys(owners))
                    number = self._owner_numbers.get(owners)
                    if number is None:
                        number = self._owners_number(owners)
                    messages[mid] = _pack(number, segment, offset, record, entry)
                    self._seg(segment).live += 1
                elif old is not None:
                    del messages[mid]
                if old is not None:
                    old_counts = self.counts.pop(mid, None) if self.counts else None
                    if old_counts:
                        # A message added again starts with no counts (compaction re-states
                        # them after it): recovery may not have the older AddMessage they
                        # were counted against.
                        for _, at in old_counts.values():
                            self._release(at)
            elif type(op) is RemoveMessage:
                mid = op.message_id
                packed = messages.get(mid)
                if packed is None:
                    continue
                owners = self._owner_sets[packed >> _OWNERS_SHIFT]
                if op.owner not in owners:
                    continue
                if self.counts:
                    self._drop_count(mid, op.owner)
                at = _segment_of(packed)
                if at != segment:
                    self._seg(segment).deps.add(at)
                if len(owners) == 1:
                    del messages[mid]
                    self._release(at)
                else:
                    rest = tuple(o for o in owners if o != op.owner)
                    messages[mid] = self._with_owners(packed, rest)
            elif type(op) is AddSubscription:
                key = op.info.key
                previous = self.subscriptions.get(key)
                if previous is not None:
                    self._release(previous)
                self.subscriptions[key] = segment
                self._seg(segment).live += 1
            elif type(op) is RemoveSubscription:
                key = durable_key(op.client_id, op.name)
                previous = self.subscriptions.pop(key, None)
                if previous is not None:
                    self._release(previous)
                self._seg(segment).barrier = True
                self.drop_owner(key)
            elif type(op) is SetRetained:
                self._set_value(self.retained, segment, op.topic, op.message is not None)
            elif type(op) is SetSessionState:
                self._set_value(self.sessions, segment, op.key, op.state is not None)
            elif type(op) is SetDeliveryCount:
                counted = messages.get(op.message_id)
                if counted is None or op.owner not in self.owners_of(counted):
                    continue
                held = self.counts.setdefault(op.message_id, {})
                replaced = held.get(op.owner)
                if replaced is not None:
                    self._release(replaced[1])
                held[op.owner] = (op.count, segment)
                self._seg(segment).live += 1
            elif type(op) is AddDestination:
                key = destination_key(op.info.destination)
                self._set_value(self.destinations, segment, key, True)
            elif type(op) is RemoveDestination:
                key = destination_key(op.destination)
                self._set_value(self.destinations, segment, key, False)
            elif type(op) is AddScheduled:
                self._set_value(self.scheduled, segment, op.job.job_id, True)
            elif type(op) is RemoveScheduled:
                self._set_value(self.scheduled, segment, op.job_id, False)
            elif type(op) is PrepareTransaction:
                # Its ops take no effect until a commit writes them again.
                self._set_value(self.prepared, segment, op.xid.hex(), True)
            elif type(op) is ForgetPrepared:
                self._set_value(self.prepared, segment, op.xid.hex(), False)

    def _drop_count(self, message_id: str, owner: str) -> None:
        held = self.counts.get(message_id)
        if held is not None:
            count = held.pop(owner, None)
            if count is not None:
                self._release(count[1])
            if not held:
                del self.counts[message_id]

    def _set_value(self, values: KeyedValues, segment: int, key: str, present: bool) -> None:
        previous = values.live.pop(key, None)
        if previous is not None:
            self._release(previous)
        if present:
            values.live[key] = segment
            self._seg(segment).live += 1
            history = values.history.get(key)
            if history is None:
                values.history[key] = [segment]
            elif history[-1] != segment:  # records come in segment order
                # Deleted segments can pin nothing; drop them while we are here.
                segments = self._segments
                history[:] = [n for n in history if n in segments]
                history.append(segment)
        else:
            history = values.history.pop(key, None)
            if history:
                # Every older value of the key must be gone before this clearing record may go.
                deps = self._seg(segment).deps
                deps.update(n for n in history if n != segment)

    def drop_owner(self, owner: str) -> list[str]:
        """Remove ``owner`` from every message (a scan: subscriptions go rarely); the dead ids."""
        dead = []
        messages = self.messages
        for mid, packed in messages.items():
            owners = self._owner_sets[packed >> _OWNERS_SHIFT]
            if owner in owners:
                self._drop_count(mid, owner)
                if len(owners) == 1:
                    dead.append(mid)
                else:
                    # Same key: replacing a value while iterating is allowed.
                    rest = tuple(o for o in owners if o != owner)
                    messages[mid] = self._with_owners(packed, rest)
        for mid in dead:
            self._release(_segment_of(messages.pop(mid)))
        return dead

    def deletable(self, existing: Iterable[int]) -> list[int]:
        """Segments among ``existing`` that can go, oldest first (see the module doc)."""
        self.dirty = False
        remaining = sorted(existing)
        if not remaining:
            return []
        newest = remaining[-1]
        alive = set(remaining)
        out = []
        for number in remaining:
            if number == newest:
                break
            info = self._segments.get(number)
            if info is not None:
                if info.live > 0:
                    continue
                info.deps &= alive
                if info.deps:
                    continue
                if info.barrier and min(alive) < number:
                    continue
            out.append(number)
            alive.discard(number)
        return out

    def forget(self, numbers: Iterable[int]) -> None:
        """The journal deleted these segments."""
        for number in numbers:
            self._segments.pop(number, None)
