"""Message queues and the consumers they dispatch to.

One :class:`MessageQueue` serves a queue destination (competing consumers),
a durable topic subscription, or a non-durable topic subscription: the three
differ only in who may consume and whether the store holds their messages.

Dispatch never runs on a sender's call stack: whatever may let a message move
(a send, an ack, new credit, a consumer arriving) calls :meth:`MessageQueue.wake`,
and the host dispatches every woken queue once per loop tick (``docs/core.md``).

An entry the queue cannot hand out now is *held* rather than left at the head:
one no current consumer accepts (filters, ``undeliverable_here``) waits in
``unmatched`` until the consumers change; one only consumers without credit
accept (a message group's owner, a filtering consumer) waits on those consumers
until one has credit. So no message blocks the ones behind it, and each
message costs O(consumers) at worst to place, O(1) without filters or groups.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from sealmq.core.consumers import (
    AckMode,
    Consumer,
    DeliverySink,
    Entry,
    MessageFilter,
    Outcome,
)

__all__ = [
    "AckMode",
    "Consumer",
    "DeliverySink",
    "Entry",
    "MessageFilter",
    "MessageQueue",
    "Outcome",
    "QueueHost",
]

PRIORITIES = 10
#: What one queued entry costs in memory besides its body (the Entry, the Message and
#: its id, the body's bytes object, headers), in bytes, as tracemalloc shows it for a
#: 1 KiB message read back from the store (about 850): counted against the memory limit so
#: that the limit bounds real memory, and a queue of small messages too.
ENTRY_OVERHEAD = 1000
#: The window is paged into again once it holds less than this share of the limit.
PAGE_IN_LOW_WATER = 0.7
#: Messages read back first when the sizes of the paged ones are not known.
FIRST_PAGE = 8
#: The default memory limit of a queue (``DestinationPolicy.memory_limit``).
DEFAULT_MEMORY_LIMIT = 32 * 1024 * 1024


class QueueHost(Protocol):
    """What a queue reports back to the broker that owns it."""

    def wake(self, queue: MessageQueue) -> None:
        """Something may move in ``queue``: dispatch it in this loop tick's dispatch step."""
        ...

    def entry_expired(self, entry: Entry) -> None:
        """``entry`` was found expired and has left its queue."""
        ...

    def entry_consumed(self, entry: Entry) -> None:
        """``entry`` was delivered to an auto-ack consumer: it is done with."""
        ...

    def discarding(self, queue: MessageQueue, discarded: int) -> None:
        """``queue`` started (``discarded`` 0) or ended an episode of discarding past its
        pending limit, having discarded ``discarded`` messages in it."""
        ...

    def page_in(self, queue: MessageQueue) -> None:
        """``queue``'s window is below its low-water mark and it has messages in the
        store only: read the next ones back (off the event loop) and give them to
        :meth:`MessageQueue.paged_in`."""
        ...


#: ``_place`` found no consumer with credit at all: stop dispatching this queue.
_STOP = object()


