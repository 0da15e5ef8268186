"""The liveness index: what it costs per live message, and that its packed places and
interned owners come back as written (``index.py``)."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

import sealmq.store.index
from sealmq.core.ports import RemoveMessage, SetDeliveryCount
from sealmq.store.index import LiveIndex, MessageAdded

#: Bytes the index may spend per live single-owner message besides its id string
#: (measured: about 75; the object-per-message index it replaced took about 200).
BYTES_PER_MESSAGE = 100
COUNT = 100_000


def test_a_live_single_owner_message_costs_under_100_bytes_besides_its_id() -> None:
    ids = [f"ID:sealmq-9a9e671c-{i}" for i in range(COUNT)]
    owners = ("queue:orders",)
    ops = [MessageAdded(mid, owners, 1024) for mid in ids]
    index = LiveIndex()
    index.apply(1, [MessageAdded("ID:other", ("queue:first",), 1)])  # owner set number 1 next
    tracemalloc.start()
    try:
        for i in range(0, COUNT, 10):
            segment = 1 + i // 20_000
            index.apply(segment, ops[i : i + 10], (i % 20_000) * 1100, 1 + i // 10)
        # Only what the index's own code holds: threads other tests left running in
        # this process allocate too, and the traced total would count theirs.
        held = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, sealmq.store.index.__file__)]
        )
        used = sum(stat.size for stat in held.statistics("filename"))
    finally:
        tracemalloc.stop()
    per_message = used / COUNT
    assert per_message < BYTES_PER_MESSAGE, per_message
    # With its own id string (after a restart; while serving the core shares it).
    assert per_message + sys.getsizeof(ids[0]) < 150


def test_places_owners_and_counts_come_back_as_written() -> None:
    index = LiveIndex()
    big = (1 << 31) + 12345
    index.apply(7, [MessageAdded("a", ("q:1", "q:2", "q:1"), 10)], big, (1 << 27) + 3)
    index.apply(8, [MessageAdded("b", ("q:1",), 10), MessageAdded("c", ("q:2",), 1)], 40, 2)
    ref = index.ref("a")
    assert ref is not None
    assert (ref.segment, ref.offset, ref.record, ref.entry) == (7, big, (1 << 27) + 3, 0)
    assert ref.owners == ("q:1", "q:2")
    ref_c = index.ref("c")
    assert ref_c is not None and (ref_c.segment, ref_c.offset, ref_c.entry) == (8, 40, 1)
    index.apply(9, [SetDeliveryCount("a", "q:2", 4), SetDeliveryCount("a", "q:9", 1)])
    assert index.counts == {"a": {"q:2": (4, 9)}}
    index.apply(9, [RemoveMessage("a", "q:1")])
    ref = index.ref("a")
    assert ref is not None and ref.owners == ("q:2",) and ref.segment == 7
    assert ref.counts == {"q:2": (4, 9)}
    # The same owner tuple is shared, not copied per message.
    ref_b = index.ref("b")
    assert ref_b is not None and index.owners_of(index.messages["b"]) is ref_b.owners
    index.apply(9, [RemoveMessage("a", "q:2")])
    assert index.ref("a") is None and "a" not in index.counts
    assert index.live_count(7) == 0 and index.live_count(9) == 0
    assert index.drop_owner("q:1") == ["b"] and set(index.messages) == {"c"}


def test_a_place_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        LiveIndex().apply(1, [MessageAdded("a", ("q",), 1)], 1 << 32, 1)
