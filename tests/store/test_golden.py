"""Committed journal files: today's code must read yesterday's format (and its damage).

The files under ``files/`` were written by ``files/make_golden.py``; regenerate
them only when the on-disk format changes on purpose.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sealmq.core.model import queue_key
from sealmq.core.ports import AddMessage, RecoveredState
from sealmq.kms.local import LocalKeyService
from sealmq.store.errors import CorruptRecordError, JournalIntegrityError
from sealmq.store.filestore import FileStore
from sealmq.store.salvage import examine, salvage
from tests.store.conftest import make_message, message_fields, v1_message
from tests.store.files.make_golden import (
    BROKER,
    CHAIN_ACKED,
    CHAIN_ADDED,
    CHAIN_QUEUE,
    CHAIN_SESSIONS,
    MQTT_RETAINED_TOPICS,
    MQTT_SESSIONS,
    MQTT_SUB,
    SUB,
)

FILES = Path(__file__).resolve().parent / "files"
GOLDEN_Q = queue_key("golden")


def open_copy(tmp_path: Path, damaged: str | None = None, golden: str = "golden") -> FileStore:
    keys = tmp_path / "keys"
    journal = tmp_path / "data" / "journal"
    shutil.copytree(FILES / golden / "keys", keys)
    shutil.copytree(FILES / golden / "journal", journal)
    if damaged:
        for segment in (FILES / damaged).iterdir():
            shutil.copyfile(segment, journal / segment.name)
    # Git keeps no 0600 modes; the key service insists on them.
    for folder in (keys, journal.parent, journal):
        os.chmod(folder, 0o700)
        for path in folder.iterdir():
            if path.is_file():
                os.chmod(path, 0o600)
    return FileStore(tmp_path / "data", LocalKeyService(keys), BROKER, segment_size=1200)


@pytest.mark.asyncio
async def test_the_committed_journal_recovers(tmp_path: Path) -> None:
    store = open_copy(tmp_path)
    state = store.recover()
    await store.close()
    assert store.recovery_report.torn_tail is None
    assert [s.message.message_id for s in state.messages] == [
        "ID:golden-id",
        *(f"ID:test-{i}" for i in range(1, 6)),
    ]
    assert all(s.owners == [GOLDEN_Q] for s in state.messages)
    assert message_fields(state.messages[0].message) == message_fields(v1_message("golden"))
    assert state.subscriptions == [SUB]


@pytest.mark.asyncio
async def test_the_committed_torn_tail_is_cut(tmp_path: Path) -> None:
    store = open_copy(tmp_path, "torn")
    state = store.recover()
    await store.close()
    torn = store.recovery_report.torn_tail
    assert torn is not None and torn.path.name == "00000002.seg"
    # The last record (the subscription's ack of the golden message) was cut.
    assert state.messages[0].owners == [GOLDEN_Q, SUB.key]
    assert len(state.messages) == 6


@pytest.mark.asyncio
async def test_the_committed_corrupt_segment_is_refused(tmp_path: Path) -> None:
    store = open_copy(tmp_path, "corrupt")
    with pytest.raises(CorruptRecordError, match=r"00000001\.seg at offset \d+"):
        store.recover()
    await store.close()


@pytest.mark.asyncio
async def test_the_committed_mqtt_journal_recovers(tmp_path: Path) -> None:
    # Record types 5-9: subscription options, retained messages, session states.
    store = open_copy(tmp_path, golden="golden-mqtt")
    state = store.recover()
    await store.close()
    assert store.recovery_report.torn_tail is None
    assert state.messages == []
    assert sorted(state.subscriptions, key=lambda i: i.key) == sorted(
        [SUB, MQTT_SUB], key=lambda i: i.key
    )
    assert len(MQTT_RETAINED_TOPICS) == len(state.retained) == 2
    assert message_fields(state.retained[0]) == message_fields(v1_message("retained"))
    assert message_fields(state.retained[1]) == message_fields(make_message(2, queue="golden"))
    assert state.sessions == MQTT_SESSIONS


# -- chained segments (format 2) and their confirmed record ----------------------------------

CHAIN_Q = queue_key(CHAIN_QUEUE)


def open_case(tmp_path: Path, case: str) -> FileStore:
    """A copy of ``files/<case>/journal`` with the keys of ``files/chain``."""
    keys = tmp_path / "keys"
    journal = tmp_path / "data" / "journal"
    shutil.copytree(FILES / "chain" / "keys", keys)
    shutil.copytree(FILES / case / "journal", journal)
    for folder in (keys, journal.parent, journal):
        os.chmod(folder, 0o700)
        for path in folder.iterdir():
            if path.is_file():
                os.chmod(path, 0o600)
    return FileStore(tmp_path / "data", LocalKeyService(keys), BROKER)


def chain_ids(state: RecoveredState) -> list[int]:
    assert all(s.owners == [CHAIN_Q] for s in state.messages)
    return [int(s.message.message_id.removeprefix("ID:test-")) for s in state.messages]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.asyncio
async def test_the_committed_chained_journal_recovers(tmp_path: Path) -> None:
    store = open_case(tmp_path, "chain")
    state = store.recover()
    await store.close()
    assert store.recovery_report.torn_tail is None
    assert store.recovery_report.segments == [1, 2, 3]
    acked = {i for ids in CHAIN_ACKED.values() for i in ids}
    assert chain_ids(state) == [i for ids in CHAIN_ADDED.values() for i in ids if i not in acked]
    assert state.subscriptions == [SUB]
    assert [m.message_id for m in state.retained] == ["ID:test-100"]
    assert state.sessions == CHAIN_SESSIONS


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        # The acks of messages 1 and 2 were in segment 2: the old code served them again.
        ("chain-missing-middle", r"00000002\.seg is missing"),
        # Looks like a torn write, but the cut records were confirmed to clients.
        ("chain-cut-tail", r"00000003\.seg was cut short of what was confirmed"),
        # Every record of the older copy authenticates; only the chain shows it ends early.
        ("chain-replayed", r"00000002\.seg holds 3 records, the journal recorded 4"),
    ],
)
async def test_a_damaged_chain_is_refused_before_anything_changes(
    tmp_path: Path, case: str, refusal: str
) -> None:
    store = open_case(tmp_path, case)
    journal = tmp_path / "data" / "journal"
    before = snapshot(journal)
    with pytest.raises(JournalIntegrityError, match=refusal):
        store.recover()
    await store.close()
    assert snapshot(journal) == before


@pytest.mark.asyncio
async def test_the_intact_chain_verifies(tmp_path: Path) -> None:
    store = open_case(tmp_path, "chain")
    found = examine(store)
    store.close_unopened()
    assert found.intact
    report = found.report()
    assert report["Intact"] is True and report["Problems"] == [] and report["Missing"] == []
    assert [s["Status"] for s in report["Segments"]] == ["ok", "ok", "ok"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "set_aside", "lost", "again", "after"),
    [
        # Nothing left to set aside; what segment 2 held is unknown (its acks too).
        ("chain-missing-middle", [], {}, {}, [1, 2, 4, 7, 8]),
        # The cut record (the ack of message 3) is gone: message 3 is served again.
        ("chain-cut-tail", [], {}, {}, [3, 4, 5, 6, 7, 8]),
        # The older copy is set aside: message 5 (only in it) is lost, 1 and 2 come back.
        ("chain-replayed", [2], {"queue://chain": 1}, {"queue://chain": 2}, [1, 2, 4, 7, 8]),
    ],
)
async def test_salvage_sets_aside_reports_and_the_rest_recovers(
    tmp_path: Path,
    case: str,
    set_aside: list[int],
    lost: dict[str, int],
    again: dict[str, int],
    after: list[int],
) -> None:
    store = open_case(tmp_path, case)
    found = examine(store)
    assert not found.intact and found.set_aside == set_aside
    store.close_unopened()

    store = open_case(tmp_path / "again", case)
    done = salvage(store)
    store.close_unopened()
    report = done.report()
    assert report["Lost"]["Messages"] == lost and report["DeliveredAgain"] == again
    assert report["Lost"]["Subscriptions"] == [] and report["Lost"]["Sessions"] == []
    assert report["UnknownContent"], "what could not be read is named"
    quarantine = tmp_path / "again" / "data" / "journal" / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == [f"{n:08d}.seg" for n in set_aside]

    store = open_copy_again(tmp_path / "again")
    state = store.recover()
    await store.close()
    assert chain_ids(state) == after
    assert state.subscriptions == [SUB] and state.sessions == CHAIN_SESSIONS


@pytest.mark.asyncio
async def test_an_old_journal_gains_the_chain_with_its_first_new_segment(tmp_path: Path) -> None:
    store = open_copy(tmp_path)
    state = store.recover()
    await store.write([AddMessage(make_message(9, queue="golden"), (GOLDEN_Q,))])
    await store.close()
    journal = tmp_path / "data" / "journal"
    assert (journal / "confirmed").exists()
    store = open_copy_again(tmp_path)
    again = store.recover()
    await store.close()
    assert len(again.messages) == len(state.messages) + 1
    # The format-1 segments are now listed in the confirmed record: one going is refused.
    (journal / "00000001.seg").unlink()
    store = open_copy_again(tmp_path)
    with pytest.raises(JournalIntegrityError, match=r"00000001\.seg is missing"):
        store.recover()
    await store.close()


def open_copy_again(tmp_path: Path) -> FileStore:
    return FileStore(
        tmp_path / "data", LocalKeyService(tmp_path / "keys"), BROKER, segment_size=1200
    )


@pytest.mark.asyncio
async def test_a_removed_confirmed_record_is_refused_and_salvage_rewrites_it(
    tmp_path: Path,
) -> None:
    store = open_case(tmp_path, "chain")
    store.close_unopened()
    (tmp_path / "data" / "journal" / "confirmed").unlink()
    store = open_copy_again(tmp_path)
    with pytest.raises(JournalIntegrityError, match=r"confirmed record .* is missing"):
        store.recover()
    await store.close()
    store = open_copy_again(tmp_path)
    done = salvage(store)
    store.close_unopened()
    assert done.salvaged and done.set_aside == [] and len(done.check.problems) == 1
    store = open_copy_again(tmp_path)
    state = store.recover()
    await store.close()
    assert chain_ids(state) == [4, 5, 6, 7, 8]


@pytest.mark.asyncio
async def test_salvage_names_the_subscriptions_and_retained_messages_a_damaged_segment_held(
    tmp_path: Path,
) -> None:
    store = open_case(tmp_path, "chain")
    store.close_unopened()
    first = tmp_path / "data" / "journal" / "00000001.seg"
    data = bytearray(first.read_bytes())
    data[-5] ^= 0x01  # in the last record of segment 1 (the session state)
    first.write_bytes(bytes(data))
    store = open_copy_again(tmp_path)
    with pytest.raises(CorruptRecordError, match=r"00000001\.seg at offset \d+"):
        store.recover()
    await store.close()

    store = open_copy_again(tmp_path)
    report = salvage(store).report()
    store.close_unopened()
    assert report["SetAside"] == ["00000001.seg"]
    assert report["Lost"] == {
        "Messages": {"queue://chain": 1},  # message 4; 1-3 were acknowledged
        "Subscriptions": ["golden-client:golden-sub (topic://golden.>)"],
        "RetainedTopics": ["queue://chain"],
        "Sessions": [],  # it was in the damaged record itself: of unknown content
    }
    assert any("00000001.seg: everything after offset" in u for u in report["UnknownContent"])
    store = open_copy_again(tmp_path)
    state = store.recover()
    await store.close()
    assert chain_ids(state) == [5, 6, 7, 8]
    assert state.subscriptions == [] and state.retained == [] and state.sessions == {}
