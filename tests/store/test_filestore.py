"""The MessageStore contract over every flavour, and the file store's durability."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmq.core.model import (
    Destination,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
    durable_key,
    queue_key,
)
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    MessageStore,
    Op,
    RecoveredState,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
)
from sealmq.kms.local import LocalKeyService
from sealmq.store.errors import (
    CorruptRecordError,
    KeyUnavailableError,
    MessageNotFoundError,
    StoreClosedError,
    StoreError,
    StoreLockedError,
)
from sealmq.store.filestore import FileStore
from sealmq.store.memory import MemoryStore
from tests.store.conftest import (
    FakeClock,
    FakeKeyProvider,
    all_files,
    full_message,
    make_message,
    message_fields,
    state_view,
)

BROKER = "broker-1"
Q = queue_key("orders")
Q2 = queue_key("audit")
SUB = durable_key("client-1", "sub-1")
SUB_INFO = DurableSubscriptionInfo("client-1", "sub-1", Destination.topic("prices.>"), "x > 1")
REPO = Path(__file__).resolve().parents[2]


class Flavour:
    """Opens a store and says what a restart would recover."""

    def __init__(self, name: str, root: Path, keys: Any, **options: Any) -> None:
        self.name = name
        self.root = root
        self.keys = keys
        self.options = options
        self.store: MessageStore | None = None

    def open(self) -> MessageStore:
        if self.name == "memory":
            self.store = MemoryStore()
        else:
            self.store = FileStore(self.root, self.keys, BROKER, **self.options)
        self.store.recover()
        return self.store

    async def restart(self) -> RecoveredState:
        assert self.store is not None
        if isinstance(self.store, MemoryStore):
            return self.store.snapshot()
        await self.store.close()
        self.store = FileStore(self.root, self.keys, BROKER, **self.options)
        return self.store.recover()


@pytest_asyncio.fixture(params=["memory", "file"])
async def flavour(
    request: pytest.FixtureRequest, tmp_path: Path, fake_keys: FakeKeyProvider
) -> AsyncIterator[Flavour]:
    f = Flavour(request.param, tmp_path / "data", fake_keys, segment_size=2048)
    yield f
    if f.store is not None:
        await f.store.close()


def ids(state: RecoveredState) -> list[str]:
    return [s.message.message_id for s in state.messages]


async def write_each(store: MessageStore, ops: Sequence[Op]) -> None:
    for op in ops:
        await store.write([op])


# -- every flavour ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_messages_come_back_in_send_order_with_their_owners(flavour: Flavour) -> None:
    store = flavour.open()
    await store.write([AddMessage(make_message(i), (Q,)) for i in range(5)])
    await store.write([AddMessage(make_message(5), (Q, SUB, Q))])  # a duplicate owner counts once
    await store.write([RemoveMessage("ID:test-1", Q), RemoveMessage("ID:test-5", Q)])
    await store.write([RemoveMessage("ID:unknown", Q), RemoveMessage("ID:test-2", "queue:other")])
    state = await flavour.restart()
    assert ids(state) == ["ID:test-0", "ID:test-2", "ID:test-3", "ID:test-4", "ID:test-5"]
    assert state.messages[-1].owners == [SUB]
    assert all(s.owners == [Q] for s in state.messages[:-1])


@pytest.mark.asyncio
async def test_every_message_field_survives(flavour: Flavour) -> None:
    store = flavour.open()
    m = full_message("all")
    await store.write([AddMessage(m, (Q,))])
    [stored] = (await flavour.restart()).messages
    expected = message_fields(m)
    assert message_fields(stored.message) == expected
    if flavour.name == "file":
        assert stored.message.origin is None


@pytest.mark.asyncio
async def test_removing_a_subscription_drops_its_references(flavour: Flavour) -> None:
    store = flavour.open()
    await store.write([AddSubscription(SUB_INFO)])
    await store.write([AddMessage(make_message(1), (SUB,)), AddMessage(make_message(2), (SUB, Q))])
    await store.write([RemoveSubscription("client-1", "sub-1")])
    await store.write([AddSubscription(SUB_INFO)])  # re-created: old messages stay gone
    state = await flavour.restart()
    assert ids(state) == ["ID:test-2"] and state.messages[0].owners == [Q]
    assert state.subscriptions == [SUB_INFO]


@pytest.mark.asyncio
async def test_a_batch_is_one_unit(flavour: Flavour) -> None:
    store = flavour.open()
    fut = store.write(
        [AddSubscription(SUB_INFO), AddMessage(make_message(1), (SUB,)), RemoveMessage("x", Q)]
    )
    assert isinstance(fut, asyncio.Future)
    await fut
    state = await flavour.restart()
    assert ids(state) == ["ID:test-1"] and len(state.subscriptions) == 1


@pytest.mark.asyncio
async def test_one_retained_message_per_topic_replaced_or_cleared(flavour: Flavour) -> None:
    store = flavour.open()
    r1, r2 = make_message(1, annotations={"mqtt": b"\x05"}), full_message("retained")
    await store.write([SetRetained("b/x", r1), SetRetained("a/y", make_message(3))])
    await store.write([SetRetained("b/x", r2)])  # replaces r1
    await store.write([SetRetained("a/y", None), SetRetained("c/z", None)])  # clears; no-op
    await store.write([SetRetained("d/w", make_message(4)), SetRetained("d/w", None)])
    state = await flavour.restart()
    assert [message_fields(m) for m in state.retained] == [message_fields(r2)]
    assert state.messages == [] and state.sessions == {}
    assert flavour.store is not None
    await flavour.store.write([SetRetained("a/y", make_message(5))])
    state = await flavour.restart()
    # Sorted by topic.
    assert [m.message_id for m in state.retained] == ["ID:test-5", "ID:retained-id"]


@pytest.mark.asyncio
async def test_session_state_last_write_wins_and_none_deletes(flavour: Flavour) -> None:
    store = flavour.open()
    await store.write([SetSessionState("mqtt:a", b"one"), SetSessionState("mqtt:b", b"\x00")])
    await store.write([SetSessionState("mqtt:a", b"two"), SetSessionState("mqtt:c", b"")])
    await store.write([SetSessionState("mqtt:b", None), SetSessionState("mqtt:none", None)])
    state = await flavour.restart()
    assert state.sessions == {"mqtt:a": b"two", "mqtt:c": b""}
    assert state.retained == [] and state.messages == []


@pytest.mark.asyncio
async def test_subscription_options_survive(flavour: Flavour) -> None:
    store = flavour.open()
    mqtt = DurableSubscriptionInfo(
        "mqtt-c", "a/+", Destination.topic("a.*"), None, True, b"\x02\x01opts"
    )
    await store.write([AddSubscription(SUB_INFO), AddSubscription(mqtt)])
    state = await flavour.restart()
    assert sorted(state.subscriptions, key=lambda i: i.key) == sorted(
        [SUB_INFO, mqtt], key=lambda i: i.key
    )
    changed = DurableSubscriptionInfo("mqtt-c", "a/+", Destination.topic("a.*"), options=b"new")
    assert flavour.store is not None
    await flavour.store.write([AddSubscription(changed)])
    state = await flavour.restart()
    assert changed in state.subscriptions and mqtt not in state.subscriptions


@pytest.mark.asyncio
async def test_messages_are_read_back_by_id_in_the_order_asked(flavour: Flavour) -> None:
    store = flavour.open()
    await store.write([AddMessage(make_message(i), (Q,)) for i in range(4)])
    await store.write([RemoveSubscription("c", "s"), AddMessage(full_message("all"), (Q, SUB))])
    await store.write([RemoveMessage("ID:test-1", Q)])
    if isinstance(store, FileStore):
        await store.flush()
    wanted = ["ID:test-3", "ID:all-id", "ID:test-0", "ID:test-3"]
    got = store.read_messages(wanted)
    assert [m.message_id for m in got] == wanted
    assert message_fields(got[1]) == message_fields(full_message("all"))
    assert got[0].body == b"body 3"
    with pytest.raises(MessageNotFoundError):
        store.read_messages(["ID:test-1"])  # acknowledged by its only owner
    with pytest.raises(MessageNotFoundError):
        store.read_messages(["ID:never"])
    await flavour.restart()
    assert flavour.store is not None
    got = flavour.store.read_messages(["ID:test-0", "ID:test-2", "ID:all-id"])
    assert [m.body for m in got[:2]] == [b"body 0", b"body 2"]


@pytest.mark.asyncio
async def test_write_after_close_fails(flavour: Flavour) -> None:
    store = flavour.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.write([AddMessage(make_message(1), (Q,))])
    flavour.store = None


# -- differential: the file store recovers what the memory model holds -----------------------

OWNERS = [Q, Q2, SUB, durable_key("client-1", "sub-2")]
SUBS = [
    SUB_INFO,
    DurableSubscriptionInfo("client-1", "sub-2", Destination.topic("t")),
    DurableSubscriptionInfo("client-1", "sub-2", Destination.topic("t"), options=b"\x01"),
]
TOPICS = ["a/b", "a/c", "d"]
SESSION_KEYS = ["mqtt:1", "mqtt:2", "mqtt:3"]
_ops = st.one_of(
    st.builds(
        lambda i, owners: AddMessage(make_message(i), tuple(owners)),
        st.integers(0, 6),
        st.lists(st.sampled_from(OWNERS), max_size=3),
    ),
    st.builds(
        lambda i, owner: RemoveMessage(f"ID:test-{i}", owner),
        st.integers(0, 6),
        st.sampled_from(OWNERS),
    ),
    st.builds(AddSubscription, st.sampled_from(SUBS)),
    st.builds(lambda s: RemoveSubscription(s.client_id, s.name), st.sampled_from(SUBS)),
    st.builds(
        lambda topic, i: SetRetained(
            topic, None if i is None else make_message(i, annotations={"mqtt": b"\x04"})
        ),
        st.sampled_from(TOPICS),
        st.none() | st.integers(0, 6),
    ),
    st.builds(
        SetSessionState,
        st.sampled_from(SESSION_KEYS),
        st.none() | st.binary(max_size=8),
    ),
)
_steps = st.lists(
    st.one_of(st.lists(_ops, min_size=1, max_size=3), st.sampled_from(["restart", "compact"])),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, segment_size=st.sampled_from([1, 300, 4096]))
def test_file_store_recovers_what_the_model_holds(
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


# -- file store ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def open_store(data_dir: Path, keys: Any, **kw: Any) -> FileStore:
    return FileStore(data_dir, keys, BROKER, **kw)


@pytest.mark.asyncio
async def test_one_broker_per_folder_with_a_rising_fencing_token(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    first = open_store(data_dir, fake_keys)
    with pytest.raises(StoreLockedError):
        open_store(data_dir, fake_keys)
    first.recover()
    await first.close()
    second = open_store(data_dir, fake_keys)
    assert second.fencing_token == first.fencing_token + 1
    await second.close()
    assert stat.S_IMODE((data_dir / "lock").stat().st_mode) == 0o600


@pytest.mark.asyncio
async def test_folders_and_files_are_private(data_dir: Path, fake_keys: FakeKeyProvider) -> None:
    store = open_store(data_dir, fake_keys, segment_size=1)
    store.recover()
    await write_each(store, [AddMessage(make_message(i), (Q,)) for i in range(3)])
    await store.close()
    for path in [data_dir, *(p for p in data_dir.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    files = list(all_files(data_dir))
    assert len(files) == 5  # lock, 3 segments, the confirmed record
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.asyncio
async def test_use_before_recover_is_refused(data_dir: Path, fake_keys: FakeKeyProvider) -> None:
    store = open_store(data_dir, fake_keys)
    with pytest.raises(StoreError, match="recover"):
        await store.write([AddMessage(make_message(1), (Q,))])
    store.recover()
    with pytest.raises(StoreError):
        store.recover()
    await store.close()


@pytest.mark.asyncio
async def test_unstorable_ops_fail_their_future_only(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    with pytest.raises(StoreError):
        await store.write([AddMessage(make_message(1, priority=2**40), (Q,))])
    await store.write([AddMessage(make_message(2), (Q,))])
    await store.close()
    store = open_store(data_dir, fake_keys)
    assert ids(store.recover()) == ["ID:test-2"]
    await store.close()


@pytest.mark.asyncio
async def test_recovery_after_a_crash_without_close(
    data_dir: Path, tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=1024)
    store.recover()
    await asyncio.gather(*(store.write([AddMessage(make_message(i), (Q,))]) for i in range(40)))
    await store.write([RemoveMessage("ID:test-0", Q)])
    # The disk as it is right now, lock file and all, as a successor would find it.
    crashed = tmp_path / "crashed"
    shutil.copytree(data_dir, crashed)
    successor = open_store(crashed, fake_keys, segment_size=1024)
    state = successor.recover()
    assert ids(state) == [f"ID:test-{i}" for i in range(1, 40)]
    await successor.close()
    await store.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from sealmq.core.model import Destination, Message
    from sealmq.core.ports import AddMessage
    from sealmq.kms.local import LocalKeyService
    from sealmq.store.filestore import FileStore

    async def main():
        store = FileStore(Path(sys.argv[1]), LocalKeyService(Path(sys.argv[2])), "broker-1",
                          segment_size=4096)
        store.recover()
        i = 0
        while True:
            batch = [store.write([AddMessage(Message(f"m{i + k}", Destination.queue("q"),
                      b"x" * 200, persistent=True), ("queue:q",))]) for k in range(10)]
            for k, fut in enumerate(batch):
                await fut
                print(f"m{i + k}", flush=True)
            i += 10

    asyncio.run(main())
    """
)