class MessageQueue:
    """Pending messages by priority, dispatched to consumers by priority, round-robin."""

    __slots__ = (
        "_active",
        "_buckets",
        "_dispatching",
        "_drains",
        "_episode",
        "_filtering",
        "_held",
        "_levels",
        "_pending",
        "_rr",
        "_seq",
        "_single",
        "_unmatched",
        "_waiters",
        "browsers",
        "consumers",
        "discarded",
        "durable",
        "exclusive",
        "groups",
        "host",
        "low_water",
        "memory",
        "memory_limit",
        "name",
        "owner",
        "paged",
        "paged_bytes",
        "paged_counts",
        "paging",
        "parked",
        "pending_limit",
        "read_average",
    )

    def __init__(
        self,
        name: str,
        owner: str | None,
        host: QueueHost,
        *,
        exclusive: bool = False,
        durable: bool = False,
    ) -> None:
        self.name = name
        #: Store owner key, or None when nothing this queue holds is persisted.
        self.owner = owner
        self.host = host
        #: Every consumer is exclusive: one gets everything, the next takes over when
        #: it leaves (topic subscriptions; ActiveMQ's ``consumer.exclusive`` per consumer).
        self.exclusive = exclusive
        self.durable = durable
        #: Consuming consumers, by priority (highest first), then by arrival.
        self.consumers: list[Consumer] = []
        self.browsers: list[Consumer] = []
        #: Message group id -> the consumer that owns the group (JMSXGroupID).
        self.groups: dict[str, Consumer] = {}
        self._buckets: list[deque[Entry]] = [deque() for _ in range(PRIORITIES)]
        self._pending = 0
        #: Entries held (waiting on consumers or unmatched), in order of holding.
        self._held: dict[Entry, None] = {}
        self._unmatched: list[Entry] = []
        self._waiters: dict[Consumer, None] = {}
        #: The consumers that may receive now, as priority levels, each with its
        #: round-robin position.
        self._levels: list[list[Consumer]] = []
        self._active: set[Consumer] = set()
        self._rr: list[int] = []
        self._filtering = False
        #: The one consumer that may receive, when there is one and it has no filter.
        self._single: Consumer | None = None
        self._seq = 0
        self._dispatching = False
        #: Consumers whose drain is answered at the end of the next dispatch.
        self._drains: set[Consumer] = set()
        #: Most entries waiting before the oldest is discarded; -1: no limit. Set only for
        #: topic subscriptions delivered at most once (non-durable ones, MQTT QoS 0).
        self.pending_limit = -1
        #: Entries discarded past the limit, in all episodes / in the current one.
        self.discarded = 0
        self._episode = 0
        #: Bytes the entries queued in memory (pending and held) take, as
        #: ``ENTRY_OVERHEAD`` plus the body each.
        self.memory = 0
        self.memory_limit = DEFAULT_MEMORY_LIMIT
        self.low_water = int(DEFAULT_MEMORY_LIMIT * PAGE_IN_LOW_WATER)
        #: Ids of the persistent messages that are queued but only in the store, in send
        #: order: past the memory limit, every persistent message goes here (so none
        #: overtakes one paged before it) until the window has room again.
        self.paged: deque[str] = deque()
        #: The bodies of the paged messages add up to about this many bytes (how many
        #: fit the window is guessed from it).
        self.paged_bytes = 0
        #: The redelivery count of a paged message that has one other than what it was
        #: stored with (rare: a recovered message counted by an owner).
        self.paged_counts: dict[str, int] = {}
        #: Ids of paged-in messages no current consumer accepts, in order: left in the
        #: store rather than held in the window, so that they cannot fill it and stall
        #: the messages behind them (ActiveMQ's selector-over-a-full-page problem); back
        #: to the front of :attr:`paged` when the consumers change.
        self.parked: list[str] = []
        #: The average body size of the last batch paged in (0: none yet): what the next
        #: batch is sized by when the paged messages' sizes are not known (a checkpoint
        #: keeps none).
        self.read_average = 0
        #: A page-in is under way (at most one per queue).
        self.paging = False

    def __len__(self) -> int:
        return self._pending + len(self._held) + len(self.paged) + len(self.parked)

    def set_memory_limit(self, limit: int) -> None:
        """Keep at most ``limit`` bytes of queued entries in memory (the policy's)."""
        self.memory_limit = limit
        self.low_water = int(limit * PAGE_IN_LOW_WATER)

    def entries(self) -> Iterator[Entry]:
        """Every queued entry: pending ones by priority, then held ones."""
        for bucket in reversed(self._buckets):
            yield from bucket
        yield from list(self._held)

    def wake(self) -> None:
        """Have the host dispatch this queue in this tick, if anything can move in it."""
        # An ack on an empty queue (the usual case at light load) frees credit for
        # nothing, and a send to a queue nobody consumes has nobody to go to: no
        # dispatch step for those.
        if (self._pending and self._levels) or self._waiters or self.browsers or self._drains:
            self.host.wake(self)

    # ----------------------------------------------------------------- consumers

    def add_consumer(self, consumer: Consumer) -> None:
        """Attach ``consumer`` (a browser starts its walk over what is queued now)."""
        consumer.queue = self
        if consumer.browser:
            consumer._cursor = iter(list(self.entries()))
            self.browsers.append(consumer)
        else:
            # Stable: among equal priorities, arrival order.
            at = len(self.consumers)
            while at and self.consumers[at - 1].priority < consumer.priority:
                at -= 1
            self.consumers.insert(at, consumer)
            self._consumers_changed()
        self.wake()

    def forget_consumer(self, consumer: Consumer) -> None:
        """``consumer`` left: its message groups go to whoever gets their next message."""
        if consumer in self.browsers:
            self.browsers.remove(consumer)
            return
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if self.groups:
            for group in [g for g, owner in self.groups.items() if owner is consumer]:
                del self.groups[group]
        self._consumers_changed()
        self.wake()

    def _consumers_changed(self) -> None:
        """Recompute who may receive, and give every held entry a fresh chance."""
        consumers = self.consumers
        if self.exclusive:
            active = consumers[:1]
        else:
            exclusive = [c for c in consumers if c.exclusive]
            active = exclusive[:1] if exclusive else consumers
        levels: list[list[Consumer]] = []
        for consumer in active:
            if levels and levels[-1][0].priority == consumer.priority:
                levels[-1].append(consumer)
            else:
                levels.append([consumer])
        self._levels = levels
        self._active = set(active)
        self._rr = [0] * len(levels)
        self._filtering = any(c.filter is not None for c in active)
        self._single = active[0] if len(active) == 1 and not self._filtering else None
        self._release_held()

    def _release_held(self) -> None:
        if self.parked:
            # Before everything paged after them; a page-in under way sees a new deque.
            parked, self.parked = self.parked, []
            self.paged = deque(parked + list(self.paged))
            self.wake_pager()
        if not self._held:
            return
        held = [e for e in self._held if e.ticket is not None]
        for consumer in self._waiters:
            consumer._waiting.clear()
        self._waiters.clear()
        self._held.clear()
        self._unmatched.clear()
        by_bucket: dict[int, list[Entry]] = {}
        for entry in held:
            entry.ticket = None
            by_bucket.setdefault(_bucket(entry.message.priority), []).append(entry)
        for index, entries in by_bucket.items():
            entries.sort(key=_seq)
            bucket = self._buckets[index]
            merged = deque(heapq.merge(bucket, entries, key=_seq))
            self._buckets[index] = merged
            self._pending += len(entries)

    # ----------------------------------------------------------------- credit

    def pull(self, consumer: Consumer, count: int = 1, *, drain: bool = False) -> None:
        """A pull consumer (prefetch 0) asks for ``count`` more messages; with ``drain``,
        what cannot be served now is reported spent through ``on_drained``."""
        consumer.credit += max(0, count)
        if drain:
            consumer.draining = True
            self._drains.add(consumer)
        self.host.wake(self)  # even if empty: a drain is answered by the dispatch step

    def flow(self, consumer: Consumer, credit: int, *, drain: bool = False) -> None:
        """Set a pull consumer's credit (AMQP link credit is absolute); ``drain``: use it
        up now or report it spent."""
        consumer.credit = max(0, credit)
        consumer.draining = drain
        if drain:
            self._drains.add(consumer)
        else:
            self._drains.discard(consumer)
        self.host.wake(self)

    # ----------------------------------------------------------------- entries

    def enqueue(self, entry: Entry) -> None:
        limit = self.pending_limit
        if limit >= 0:
            size = self._pending + len(self._held)
            if size and size >= limit:
                self._discard_oldest()
        message = entry.message
        memory = self.memory + len(message.body) + ENTRY_OVERHEAD
        if (memory > self.memory_limit or self.paged) and self._pageable(entry):
            # Past the window: it stays only in the store (the caller has written it),
            # and is read back in its turn.
            self.paged.append(message.message_id)
            self.paged_bytes += len(message.body)
            if entry.redeliveries:
                self.paged_counts[message.message_id] = entry.redeliveries
            return
        self.memory = memory
        self._seq = seq = self._seq + 1
        entry.seq = seq
        priority = message.priority
        self._buckets[priority if 0 <= priority < PRIORITIES else _bucket(priority)].append(entry)
        self._pending += 1

    def _pageable(self, entry: Entry) -> bool:
        """Whether ``entry`` may be left in the store only: a persistent message of a queue
        the store holds messages for, not one bounded by a pending limit instead, not a
        retained copy (which the store holds as the topic's, not as this owner's)."""
        return (
            entry.message.persistent
            and self.owner is not None
            and self.pending_limit < 0
            and not entry.retained
        )

    def page_recovered(self, message_id: str, size: int, redeliveries: int | None) -> None:
        """A message recovered without its body (``size`` bytes): queued in the store only,
        after those recovered before it; ``redeliveries``: its owner's persisted count."""
        self.paged.append(message_id)
        self.paged_bytes += size
        if redeliveries is not None:
            self.paged_counts[message_id] = redeliveries

    def paged_in(self, entries: list[Entry]) -> None:
        """Entries read back from the store, oldest first, whose ids were at the front of
        :attr:`paged` (the caller has taken them off): into the window, dispatched like
        any other."""
        buckets = self._buckets
        read = 0
        for entry in entries:
            message = entry.message
            size = len(message.body)
            read += size
            self.paged_bytes -= size
            self.memory += size + ENTRY_OVERHEAD
            self._seq = entry.seq = self._seq + 1
            buckets[_bucket(message.priority)].append(entry)
        self._pending += len(entries)
        if entries:
            self.read_average = read // len(entries)
        if not self.paged or self.paged_bytes < 0:
            self.paged_bytes = 0
        self.wake()

    def page_size(self, most: int) -> int:
        """How many paged messages to read back next: what fits the window's room by
        their average size, at least one, at most ``most``."""
        count = len(self.paged)
        if not count:
            return 0
        known = max(0, self.paged_bytes) // count
        if not known and not self.read_average:
            # Nothing known of their sizes: a few first, then by what those weighed.
            return min(most, count, FIRST_PAGE)
        average = max(known, self.read_average) + ENTRY_OVERHEAD
        return max(1, min(most, count, (self.memory_limit - self.memory) // average))

    def wake_pager(self) -> None:
        """Have the host page in if messages wait in the store only and the window is
        below its low-water mark."""
        if self.paged and not self.paging and self.memory < self.low_water:
            self.host.page_in(self)

    def _left(self, entry: Entry) -> None:
        """``entry`` left the window (delivered, expired, discarded): its memory is free."""
        self.memory -= len(entry.message.body) + ENTRY_OVERHEAD

    def _discard_oldest(self) -> None:
        """Make room past the pending limit: drop the oldest entry of the lowest priority
        (ActiveMQ's ``OldestMessageWithLowestPriorityEvictionStrategy``)."""
        for bucket in self._buckets:
            if bucket:
                entry = bucket.popleft()
                self._pending -= 1
                break
        else:
            entry = next(iter(self._held))
            self._unhold(entry)
        self._left(entry)
        if self.owner is not None:
            # A durable subscription at most once (MQTT QoS 0): settle its stored copy.
            self.host.entry_consumed(entry)
        self.discarded += 1
        self._episode += 1
        if self._episode == 1:
            self.host.discarding(self, 0)

    def end_discard_episode(self) -> None:
        """The consumer caught up or left: report how many this episode discarded."""
        if self._episode:
            episode, self._episode = self._episode, 0
            self.host.discarding(self, episode)

    def requeue_front(self, entries: list[Entry]) -> None:
        """Put entries back ahead of everything of their priority, keeping their order."""
        for entry in reversed(entries):
            entry.ticket = None
            self._buckets[_bucket(entry.message.priority)].appendleft(entry)
            self._pending += 1
            self.memory += len(entry.message.body) + ENTRY_OVERHEAD
        self.wake()

    def drain(self) -> list[Entry]:
        taken = list(self.entries())
        for bucket in self._buckets:
            bucket.clear()
        self._pending = 0
        for entry in self._held:
            entry.ticket = None
        self._held.clear()
        self._unmatched.clear()
        for consumer in self._waiters:
            consumer._waiting.clear()
        self._waiters.clear()
        self.memory = 0
        # A new deque: a page-in under way sees that what it read is no longer wanted.
        self.paged = deque()
        self.paged_bytes = 0
        self.paged_counts.clear()
        self.parked = []
        return taken

    def remove_expired(self, now_ms: int) -> None:
        for index, bucket in enumerate(self._buckets):
            if not bucket:
                continue
            alive = deque(e for e in bucket if not e.message.expired(now_ms))
            if len(alive) != len(bucket):
                self._buckets[index] = alive
                for entry in bucket:
                    if entry.message.expired(now_ms):
                        self._pending -= 1
                        self._left(entry)
                        self.host.entry_expired(entry)
        for entry in [e for e in self._held if e.message.expired(now_ms)]:
            self._unhold(entry)
            self._left(entry)
            self.host.entry_expired(entry)
        self.wake_pager()

    def _hold(self, entry: Entry, on: list[Consumer] | None) -> None:
        """Keep ``entry`` aside: for the consumers ``on`` (who accept it but have no credit),
        or, with None, until the consumers change (nobody accepts it)."""
        if on is None and self.paged and entry.excluded is None and self._pageable(entry):
            # Nobody wants it and more waits in the store: park it there, not in the window.
            self._left(entry)
            message = entry.message
            self.parked.append(message.message_id)
            self.paged_bytes += len(message.body)
            if entry.redeliveries:
                self.paged_counts[message.message_id] = entry.redeliveries
            return
        ticket = object()
        entry.ticket = ticket
        self._held[entry] = None
        if on is None:
            self._unmatched.append(entry)
            return
        for consumer in on:
            consumer._waiting.append((ticket, entry))
            self._waiters[consumer] = None

    def _unhold(self, entry: Entry) -> None:
        entry.ticket = None
        self._held.pop(entry, None)

    # ----------------------------------------------------------------- dispatch

    def dispatch(self, now_ms: int, limit: int = -1) -> bool:
        """Hand entries to consumers while any has credit; at most ``limit`` (-1: no limit).

        Returns True when it stopped at the limit with more to do (call again)."""
        if self._dispatching:
            # Called from inside a delivery: the tick dispatches again.
            self.wake()
            return False
        self._dispatching = True
        try:
            budget = limit
            if self._waiters:
                budget = self._serve_waiters(now_ms, budget)
            if budget and self._pending and self._levels:
                budget = self._serve_pending(now_ms, budget)
            if self.browsers:
                self._serve_browsers(now_ms)
        finally:
            self._dispatching = False
        if budget == 0:
            return True
        if self._drains:
            for consumer in list(self._drains):
                if consumer.closed or (consumer.browser and consumer._cursor is None):
                    self._drains.discard(consumer)
                elif not consumer.paused and not consumer.browser:
                    self._drained(consumer)
        if self._episode and not self._pending:
            self.end_discard_episode()
        if self.paged and not self.paging and self.memory < self.low_water:
            self.host.page_in(self)
        return False

    def _serve_waiters(self, now_ms: int, budget: int) -> int:
        for consumer in list(self._waiters):
            waiting = consumer._waiting
            while waiting and budget and consumer.has_credit:
                ticket, entry = waiting.popleft()
                if entry.ticket is not ticket:
                    continue  # gone elsewhere since
                self._unhold(entry)
                self._left(entry)
                if entry.message.expiration and entry.message.expired(now_ms):
                    self.host.entry_expired(entry)
                    continue
                self._deliver(consumer, entry)
                budget -= 1
            if not waiting:
                self._waiters.pop(consumer, None)
        return budget

    def _serve_pending(self, now_ms: int, budget: int) -> int:
        buckets = self._buckets
        host = self.host
        while self._pending and budget:
            # Highest priority first.
            for bucket in reversed(buckets):
                if bucket:
                    break
            entry = bucket[0]
            message = entry.message
            if message.expiration and message.expired(now_ms):
                bucket.popleft()
                self._pending -= 1
                self._left(entry)
                host.entry_expired(entry)
                continue
            consumer = self._single
            if consumer is not None and message.group_id is None and entry.excluded is None:
                # The common case, one consumer and nothing to choose: no placing.
                if not consumer.has_credit:
                    break
            else:
                target = self._place(entry)
                if target is _STOP:
                    break
                consumer = target if isinstance(target, Consumer) else None
            bucket.popleft()
            self._pending -= 1
            if consumer is None:
                continue  # held
            self.memory -= len(message.body) + ENTRY_OVERHEAD
            # Deliver (``_deliver``, inlined: this loop is the broker's hottest).
            if consumer.prefetch == 0:
                consumer.credit -= 1
            if consumer.ack_mode is AckMode.AUTO:
                consumer.sink.deliver(consumer, entry)
                host.entry_consumed(entry)
            else:
                consumer.in_flight[message.message_id] = entry
                consumer.sink.deliver(consumer, entry)
            budget -= 1
            if not self._levels:
                break  # a delivery closed the last consumer
        return budget

    def _place(self, entry: Entry) -> object:
        """The consumer ``entry`` goes to now; None once it is held; ``_STOP`` when no
        consumer has credit (it stays at the head, nothing behind it can go either)."""
        group = entry.message.group_id
        if group is not None:
            owner = self.groups.get(group)
            if owner is not None and owner in self._active:
                if owner.accepts(entry):
                    if owner.has_credit:
                        if entry.message.group_seq == -1:
                            del self.groups[group]  # JMSXGroupSeq -1 closes the group
                        return owner
                    if not self._anyone_has_credit():
                        return _STOP
                    # The group waits for its owner; other groups go on.
                    self._hold(entry, [owner])
                    return None
                group = None  # one its owner refuses goes elsewhere; the group stays
        if not self._filtering and entry.excluded is None:
            chosen = self._next_with_credit()
            if chosen is None:
                return _STOP
        else:
            found = self._next_accepting(entry)
            if not isinstance(found, Consumer):
                return found
            chosen = found
        if group is not None and entry.message.group_seq != -1:
            self.groups[group] = chosen
        return chosen

    def _next_with_credit(self) -> Consumer | None:
        levels = self._levels
        for index, level in enumerate(levels):
            n = len(level)
            if n == 1:
                if level[0].has_credit:
                    return level[0]
                continue
            start = self._rr[index]
            for i in range(n):
                candidate = level[(start + i) % n]
                if candidate.has_credit:
                    self._rr[index] = (start + i + 1) % n
                    return candidate
        return None

    def _next_accepting(self, entry: Entry) -> object:
        """Like ``_next_with_credit`` among the consumers that accept ``entry``; holds
        ``entry`` when those that accept it have no credit, or when none does."""
        accepting: list[Consumer] = []
        credit = False
        for index, level in enumerate(self._levels):
            n = len(level)
            start = self._rr[index]
            for i in range(n):
                candidate = level[(start + i) % n]
                has_credit = candidate.has_credit
                credit = credit or has_credit
                if candidate.accepts(entry):
                    if has_credit:
                        self._rr[index] = (start + i + 1) % n
                        return candidate
                    accepting.append(candidate)
        if not credit:
            return _STOP
        self._hold(entry, accepting or None)
        return None

    def _anyone_has_credit(self) -> bool:
        return any(c.has_credit for level in self._levels for c in level)

    def _deliver(self, consumer: Consumer, entry: Entry) -> None:
        if consumer.prefetch == 0:
            consumer.credit -= 1
        if consumer.ack_mode is AckMode.AUTO:
            consumer.sink.deliver(consumer, entry)
            self.host.entry_consumed(entry)
        else:
            consumer.in_flight[entry.message.message_id] = entry
            consumer.sink.deliver(consumer, entry)

    def _drained(self, consumer: Consumer) -> None:
        """Dispatch is done and ``consumer`` asked to drain: what credit is left is spent."""
        self._drains.discard(consumer)
        consumer.draining = False
        consumer.credit = 0
        if consumer.on_drained is not None:
            consumer.on_drained(consumer)

    def _serve_browsers(self, now_ms: int) -> None:
        for browser in list(self.browsers):
            cursor = browser._cursor
            if cursor is None:
                continue
            while browser.has_credit:
                entry = next(cursor, None)
                if entry is None:
                    browser._cursor = None
                    if browser.on_browse_end is not None:
                        browser.on_browse_end(browser)
                    break
                if entry.message.expired(now_ms) or not browser.accepts(entry):
                    continue
                if browser.prefetch == 0:
                    browser.credit -= 1
                browser.sink.deliver(browser, entry)
            if browser.draining and browser._cursor is not None:
                self._drained(browser)


def _seq(entry: Entry) -> int:
    return entry.seq


def _bucket(priority: int) -> int:
    if priority < 0:
        return 0
    if priority >= PRIORITIES:
        return PRIORITIES - 1
    return priority
