"""Regenerate the committed journal files (run only when the on-disk format changes on purpose).

    .venv/bin/python -m tests.store.files.make_golden [golden] [golden-mqtt] [chain]

``golden`` writes ``golden/`` (keys and a journal of two segments, record types
1-4), ``torn/00000002.seg`` (the last segment cut mid-record) and
``corrupt/00000001.seg`` (one byte flipped inside a record). ``golden-mqtt``
writes ``golden-mqtt/`` (keys and a journal with record types 3 and 5-9).
``chain`` writes ``chain/`` (keys and a format-2 journal of three chained
segments with its confirmed record) and, from it, one damaged journal per case:
``chain-missing-middle/`` (segment 2 deleted), ``chain-cut-tail/`` (the newest
segment cut mid-record, past its confirmed point) and ``chain-replayed/``
(segment 2 replaced by an older copy of itself, taken while it was written).
With no argument, all of them. Regenerating a set replaces its files with ones under
new keys, so only regenerate the set whose records changed: an untouched set
is what proves that journals written by earlier code still read.
``test_golden.py`` says what each must recover to.

These sets hold records of message version 1, written by brokers before version 2
(``sealmq/store/message_record.py``): regenerating one now would write version 2
and lose the proof that version 1 still reads. ``make_upgrade.py`` has a whole
data folder of that time too.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from sealmq.core.model import Destination, DurableSubscriptionInfo, durable_key, queue_key
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    RemoveMessage,
    SetRetained,
    SetSessionState,
)
from sealmq.kms.local import LocalKeyService
from sealmq.store.filestore import FileStore
from tests.store.conftest import make_message, v1_message

HERE = Path(__file__).resolve().parent
BROKER = "golden-broker"
SUB = DurableSubscriptionInfo("golden-client", "golden-sub", Destination.topic("golden.>"))
MQTT_SUB = DurableSubscriptionInfo(
    "golden-mqtt", "golden/#", Destination.topic("golden.>"), None, True, b"\x01\x02options"
)
#: What ``golden-mqtt`` recovers to besides its subscriptions (SUB and MQTT_SUB).
MQTT_RETAINED_TOPICS = ["golden/a", "golden/b"]
MQTT_SESSIONS = {"mqtt:golden-1": b"\x00state-2\xff"}
CHAIN_QUEUE = "chain"
CHAIN_RETAINED = "chain/r"
CHAIN_SESSIONS = {"mqtt:chain-1": b"chain-state"}
#: What each segment of ``chain/`` holds, as message numbers (``ID:test-<n>`` on CHAIN_QUEUE).
CHAIN_ADDED = {1: [1, 2, 3, 4], 2: [5, 6], 3: [7, 8]}
CHAIN_ACKED = {2: [1, 2], 3: [3]}


async def write(data_dir: Path, keys: LocalKeyService) -> None:
    store = FileStore(data_dir, keys, BROKER, segment_size=1200)
    store.recover()
    await store.write([AddSubscription(SUB)])
    await store.write([AddMessage(v1_message("golden"), (queue_key("golden"), SUB.key))])
    for i in range(6):
        await store.write([AddMessage(make_message(i, queue="golden"), (queue_key("golden"),))])
    await store.write([RemoveMessage("ID:test-0", queue_key("golden"))])
    await store.write([RemoveMessage("ID:golden-id", durable_key("golden-client", "golden-sub"))])
    await store.close()


async def write_mqtt(data_dir: Path, keys: LocalKeyService) -> None:
    store = FileStore(data_dir, keys, BROKER, segment_size=1200)
    store.recover()
    await store.write([AddSubscription(SUB), AddSubscription(MQTT_SUB)])  # types 3 and 5
    await store.write([SetRetained("golden/a", v1_message("retained"))])
    await store.write([SetRetained("golden/b", make_message(1, queue="golden"))])
    await store.write([SetRetained("golden/b", make_message(2, queue="golden"))])
    await store.write([SetRetained("golden/c", make_message(3, queue="golden"))])
    await store.write([SetRetained("golden/c", None)])
    await store.write([SetSessionState("mqtt:golden-1", b"state-1")])
    await store.write([SetSessionState("mqtt:golden-2", b"other")])
    await store.write([SetSessionState("mqtt:golden-1", MQTT_SESSIONS["mqtt:golden-1"])])
    await store.write([SetSessionState("mqtt:golden-2", None)])
    await store.close()


async def write_chain(data_dir: Path, keys: LocalKeyService) -> bytes:
    """The ``chain`` journal; returns segment 2 as it was after its first added message."""
    store = FileStore(data_dir, keys, BROKER, segment_size=1 << 20)
    store.recover()
    journal = store.journal
    q = queue_key(CHAIN_QUEUE)
    await store.write([AddSubscription(SUB)])
    for i in CHAIN_ADDED[1]:
        await store.write([AddMessage(make_message(i, queue=CHAIN_QUEUE), (q,))])
    await store.write([SetRetained(CHAIN_RETAINED, make_message(100, queue=CHAIN_QUEUE))])
    for key, state in CHAIN_SESSIONS.items():
        await store.write([SetSessionState(key, state)])
    await journal.call_in_writer(journal.rotate)
    for i in CHAIN_ACKED[2]:
        await store.write([RemoveMessage(f"ID:test-{i}", q)])
    first, second = CHAIN_ADDED[2]
    await store.write([AddMessage(make_message(first, queue=CHAIN_QUEUE), (q,))])
    older = journal.segment_path(2).read_bytes()
    await store.write([AddMessage(make_message(second, queue=CHAIN_QUEUE), (q,))])
    await journal.call_in_writer(journal.rotate)
    for i in CHAIN_ADDED[3]:
        await store.write([AddMessage(make_message(i, queue=CHAIN_QUEUE), (q,))])
    for i in CHAIN_ACKED[3]:
        await store.write([RemoveMessage(f"ID:test-{i}", q)])
    await store.close()
    return older


def main_chain() -> None:
    for name in ("chain", "chain-missing-middle", "chain-cut-tail", "chain-replayed"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        keys = LocalKeyService(Path(tmp) / "keys")
        older = asyncio.run(write_chain(Path(tmp) / "data", keys))
        shutil.copytree(Path(tmp) / "keys", HERE / "chain" / "keys")
        shutil.copytree(Path(tmp) / "data" / "journal", HERE / "chain" / "journal")
    journal = HERE / "chain" / "journal"
    names = sorted(p.name for p in journal.iterdir())
    assert names == ["00000001.seg", "00000002.seg", "00000003.seg", "confirmed"], names
    for case in ("chain-missing-middle", "chain-cut-tail", "chain-replayed"):
        shutil.copytree(journal, HERE / case / "journal")
    (HERE / "chain-missing-middle" / "journal" / "00000002.seg").unlink()
    tail = HERE / "chain-cut-tail" / "journal" / "00000003.seg"
    data = tail.read_bytes()
    tail.write_bytes(data[: len(data) - 30])  # mid-record, as a torn write would leave it
    (HERE / "chain-replayed" / "journal" / "00000002.seg").write_bytes(older)


def main_mqtt() -> None:
    shutil.rmtree(HERE / "golden-mqtt", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        keys = LocalKeyService(Path(tmp) / "keys")
        asyncio.run(write_mqtt(Path(tmp) / "data", keys))
        shutil.copytree(Path(tmp) / "keys", HERE / "golden-mqtt" / "keys")
        shutil.copytree(Path(tmp) / "data" / "journal", HERE / "golden-mqtt" / "journal")


def main() -> None:
    which = sys.argv[1:] or ["golden", "golden-mqtt", "chain"]
    unknown = set(which) - {"golden", "golden-mqtt", "chain"}
    if unknown:
        sys.exit(f"unknown set: {', '.join(sorted(unknown))}")
    if "golden" in which:
        main_golden()
    if "golden-mqtt" in which:
        main_mqtt()
    if "chain" in which:
        main_chain()


def main_golden() -> None:
    shutil.rmtree(HERE / "golden", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        keys = LocalKeyService(Path(tmp) / "keys")
        asyncio.run(write(Path(tmp) / "data", keys))
        shutil.copytree(Path(tmp) / "keys", HERE / "golden" / "keys")
        shutil.copytree(Path(tmp) / "data" / "journal", HERE / "golden" / "journal")
    journal = HERE / "golden" / "journal"
    segments = sorted(journal.iterdir())
    assert [p.name for p in segments] == ["00000001.seg", "00000002.seg"], segments
    (HERE / "torn").mkdir(exist_ok=True)
    last = segments[-1].read_bytes()
    (HERE / "torn" / "00000002.seg").write_bytes(last[:-7])
    (HERE / "corrupt").mkdir(exist_ok=True)
    first = bytearray(segments[0].read_bytes())
    first[len(first) // 2] ^= 0x10
    (HERE / "corrupt" / "00000001.seg").write_bytes(bytes(first))


if __name__ == "__main__":
    main()
