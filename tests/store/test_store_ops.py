"""The store operations of Core v2 over every store flavour: delivery counts, destinations,
scheduled jobs and prepared transactions.

Each recovers as the memory store (the reference model) holds it, across restarts,
compaction, key rotation and segment deletion.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmq.core.model import Destination, DestinationInfo, DestinationKind
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddScheduled,
    ForgetPrepared,
    Op,
    PrepareTransaction,
    RemoveDestination,
    RemoveMessage,
    RemoveScheduled,
    RemoveSubscription,
    ScheduledJob,
    SetDeliveryCount,
)
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.store.conftest import (
    FakeKeyProvider,
    full_message,
    make_message,
    message_fields,
    op_view,
    state_view,
)
from tests.store.test_filestore import BROKER, OWNERS, SUB_INFO, Flavour, _ops, flavour

__all__ = ["flavour"]  # the fixture, imported to be used here

Q = "queue:orders"


@pytest.mark.asyncio
async def test_the_latest_delivery_count_per_owner_is_recovered(flavour: Flavour) -> None:
    store = flavour.open()
    sub = SUB_INFO.key
    await store.write([AddMessage(make_message(1), (Q, sub)), AddMessage(make_message(2), (Q,))])
    await store.write([SetDeliveryCount("ID:test-1", Q, 1)])
    await store.write([SetDeliveryCount("ID:test-1", Q, 2), SetDeliveryCount("ID:test-1", sub, 5)])
    # Ignored: an owner not holding the message, and a message nobody holds.
    await store.write([SetDeliveryCount("ID:test-2", sub, 9), SetDeliveryCount("ID:gone", Q, 9)])
    state = await flavour.restart()
    assert [(s.message.message_id, s.delivery_counts) for s in state.messages] == [
        ("ID:test-1", {Q: 2, sub: 5}),
        ("ID:test-2", {}),
    ]
    # An owner letting the message go takes its count along; a new reference starts afresh.
    await flavour.store.write([RemoveMessage("ID:test-1", sub)])  # type: ignore[union-attr]
    state = await flavour.restart()
    assert state.messages[0].delivery_counts == {Q: 2}


@pytest.mark.asyncio
async def test_a_removed_subscription_takes_its_counts(flavour: Flavour) -> None:
    store = flavour.open()
    sub = SUB_INFO.key
    await store.write(
        [AddMessage(make_message(1), (Q, sub)), SetDeliveryCount("ID:test-1", sub, 3)]
    )
    await store.write([RemoveSubscription(SUB_INFO.client_id, SUB_INFO.name)])
    state = await flavour.restart()
    assert [(s.owners, s.delivery_counts) for s in state.messages] == [([Q], {})]


@pytest.mark.asyncio
async def test_destinations_are_added_replaced_and_removed(flavour: Flavour) -> None:
    store = flavour.open()
    a, b = Destination.queue("a"), Destination.queue("b")
    t = Destination(DestinationKind.TOPIC, "a")  # same name, other kind: another destination
    await store.write([AddDestination(DestinationInfo(b)), AddDestination(DestinationInfo(a))])
    await store.write([AddDestination(DestinationInfo(t, b"\x01")), RemoveDestination(b)])
    await store.write([AddDestination(DestinationInfo(a, b"policy-2"))])
    state = await flavour.restart()
    assert state.destinations == [DestinationInfo(a, b"policy-2"), DestinationInfo(t, b"\x01")]


@pytest.mark.asyncio
async def test_scheduled_jobs_are_kept_replaced_and_removed(flavour: Flavour) -> None:
    store = flavour.open()
    later = ScheduledJob("job-b", full_message("b"), b"delay=60000")
    await store.write([AddScheduled(ScheduledJob("job-a", make_message(1), b"delay=5"))])
    await store.write([AddScheduled(later), AddScheduled(ScheduledJob("job-a", make_message(2)))])
    await store.write(
        [AddScheduled(ScheduledJob("job-c", make_message(3))), RemoveScheduled("job-c")]
    )
    state = await flavour.restart()
    assert [(j.job_id, j.message.message_id, j.schedule) for j in state.scheduled] == [
        ("job-a", "ID:test-2", b""),
        ("job-b", "ID:b-id", b"delay=60000"),
    ]
    assert message_fields(state.scheduled[1].message) == message_fields(later.message)
    assert state.messages == []  # a scheduled message is no queue's yet


@pytest.mark.asyncio
async def test_prepared_transactions_wait_unapplied_until_forgotten(flavour: Flavour) -> None:
    store = flavour.open()
    await store.write([AddMessage(make_message(1), (Q,))])
    ops: tuple[Op, ...] = (AddMessage(full_message("tx"), (Q,)), RemoveMessage("ID:test-1", Q))
    await store.write([PrepareTransaction(b"\x01xid-1", ops)])
    await store.write([PrepareTransaction(b"xid-2", ()), ForgetPrepared(b"xid-2")])
    state = await flavour.restart()
    # Prepared, not applied: message 1 is still held, the transaction's message not yet.
    assert [s.message.message_id for s in state.messages] == ["ID:test-1"]
    assert list(state.prepared) == [b"\x01xid-1"]
    assert [op_view(op) for op in state.prepared[b"\x01xid-1"]] == [op_view(op) for op in ops]
    # A commit: the ops themselves, and the transaction forgotten, in one record.
    await flavour.store.write([ForgetPrepared(b"\x01xid-1"), *ops])  # type: ignore[union-attr]
    state = await flavour.restart()
    assert state.prepared == {}
    assert [s.message.message_id for s in state.messages] == ["ID:tx-id"]


@pytest.mark.asyncio
async def test_counts_and_destinations_survive_compaction(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    store = FileStore(tmp_path, keys, BROKER, segment_size=1 << 20)
    store.recover()
    journal = store.journal
    await store.write([AddDestination(DestinationInfo(Destination.queue("orders")))])
    await store.write([AddMessage(make_message(1), (Q,)), AddMessage(make_message(2), (Q,))])
    await store.write([AddScheduled(ScheduledJob("j", make_message(3), b"s"))])
    await store.write([PrepareTransaction(b"x", (RemoveMessage("ID:test-1", Q),))])
    await journal.call_in_writer(journal.rotate)
    await store.write([SetDeliveryCount("ID:test-1", Q, 4)])
    await journal.call_in_writer(journal.rotate)
    await store.write([RemoveMessage("ID:test-2", Q)])
    # Segment 1 (the destination, the message) is re-stated first, then segment 2 (the
    # count): recovery must not meet the count before its message once both are gone.
    assert await store.compact() == [1, 2]
    assert journal.segments == [3]
    await store.close()
    store = FileStore(tmp_path, keys, BROKER)
    state = store.recover()
    await store.close()
    assert [(s.message.message_id, s.delivery_counts) for s in state.messages] == [
        ("ID:test-1", {Q: 4})
    ]
    assert state.destinations == [DestinationInfo(Destination.queue("orders"))]
    assert [(j.job_id, j.message.message_id) for j in state.scheduled] == [("j", "ID:test-3")]
    assert state.prepared == {b"x": (RemoveMessage("ID:test-1", Q),)}


DESTINATIONS = [Destination.queue("a"), Destination.queue("b"), Destination.topic("a")]
JOBS = ["job-1", "job-2"]
XIDS = [b"x1", b"\x00x2"]
_new_ops = st.one_of(
    _ops,
    st.builds(
        lambda i, owner, n: SetDeliveryCount(f"ID:test-{i}", owner, n),
        st.integers(0, 6),
        st.sampled_from(OWNERS),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        lambda d, options: AddDestination(DestinationInfo(d, options)),
        st.sampled_from(DESTINATIONS),
        st.binary(max_size=4),
    ),
    st.builds(RemoveDestination, st.sampled_from(DESTINATIONS)),
    st.builds(
        lambda job, i: AddScheduled(ScheduledJob(job, make_message(i), job.encode())),
        st.sampled_from(JOBS),
        st.integers(0, 6),
    ),
    st.builds(RemoveScheduled, st.sampled_from(JOBS)),
    st.builds(
        lambda xid, i, owner: PrepareTransaction(
            xid, (AddMessage(make_message(i), (owner,)), RemoveMessage(f"ID:test-{i}", owner))
        ),
        st.sampled_from(XIDS),
        st.integers(0, 6),
        st.sampled_from(OWNERS),
    ),
    st.builds(ForgetPrepared, st.sampled_from(XIDS)),
)
_steps = st.lists(
    st.one_of(st.lists(_new_ops, min_size=1, max_size=3), st.sampled_from(["restart", "compact"])),
    max_size=25,
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, segment_size=st.sampled_from([1, 300, 4096]))
def test_file_store_recovers_what_the_model_holds_with_the_new_ops(
    steps: list[list[Op] | str], segment_size: int
) -> None:
    async def run(root: Path) -> None:
        keys = FakeKeyProvider()
        model = MemoryStore()
        store = FileStore(root, keys, BROKER, segment_size=segment_size)
        store.recover()
        try:
            for step in steps:
                if step == "restart":
                    await store.close()
                    store = FileStore(root, keys, BROKER, segment_size=segment_size)
                    assert state_view(store.recover()) == state_view(model.snapshot())
                elif step == "compact":
                    await store.compact()
                else:
                    assert isinstance(step, list)
                    await model.write(step)
                    await store.write(step)
            await store.close()
            store = FileStore(root, keys, BROKER, segment_size=segment_size)
            assert state_view(store.recover()) == state_view(model.snapshot())
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))