@pytest.mark.asyncio
async def test_a_killed_broker_loses_nothing_it_confirmed(
    data_dir: Path, tmp_path: Path, kms: LocalKeyService
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(tmp_path / "keys")],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    confirmed = [child.stdout.readline().strip() for _ in range(300)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    confirmed += child.stdout.read().split()
    store = open_store(data_dir, kms, segment_size=4096)
    recovered = ids(store.recover())
    await store.close()
    assert recovered[: len(confirmed)] == confirmed
    # Whatever else made it is the next writes, in order, without gaps.
    assert recovered == [f"m{i}" for i in range(len(recovered))]


@pytest.mark.asyncio
async def test_a_damaged_record_stops_the_store_from_opening(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    await store.write([AddMessage(make_message(1), (Q,))])
    await store.write([AddMessage(make_message(2), (Q,))])
    await store.close()
    seg = data_dir / "journal" / "00000001.seg"
    data = bytearray(seg.read_bytes())
    data[-40] ^= 0x80
    seg.write_bytes(bytes(data))
    store = open_store(data_dir, fake_keys)
    with pytest.raises(CorruptRecordError, match=r"00000001\.seg"):
        store.recover()
    await store.close()


@pytest.mark.asyncio
async def test_reading_a_damaged_record_back_is_refused(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    await store.write([AddMessage(make_message(1), (Q,))])
    await store.write([AddMessage(make_message(2), (Q,))])
    await store.flush()
    seg = data_dir / "journal" / "00000001.seg"
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0x80  # inside the second record
    seg.write_bytes(bytes(data))
    assert [m.body for m in store.read_messages(["ID:test-1"])] == [b"body 1"]
    with pytest.raises(CorruptRecordError, match=r"00000001\.seg"):
        store.read_messages(["ID:test-2"])
    await store.close()


@pytest.mark.asyncio
async def test_reads_follow_messages_that_compaction_moved(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=600)
    store.recover()
    for i in range(12):
        await store.write(
            [AddMessage(make_message(i), (Q,)), AddMessage(make_message(50 + i), (Q,))]
        )
        await store.write([RemoveMessage(f"ID:test-{50 + i}", Q)])
    await store.flush()
    wanted = [f"ID:test-{i}" for i in range(12)]
    assert [m.body for m in store.read_messages(wanted)] == [b"body %d" % i for i in range(12)]
    old = store.journal.segments
    assert await store.compact()
    await store.flush()
    assert min(store.journal.segments) >= old[-1]  # every message was moved
    assert [m.body for m in store.read_messages(wanted)] == [b"body %d" % i for i in range(12)]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=600)
    store.recover()
    assert [m.body for m in store.read_messages(wanted[::-1])] == [
        b"body %d" % i for i in reversed(range(12))
    ]
    await store.close()


@pytest.mark.asyncio
async def test_a_torn_tail_is_reported(data_dir: Path, fake_keys: FakeKeyProvider) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    await store.write([AddMessage(make_message(1), (Q,))])
    await store.write([AddMessage(make_message(2), (Q,))])
    await store.close()
    seg = data_dir / "journal" / "00000001.seg"
    with open(seg, "ab") as f:  # a third write torn by a crash: never confirmed
        f.write(struct.pack(">II", 300, 300 ^ 0xFFFFFFFF) + b"\x07" * 100)
    store = open_store(data_dir, fake_keys)
    assert ids(store.recover()) == ["ID:test-1", "ID:test-2"]
    assert store.recovery_report.torn_tail is not None
    await store.close()


@pytest.mark.asyncio
async def test_nothing_user_supplied_is_written_in_clear(
    data_dir: Path, kms: LocalKeyService, caplog: pytest.LogCaptureFixture
) -> None:
    marker = "Zq7marker"
    m = full_message(marker)
    m.properties[f"key-{marker}"] = f"val-{marker}".encode()
    owner = queue_key(f"q.{marker}")
    sub = DurableSubscriptionInfo(
        f"client-{marker}",
        f"sub-{marker}",
        Destination(DestinationKind.TOPIC, f"t.{marker}"),
        f"color = '{marker}'",
    )
    mqtt_sub = DurableSubscriptionInfo(
        f"mqtt-{marker}",
        f"a/{marker}/#",
        Destination.topic(f"a.{marker}.>"),
        None,
        False,
        f"opts-{marker}".encode(),
    )
    retained = full_message(f"r{marker}")
    topic = f"r/{marker}/t"
    session_key = f"mqtt:{marker}"
    session = f"state-{marker}".encode()
    store = open_store(data_dir, kms, segment_size=512)
    store.recover()
    with caplog.at_level("DEBUG"):
        await store.write([AddSubscription(sub), AddSubscription(mqtt_sub)])
        await store.write([AddMessage(m, (owner, sub.key))])
        await store.write([AddMessage(make_message(1, queue=marker), (owner,))])
        await store.write([RemoveMessage(m.message_id, owner)])
        await store.write([SetRetained(topic, retained), SetRetained(f"gone/{marker}", m)])
        await store.write([SetSessionState(session_key, session)])
        await store.write([SetSessionState(f"gone:{marker}", session)])
        await store.write([SetRetained(f"gone/{marker}", None)])
        await store.write([SetSessionState(f"gone:{marker}", None)])
        await store.rotate_data_keys()
        await store.write([RemoveSubscription(sub.client_id, sub.name)])
        await store.close()
        store = open_store(data_dir, kms, segment_size=512)
        state = store.recover()
        await store.close()
    assert ids(state) == ["ID:test-1"]
    assert state.subscriptions == [mqtt_sub]
    assert [message_fields(r) for r in state.retained] == [message_fields(retained)]
    assert state.sessions == {session_key: session}
    needle = marker.encode()
    for path in all_files(data_dir):
        assert needle not in path.read_bytes(), path
        assert marker not in str(path)
    assert marker not in caplog.text


@pytest.mark.asyncio
async def test_an_ack_is_kept_while_its_message_segment_lives(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    # segment_size=1: every record gets a segment of its own.
    store = open_store(data_dir, fake_keys, segment_size=1)
    store.recover()
    await store.write([AddMessage(make_message(0), (Q,)), AddMessage(make_message(1), (Q,))])
    await store.write([RemoveMessage("ID:test-1", Q)])  # segment 2: only an ack
    await store.write([AddMessage(make_message(2), (Q,))])  # segment 3
    await store.flush()
    # Segment 2 holds nothing live, but deleting it would bring ID:test-1 back.
    assert store.journal.segments == [1, 2, 3]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    assert ids(store.recover()) == ["ID:test-0", "ID:test-2"]
    assert store.journal.segments == [1, 2, 3]
    await store.write([RemoveMessage("ID:test-0", Q)])  # segment 4
    await store.flush()
    # Segment 1 is dead now, so segment 2 may go too; 3 holds ID:test-2, 4 is the newest.
    assert store.journal.segments == [3, 4]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    assert ids(store.recover()) == ["ID:test-2"]
    await store.close()


@pytest.mark.asyncio
async def test_a_subscription_removal_is_kept_while_older_segments_live(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=1)
    store.recover()
    await store.write([AddSubscription(SUB_INFO)])  # 1
    await store.write([AddMessage(make_message(1), (SUB, Q))])  # 2
    await store.write([RemoveSubscription("client-1", "sub-1")])  # 3
    await store.write([AddMessage(make_message(2), (Q,))])  # 4
    await store.flush()
    # 1 is dead (the subscription is gone); 2 lives; 3 must stay while 2 does.
    assert store.journal.segments == [2, 3, 4]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    state = store.recover()
    assert [(s.message.message_id, s.owners) for s in state.messages] == [
        ("ID:test-1", [Q]),
        ("ID:test-2", [Q]),
    ]
    assert state.subscriptions == []
    await store.close()


def _set_retained(i: int | None) -> Op:
    return SetRetained(
        "t/1", None if i is None else make_message(100 + i, annotations={"mqtt": b"\x04"})
    )


def _set_session(i: int | None) -> Op:
    return SetSessionState("mqtt:1", None if i is None else f"state {i}".encode())


def _value(state: RecoveredState, kind: str) -> object:
    if kind == "retained":
        return [m.message_id for m in state.retained]
    return state.sessions


@pytest.mark.parametrize(
    ("kind", "op", "values"),
    [
        ("retained", _set_retained, (["ID:test-102"], [])),
        ("session", _set_session, ({"mqtt:1": b"state 2"}, {})),
    ],
)
@pytest.mark.asyncio
async def test_a_cleared_value_stays_cleared_while_older_segments_live(
    data_dir: Path,
    fake_keys: FakeKeyProvider,
    kind: str,
    op: Any,
    values: tuple[object, object],
) -> None:
    current, cleared = values
    store = open_store(data_dir, fake_keys, segment_size=1)  # a segment per record
    store.recover()
    await store.write([AddMessage(make_message(0), (Q,)), op(0)])  # 1: pinned by test-0
    await store.write([op(1)])  # 2
    await store.write([op(2)])  # 3
    await store.write([AddMessage(make_message(1), (Q,))])  # 4
    await store.flush()
    # A replaced value pins nothing: 2 goes although 1 (with an older value) stays.
    assert store.journal.segments == [1, 3, 4]
    await store.write([op(None)])  # 5: clears
    await store.write([AddMessage(make_message(2), (Q,))])  # 6
    await store.flush()
    # 3 is dead now; 5 must stay while 1 does, or the value set in 1 would come back.
    assert store.journal.segments == [1, 4, 5, 6]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    state = store.recover()
    assert _value(state, kind) == cleared
    assert store.journal.segments == [1, 4, 5, 6]
    await store.write([RemoveMessage("ID:test-0", Q)])  # 7
    await store.flush()
    # 1 is dead, so the clearing record in 5 may go too.
    assert store.journal.segments == [4, 6, 7]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    state = store.recover()
    assert _value(state, kind) == cleared
    assert ids(state) == ["ID:test-1", "ID:test-2"]
    await store.write([op(2)])  # 8
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=1)
    assert _value(store.recover(), kind) == current
    await store.close()


@pytest.mark.asyncio
async def test_compaction_restates_retained_messages_and_session_states(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=400)
    store.recover()
    for i in range(12):
        await store.write(
            [SetRetained(f"t/{i % 4}", make_message(i, annotations={"mqtt": b"\x04"}))]
        )
        await store.write([SetSessionState(f"mqtt:{i % 3}", f"state {i}".encode())])
        await store.write([AddMessage(make_message(100 + i), (Q,))])
    await store.write([SetRetained("t/0", None), SetSessionState("mqtt:0", None)])
    await store.write([RemoveMessage(f"ID:test-{100 + i}", Q) for i in range(12)])
    await store.flush()
    old = store.journal.segments
    assert len(old) > 3
    assert await store.compact()
    await store.flush()
    # Every segment older than the one compaction started writing into is gone.
    assert min(store.journal.segments) >= old[-1]
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=400)
    state = store.recover()
    await store.close()
    assert ids(state) == []
    assert [m.message_id for m in state.retained] == ["ID:test-9", "ID:test-10", "ID:test-11"]
    assert state.sessions == {"mqtt:1": b"state 10", "mqtt:2": b"state 11"}


@pytest.mark.asyncio
async def test_rotating_data_keys_rewrites_every_live_entry(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=600)
    store.recover()
    await store.write([AddSubscription(SUB_INFO)])
    await store.write([SetRetained("t", make_message(99)), SetSessionState("mqtt:1", b"s")])
    for i in range(20):
        await store.write([AddMessage(make_message(i), (Q, SUB))])
    await store.write([RemoveMessage(f"ID:test-{i}", Q) for i in range(0, 20, 2)])
    await store.write([RemoveMessage(f"ID:test-{i}", SUB) for i in range(0, 20, 4)])
    before = RecoveredState()
    old = set(store.journal.segments)
    assert len(old) > 3
    rewritten = await store.rotate_data_keys()
    assert rewritten and set(rewritten) <= old
    assert not old & set(store.journal.segments)  # nothing under an old data key is left
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=600)
    state = store.recover()
    await store.close()
    expected = [f"ID:test-{i}" for i in range(20) if i % 4]
    assert ids(state) == expected
    owners = {s.message.message_id: s.owners for s in state.messages}
    assert owners["ID:test-2"] == [SUB] and owners["ID:test-1"] == [Q, SUB]
    assert state.subscriptions == [SUB_INFO]
    assert [m.message_id for m in state.retained] == ["ID:test-99"]
    assert state.sessions == {"mqtt:1": b"s"}
    assert before.messages == []


