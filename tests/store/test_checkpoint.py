"""The index checkpoint: used when it matches the journal (only what follows it is
read), refused when stale, damaged, missing or another's, with the same state
recovered either way (``checkpoint.py``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from sealmq.core.model import Destination as D
from sealmq.core.model import DestinationInfo, DurableSubscriptionInfo, queue_key
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddSubscription,
    Op,
    RecoveredState,
    RemoveMessage,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
)
from sealmq.store.checkpoint import context
from sealmq.store.filestore import FileStore
from sealmq.store.sealed import write_sealed
from tests.store.conftest import FakeKeyProvider, make_message

Q, S = queue_key("orders"), "sub:1:c:s"
SEGMENT = 4 * 1024


@pytest.fixture(autouse=True, params=["one chunk", "many chunks"])
def messages_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test with the messages sealed in one chunk, and in a chunk each few."""
    if request.param == "many chunks":
        monkeypatch.setattr("sealmq.store.checkpoint.MESSAGES_CHUNK", 100)


def open_store(root: Path, keys: FakeKeyProvider) -> FileStore:
    return FileStore(root, keys, "b-1", segment_size=SEGMENT)


def summary(state: RecoveredState) -> tuple[object, ...]:
    refs = [(r.message_id, tuple(r.owners), r.delivery_counts or {}) for r in state.refs]
    return (
        refs,
        state.subscriptions,
        [(m.message_id, m.body) for m in state.retained],
        state.sessions,
        state.destinations,
    )


async def fill(store: FileStore, start: int, count: int) -> None:
    for i in range(start, start + count):
        owners = (Q, S) if i % 4 == 0 else (Q,)
        await store.write([AddMessage(make_message(i, body=bytes(300)), owners)])
    ops: list[Op] = [RemoveMessage(f"ID:test-{i}", Q) for i in range(start, start + count, 3)]
    ops.append(SetDeliveryCount(f"ID:test-{start + 1}", Q, 2))
    await store.write(ops)


async def written(root: Path, keys: FakeKeyProvider) -> None:
    """A journal of several segments with messages, acks, counts and other state,
    closed cleanly (so with a checkpoint)."""
    store = open_store(root, keys)
    store.recover(bodies=False)
    info = DurableSubscriptionInfo("c", "s", D.topic("t"))
    await store.write(
        [
            AddSubscription(info),
            AddDestination(DestinationInfo(D.queue("orders"))),
            SetRetained("t", make_message(900, body=b"kept")),
            SetSessionState("mqtt:c", b"state"),
        ]
    )
    await fill(store, 0, 60)
    await store.close()


async def recovered(root: Path, keys: FakeKeyProvider) -> tuple[tuple[object, ...], FileStore]:
    store = open_store(root, keys)
    state = store.recover(bodies=False)
    result = summary(state)
    await store.close()
    return result, store


async def full_scan(root: Path, keys: FakeKeyProvider, tmp: Path) -> tuple[object, ...]:
    """What a recovery reading the whole journal gives (on a copy without checkpoint)."""
    copy = tmp / "full-scan"
    shutil.copytree(root, copy)
    (copy / "checkpoint").unlink(missing_ok=True)
    result, store = await recovered(copy, keys)
    assert not store.recovery_report.checkpoint
    return result


@pytest.mark.asyncio
async def test_a_clean_close_leaves_a_checkpoint_that_the_next_start_uses(
    tmp_path: Path,
) -> None:
    keys = FakeKeyProvider()
    root = tmp_path / "data"
    await written(root, keys)
    assert (root / "checkpoint").exists()
    expected = await full_scan(root, keys, tmp_path)
    got, store = await recovered(root, keys)
    report = store.recovery_report
    assert report.checkpoint and report.scanned == 0 and report.records > 0
    assert got == expected
    assert len(got[0]) > 30  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_after_a_kill_only_what_follows_the_checkpoint_is_read(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    root = tmp_path / "data"
    await written(root, keys)
    store = open_store(root, keys)
    store.recover(bodies=False)
    await fill(store, 100, 20)
    await store.flush()
    # kill -9 now: what is on disk is what a copy taken now holds.
    crashed = tmp_path / "crashed"
    shutil.copytree(root, crashed)
    await store.close()
    expected = await full_scan(crashed, keys, tmp_path)
    got, again = await recovered(crashed, keys)
    report = again.recovery_report
    assert report.checkpoint and 0 < report.scanned < report.records
    assert got == expected
    assert "ID:test-101" in [r[0] for r in got[0]]  # type: ignore[union-attr]


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing", "another", "format 1"])
async def test_a_bad_checkpoint_is_logged_once_and_the_whole_journal_read(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = FakeKeyProvider()
    root = tmp_path / "data"
    await written(root, keys)
    checkpoint = root / "checkpoint"
    if damage == "flipped":
        data = bytearray(checkpoint.read_bytes())
        data[len(data) // 2] ^= 0x01
        checkpoint.write_bytes(bytes(data))
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:-40])
    elif damage == "missing":
        checkpoint.unlink()
    elif damage == "format 1":  # as an earlier release wrote it: sealed whole
        write_sealed(checkpoint, b"\x01" + bytes(64), keys, context("b-1"))
    else:  # another journal's checkpoint, same broker and keys
        other = tmp_path / "other"
        await written(other, keys)
        store = open_store(other, keys)
        store.recover(bodies=False)
        await fill(store, 500, 5)
        await store.close()
        shutil.copyfile(other / "checkpoint", checkpoint)
    expected = await full_scan(root, keys, tmp_path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sealmq.store"):
        got, store = await recovered(root, keys)
    assert not store.recovery_report.checkpoint
    assert store.recovery_report.scanned == store.recovery_report.records
    assert got == expected
    lines = [r for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]


@pytest.mark.asyncio
async def test_a_checkpoint_left_stale_by_deleted_segments_is_not_used(tmp_path: Path) -> None:
    keys = FakeKeyProvider()
    root = tmp_path / "data"
    await written(root, keys)
    store = open_store(root, keys)
    store.recover(bodies=False)
    old = (root / "checkpoint").read_bytes()
    # Acknowledge everything of the first messages and compact: old segments go.
    await store.write([RemoveMessage(f"ID:test-{i}", Q) for i in range(60) if i % 3])
    await store.write([RemoveMessage(f"ID:test-{i}", S) for i in range(0, 60, 4)])
    await store.compact()
    await store.close()
    (root / "checkpoint").write_bytes(old)  # as if the newer one had not been written
    expected = await full_scan(root, keys, tmp_path)
    got, again = await recovered(root, keys)
    assert not again.recovery_report.checkpoint
    assert got == expected
