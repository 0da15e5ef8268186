"""Regenerate the committed journal files (run only when the on-disk format changes on purpose).

    .venv/bin/python -m tests.store.files.make_golden

Writes ``golden/`` (keys and a journal of two segments), ``torn/00000002.seg``
(the last segment cut mid-record) and ``corrupt/00000001.seg`` (one byte
flipped inside a record). ``test_golden.py`` says what each must recover to.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from sealmq.core.model import Destination, DurableSubscriptionInfo, durable_key, queue_key
from sealmq.core.ports import AddMessage, AddSubscription, RemoveMessage
from sealmq.kms.local import LocalKeyService
from sealmq.store.filestore import FileStore
from tests.store.conftest import full_message, make_message

HERE = Path(__file__).resolve().parent
BROKER = "golden-broker"
SUB = DurableSubscriptionInfo("golden-client", "golden-sub", Destination.topic("golden.>"))


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


def main() -> None:
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
