"""Regenerate the committed journal files (run only when the on-disk format changes on purpose).

    .venv/bin/python -m tests.store.files.make_golden [golden] [golden-mqtt]

``golden`` writes ``golden/`` (keys and a journal of two segments, record types
1-4), ``torn/00000002.seg`` (the last segment cut mid-record) and
``corrupt/00000001.seg`` (one byte flipped inside a record). ``golden-mqtt``
writes ``golden-mqtt/`` (keys and a journal with record types 3 and 5-9).
With no argument, both. Regenerating a set replaces its files with ones under
new keys, so only regenerate the set whose records changed: an untouched set
is what proves that journals written by earlier code still read.
``test_golden.py`` says what each must recover to.
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
from tests.store.conftest import full_message, make_message

HERE = Path(__file__).resolve().parent
BROKER = "golden-broker"
SUB = DurableSubscriptionInfo("golden-client", "golden-sub", Destination.topic("golden.>"))
MQTT_SUB = DurableSubscriptionInfo(
    "golden-mqtt", "golden/#", Destination.topic("golden.>"), None, True, b"\x01\x02options"
)
#: What ``golden-mqtt`` recovers to besides its subscriptions (SUB and MQTT_SUB).
MQTT_RETAINED_TOPICS = ["golden/a", "golden/b"]
MQTT_SESSIONS = {"mqtt:golden-1": b"\x00state-2\xff"}


async def write(data_dir: Path, keys: LocalKeyService) -> None:
    store = FileStore(data_dir, keys, BROKER, segment_size=1200)
    store.recover()
    await store.write([AddSubscription(SUB)])
    await store.write([AddMessage(full_message("golden"), (queue_key("golden"), SUB.key))])
    for i in range(6):
        await store.write([AddMessage(make_message(i, queue="golden"), (queue_key("golden"),))])
    await store.write([RemoveMessage("ID:test-0", queue_key("golden"))])
    await store.write([RemoveMessage("ID:golden-id", durable_key("golden-client", "golden-sub"))])
    await store.close()


async def write_mqtt(data_dir: Path, keys: LocalKeyService) -> None:
    store = FileStore(data_dir, keys, BROKER, segment_size=1200)
    store.recover()
    await store.write([AddSubscription(SUB), AddSubscription(MQTT_SUB)])  # types 3 and 5
    await store.write([SetRetained("golden/a", full_message("retained"))])
    await store.write([SetRetained("golden/b", make_message(1, queue="golden"))])
    await store.write([SetRetained("golden/b", make_message(2, queue="golden"))])
    await store.write([SetRetained("golden/c", make_message(3, queue="golden"))])
    await store.write([SetRetained("golden/c", None)])
    await store.write([SetSessionState("mqtt:golden-1", b"state-1")])
    await store.write([SetSessionState("mqtt:golden-2", b"other")])
    await store.write([SetSessionState("mqtt:golden-1", MQTT_SESSIONS["mqtt:golden-1"])])
    await store.write([SetSessionState("mqtt:golden-2", None)])
    await store.close()


def main_mqtt() -> None:
    shutil.rmtree(HERE / "golden-mqtt", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        keys = LocalKeyService(Path(tmp) / "keys")
        asyncio.run(write_mqtt(Path(tmp) / "data", keys))
        shutil.copytree(Path(tmp) / "keys", HERE / "golden-mqtt" / "keys")
        shutil.copytree(Path(tmp) / "data" / "journal", HERE / "golden-mqtt" / "journal")


def main() -> None:
    which = sys.argv[1:] or ["golden", "golden-mqtt"]
    unknown = set(which) - {"golden", "golden-mqtt"}
    if unknown:
        sys.exit(f"unknown set: {', '.join(sorted(unknown))}")
    if "golden" in which:
        main_golden()
    if "golden-mqtt" in which:
        main_mqtt()


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