@pytest.mark.asyncio
async def test_compaction_interleaves_with_writes(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=500)
    store.recover()
    for i in range(30):
        await store.write([AddMessage(make_message(i), (Q,))])
    await store.write([RemoveMessage(f"ID:test-{i}", Q) for i in range(1, 30, 3)])
    compaction = asyncio.ensure_future(store.compact())
    writes = [store.write([RemoveMessage(f"ID:test-{i}", Q)]) for i in range(0, 30, 3)]
    await asyncio.gather(compaction, *writes)
    await store.close()
    store = open_store(data_dir, fake_keys, segment_size=500)
    assert ids(store.recover()) == [f"ID:test-{i}" for i in range(2, 30, 3)]
    await store.close()


@pytest.mark.asyncio
async def test_each_segment_key_is_unwrapped_once_at_recovery(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys, segment_size=300)
    store.recover()
    for i in range(10):
        await store.write([AddMessage(make_message(i), (Q,))])
    await store.close()
    fake_keys.decrypted = 0
    store = open_store(data_dir, fake_keys, segment_size=300)
    store.recover()
    assert fake_keys.decrypted == len(store.recovery_report.segments) > 1
    await store.close()


@pytest.mark.asyncio
async def test_a_revoked_key_stops_the_store_without_losing_anything(
    data_dir: Path, fake_keys: FakeKeyProvider, clock: FakeClock
) -> None:
    store = open_store(data_dir, fake_keys, data_key_cache_seconds=60, clock=clock)
    store.recover()
    await store.write([AddMessage(make_message(1), (Q,))])
    fake_keys.available = False
    clock.now += 61
    with pytest.raises(KeyUnavailableError):
        await store.write([AddMessage(make_message(2), (Q,))])
    fake_keys.available = True
    await store.write([AddMessage(make_message(3), (Q,))])
    await store.close()
    fake_keys.available = False
    store = open_store(data_dir, fake_keys)
    with pytest.raises(KeyUnavailableError):
        store.recover()
    await store.close()
    fake_keys.available = True
    store = open_store(data_dir, fake_keys)
    assert ids(store.recover()) == ["ID:test-1", "ID:test-3"]
    await store.close()


