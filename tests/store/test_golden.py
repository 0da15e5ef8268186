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
from sealmq.kms.local import LocalKeyService
from sealmq.store.errors import CorruptRecordError
from sealmq.store.filestore import FileStore
from tests.store.conftest import full_message, make_message, message_fields
from tests.store.files.make_golden import (
    BROKER,
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
    assert message_fields(state.messages[0].message) == message_fields(full_message("golden"))
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
    assert message_fields(state.retained[0]) == message_fields(full_message("retained"))
    assert message_fields(state.retained[1]) == message_fields(make_message(2, queue="golden"))
    assert state.sessions == MQTT_SESSIONS
