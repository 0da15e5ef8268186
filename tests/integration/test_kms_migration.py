"""Data folders made before the key service keep working, as brokers created with "owned".

Such a folder has ``broker.id``, ``keys/keystore.sealed`` (the older one-key
service's key, written by ``tests.kms.legacy``), a journal and ``users.sealed``
whose data keys that key wrapped. At its first start the key service migrates the
keystore, the broker gets a record (kind ``owned``) and a per-broker key, re-seals
its user list and rotates its data keys once so that nothing live stays under the
old wrapping.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from sealmq.app import start
from sealmq.config import EncryptionSettings
from sealmq.control.keys import BrokerKeyError, load_record
from sealmq.core.model import BodyKind, Destination, Message
from sealmq.core.ports import AddMessage
from sealmq.core.security import Authenticator, UserRecord, hash_password
from sealmq.store.filestore import FileStore
from sealmq.store.sealed import write_sealed
from tests.cli.support import segment_wrapped_keys
from tests.kms.legacy import LegacyKeys
from tests.support import TIMEOUT, BrokerThread, make_settings, stomp_connect, wait_until

LEGACY_ID = "b-0123456789abcdef"


def _legacy_folder(data_dir: Path, count: int) -> str:
    """A data folder as the previous version left it; returns the old key's id."""
    data_dir.mkdir(mode=0o700)
    (data_dir / "broker.id").write_text(LEGACY_ID + "\n")
    keys = LegacyKeys(data_dir / "keys")
    users = Authenticator([UserRecord("old", hash_password("old-password"), frozenset())])
    write_sealed(
        data_dir / "users.sealed",
        users.to_bytes(),
        keys,
        {"broker": LEGACY_ID, "purpose": "users"},
    )

    async def write() -> None:
        store = FileStore(data_dir, keys, LEGACY_ID)
        store.recover()
        for i in range(count):
            message = Message(
                message_id=f"ID:legacy-{i}",
                destination=Destination.queue("legacy"),
                body=f"legacy {i}".encode(),
                body_kind=BodyKind.TEXT,
                persistent=True,
            )
            await store.write([AddMessage(message, ("queue:legacy",))])
        await store.close()

    asyncio.run(write())
    return keys.key_id


def _sealed_key_id(path: Path) -> str:
    # "SEALMQS\0" u16 format, u32 header length, then the header's first field: the key id.
    (id_len,) = struct.unpack_from(">I", path.read_bytes(), 14)
    return path.read_bytes()[18 : 18 + id_len].decode()


def _segment_key_ids(journal: Path) -> set[str]:
    ids = set()
    for path in sorted(journal.glob("*.seg")):
        data = path.read_bytes()
        pos = 18  # preamble
        fields = []
        for _ in range(4):  # broker id, segment, token, key id
            (n,) = struct.unpack_from(">I", data, pos)
            fields.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        ids.add(fields[3].decode())
    return ids


@pytest.mark.slow
def test_a_folder_from_before_the_key_service_migrates(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_key = _legacy_folder(data_dir, 3)
    assert _segment_key_ids(data_dir / "journal") == {old_key}
    old_wrapped = set(segment_wrapped_keys(data_dir / "journal").values())

    broker = BrokerThread(make_settings(data_dir, users=())).start()
    try:
        record = load_record(data_dir)
        assert record is not None
        assert (record.broker_id, record.key_kind, record.kms_key_id) == (
            LEGACY_ID,
            "owned",
            old_key,
        )
        assert record.migrated and record.broker_key_id is not None
        conn, got = stomp_connect(
            broker.stomp_port, broker.ca_file, login="old", passcode="old-password"
        )
        try:
            conn.subscribe("/queue/legacy", id="s", ack="client-individual")
            frames = got.take(3)
            assert [f.body for f in frames] == [f"legacy {i}" for i in range(3)]
        finally:
            conn.disconnect()
        # Once migrated, nothing live stays under the old wrapping.
        wait_until(
            lambda: not (load_record(data_dir) or record).rotation_pending,
            TIMEOUT,
            what="the rotation after the migration",
        )
        assert _sealed_key_id(data_dir / "users.sealed") == record.broker_key_id
        assert _segment_key_ids(data_dir / "journal") == {record.broker_key_id}
        assert not set(segment_wrapped_keys(data_dir / "journal").values()) & old_wrapped
    finally:
        broker.stop()

    # A restart sees a broker created with the service-owned key: "managed" is refused.
    with pytest.raises(BrokerKeyError, match="service-owned key"):
        asyncio.run(
            start(
                make_settings(data_dir, users=(), encryption=EncryptionSettings(kms_key="managed"))
            )
        )
    broker = BrokerThread(
        make_settings(data_dir, users=(), encryption=EncryptionSettings(kms_key="owned"))
    ).start()
    try:
        conn, got = stomp_connect(
            broker.stomp_port, broker.ca_file, login="old", passcode="old-password"
        )
        try:
            conn.subscribe("/queue/legacy", id="s", ack="auto")
            assert len(got.take(3)) == 3  # never acked above: all still there
        finally:
            conn.disconnect()
    finally:
        broker.stop()