@pytest.mark.asyncio
async def test_another_brokers_store_is_refused(data_dir: Path, fake_keys: FakeKeyProvider) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    await store.write([AddMessage(make_message(1), (Q,))])
    await store.close()
    other = FileStore(data_dir, fake_keys, "broker-2")
    with pytest.raises(CorruptRecordError, match="another broker"):
        other.recover()
    await other.close()


def test_memory_store_snapshot_is_what_was_written() -> None:
    async def run() -> None:
        store = MemoryStore()
        assert store.recover() == RecoveredState()
        m: Message = make_message(1)
        await store.write([AddMessage(m, (Q,))])
        assert store.snapshot().messages[0].message is m
        await store.close()
        with pytest.raises(StoreClosedError):
            store.recover()

    asyncio.run(run())


@pytest.mark.asyncio
async def test_unsynced_acks_cost_no_fsync_and_are_kept_at_close(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    store = open_store(data_dir, fake_keys)
    store.recover()
    await store.write([AddMessage(make_message(i), (Q,)) for i in range(2)])
    synced = store.journal.fsync_count
    removed = make_message(0).message_id
    await store.write([RemoveMessage(removed, Q)], sync=False)
    assert store.journal.fsync_count == synced
    await store.close()  # closing the segment syncs what was only written
    assert store.journal.fsync_count == synced + 1
    again = open_store(data_dir, fake_keys)
    assert ids(again.recover()) == [make_message(1).message_id]
    await again.close()


@pytest.mark.asyncio
async def test_a_large_record_is_sealed_in_place_and_comes_back(
    data_dir: Path, fake_keys: FakeKeyProvider
) -> None:
    """A body past SEAL_IN_PLACE_BYTES takes the one-buffer path; small ones around it do not."""
    big = Message(
        "ID:big", Destination.queue("q"), os.urandom(3 * 1024 * 1024 + 7), persistent=True
    )
    store = open_store(data_dir, fake_keys)
    store.recover()
    await asyncio.gather(
        store.write([AddMessage(make_message(1), (Q,))]),
        store.write([AddMessage(big, (Q,))]),
        store.write([AddMessage(make_message(2), (Q,))]),
    )
    await store.close()
    store = open_store(data_dir, fake_keys)
    state = store.recover()
    assert ids(state) == ["ID:test-1", "ID:big", "ID:test-2"]
    assert state.messages[1].message.body == big.body
    await store.close()
