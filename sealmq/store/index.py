"""Which journal segments still matter: live messages, subscriptions, and ack dependencies.

The index follows every durable record (during recovery, then on the journal's
writer thread) and answers one question: which segments can be deleted without
changing what recovery would rebuild. A segment is deletable when

- it holds no live entry (a message some owner still holds, the latest record
  of an existing durable subscription, or the current retained message of a
  topic or session state of a key), and
- every older segment holding a message it removed a reference to, or whose
  AddMessage it replaced, is gone (KahaDB's ack-dependency rule: deleting the
  ack first would resurrect the message on the next recovery), and
- every older segment holding a value (retained message, session state) that
  one of its records cleared is gone (the value would come back otherwise), and
- if it removed a durable subscription, every older segment is gone (their
  messages for that subscription would otherwise come back with it), and
- it is not the newest segment (the journal keeps that one anyway).

A value replaced by a newer one needs no such care: recovery applies the newer
one last whether or not the older is still on disk.

Segments are deleted oldest first, each unlink made durable before the next.
"""

from __future__ import annotations

from collections.abc import Iterable

from sealmq.core.model import durable_key
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    Op,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
)

__all__ = ["KeyedValues", "LiveIndex", "MessageRef"]


class MessageRef:
    """Where a live message's latest AddMessage is, and who still holds it."""

    __slots__ = ("owners", "segment")

    def __init__(self, segment: int, owners: list[str]) -> None:
        self.segment = segment
        self.owners = owners


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
        self.messages: dict[str, MessageRef] = {}
        #: Durable subscription key -> segment of its latest AddSubscription.
        self.subscriptions: dict[str, int] = {}
        #: Retained messages by topic.
        self.retained = KeyedValues()
        #: Session states by key.
        self.sessions = KeyedValues()
        self._segments: dict[int, _SegmentInfo] = {}
        #: Set when a segment may have become deletable; cleared by :meth:`deletable`.
        self.dirty = True

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

    def apply(self, segment: int, ops: Iterable[Op]) -> None:
        """Account for ``ops``, durable in ``segment``, in journal order."""
        messages = self.messages
        for op in ops:
            if type(op) is AddMessage:
                mid = op.message.message_id
                old = messages.pop(mid, None)
                if old is not None:
                    # A later AddMessage (a compaction rewrite) replaces the earlier one, so,
                    # like an ack, it must outlive the segment holding the earlier one.
                    self._release(old.segment)
                    if old.segment != segment:
                        self._seg(segment).deps.add(old.segment)
                if op.owners:
                    messages[mid] = MessageRef(segment, list(dict.fromkeys(op.owners)))
                    self._seg(segment).live += 1
            elif type(op) is RemoveMessage:
                ref = messages.get(op.message_id)
                if ref is None or op.owner not in ref.owners:
                    continue
                ref.owners.remove(op.owner)
                if ref.segment != segment:
                    self._seg(segment).deps.add(ref.segment)
                if not ref.owners:
                    del messages[op.message_id]
                    self._release(ref.segment)
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
        for mid, ref in self.messages.items():
            if owner in ref.owners:
                ref.owners.remove(owner)
                if not ref.owners:
                    dead.append(mid)
        for mid in dead:
            self._release(self.messages.pop(mid).segment)
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
