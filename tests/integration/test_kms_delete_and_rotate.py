"""Crypto-shredding at deletion, and data-key rotation while the broker serves.

``sealmq broker delete`` retires the broker's grants and destroys its per-broker
key in the key service before removing its files: a copy of the journal taken
before cannot be decrypted afterwards, even by the key service that still holds
the chosen key. ``sealmq broker rotate-data-keys`` gives a running broker new
data keys and moves every live record under them, the broker serving throughout.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sealmq.control.keys import load_record
from sealmq.kms.clients import ServiceKeyProvider
from sealmq.kms.service import open_key_service
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.filestore import FileStore
from tests.cli.support import KeyBroker, cli, segment_wrapped_keys
from tests.support import stomp_connect, wait_until


def _send(broker: KeyBroker, bodies: list[str]) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        for i, body in enumerate(bodies):
            conn.send("/queue/q", body, headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda: len(got.receipts) == len(bodies), what="receipts")
    finally:
        conn.disconnect()


@pytest.mark.slow
def test_delete_shreds_so_an_earlier_copy_of_the_journal_is_unreadable(tmp_path: Path) -> None:
    # The key service lives beside the data folder, so deleting the broker removes
    # the whole data folder while the key service (and the chosen key) live on.
    broker = KeyBroker.make(
        tmp_path / "b", encryption='kms_key = "alias/keep"', separate_kms_dir=True
    )
    chosen = broker.sealmq("kms", "create-key", "--alias", "alias/keep")["KeyMetadata"]
    broker.start()
    try:
        _send(broker, [f"secret-{i}" for i in range(5)])
    finally:
        assert broker.stop() == 0
    record = load_record(broker.data_dir)
    assert record is not None and record.broker_key_id is not None
    copy = tmp_path / "stolen"
    shutil.copytree(broker.data_dir / "journal", copy / "journal")

    # The copy opens before the deletion (with the key service, as the broker would).
    def open_copy() -> int:
        service = open_key_service(broker.kms_dir)
        provider = ServiceKeyProvider(
            service, record.broker_key_id or "", record.storage_principal, via_service=False
        )
        store = FileStore(copy, provider, record.broker_id)
        try:
            return len(store.recover().messages)
        finally:
            asyncio.run(store.close())
            service.close()

    assert open_copy() == 5

    running = cli("broker", "delete", "--config", str(broker.config))
    assert running.returncode == 1 and "--yes" in running.stderr
    report = broker.sealmq("broker", "delete", "--yes")
    assert report["BrokerId"] == record.broker_id
    assert report["DestroyedBrokerKeyId"] == record.broker_key_id
    assert len(report["RetiredGrantIds"]) == 1
    assert not broker.data_dir.exists()

    # The key service and the chosen key are intact ...
    described = broker.sealmq("kms", "describe-key", "--key-id", "alias/keep")["KeyMetadata"]
    assert described["KeyId"] == chosen["KeyId"] and described["KeyState"] == "Enabled"
    assert broker.sealmq("kms", "list-grants", "--key-id", chosen["KeyId"])["Grants"] == []
    # ... yet the copy cannot be decrypted any more: its data keys' key is gone.
    with pytest.raises(KeyUnavailableError, match=r"NotFoundException|AccessDenied"):
        open_copy()
    # Not even by the admin, nor with a new grant for the old storage principal.
    broker.sealmq(
        "kms",
        "create-grant",
        "--key-id",
        chosen["KeyId"],
        "--grantee-principal",
        record.storage_principal,
        "--operations",
        "Decrypt",
        "GenerateDataKey",
    )
    with pytest.raises(KeyUnavailableError):
        open_copy()
    service = open_key_service(broker.kms_dir)
    try:
        admin = ServiceKeyProvider(service, record.broker_key_id, pin_decrypt=False)
        with pytest.raises(KeyUnavailableError):
            FileStore(copy, admin, record.broker_id).recover()
    finally:
        service.close()
    # The audit trail says who destroyed what, and still verifies.
    assert broker.sealmq("kms", "verify-audit")["Valid"] is True
    trail = (broker.kms_dir / "audit" / "kms.jsonl").read_text()
    assert '"eventName":"DestroyBrokerKey"' in trail


def test_delete_is_refused_while_the_broker_runs_and_keeps_an_inner_key_service(
    tmp_path: Path,
) -> None:
    broker = KeyBroker.make(tmp_path / "b").start()
    try:
        result = cli("broker", "delete", "--yes", "--config", str(broker.config))
        assert result.returncode == 1
        assert "is running" in result.stderr and result.stderr.count("\n") == 1
    finally:
        assert broker.stop() == 0
    report = broker.sealmq("broker", "delete", "--yes")
    # The key service lives in the data folder here: only it is left.
    assert sorted(p.name for p in broker.data_dir.iterdir()) == ["audit", "credentials", "keys"]
    assert sorted(Path(p).name for p in report["KeptKeyService"]) == [
        "audit",
        "credentials",
        "keys",
    ]
    status = cli("status", "--config", str(broker.config))
    assert status.returncode == 1 and "no broker has been created" in status.stderr
    # The next start creates a new broker with the same key service.
    broker.start()
    try:
        assert broker.status()["BrokerId"] != report["BrokerId"]
    finally:
        broker.stop()


@pytest.mark.slow
def test_rotate_data_keys_while_serving(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b", extra="[store]\nsegment_size = 4096\n").start()
    try:
        bodies = [f"message-{i}-" + "x" * 600 for i in range(20)]
        _send(broker, bodies)
        before = segment_wrapped_keys(broker.data_dir / "journal")
        assert len(before) >= 2  # several segments, one data key each
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            result = broker.sealmq("broker", "rotate-data-keys")
            assert result["Online"] is True
            assert (
                sorted(result["RewrittenSegments"])
                == sorted(int(name.split(".")[0]) for name in before)[
                    : len(result["RewrittenSegments"])
                ]
            )
            assert result["RewrittenSegments"]
            # The connection stayed up through the rotation, and the broker still takes writes.
            conn.send("/queue/q", "after", headers={"persistent": "true"}, receipt="after")
            wait_until(lambda: "after" in got.receipts, what="receipt after the rotation")
        finally:
            conn.disconnect()
        after = segment_wrapped_keys(broker.data_dir / "journal")
        assert not set(after.values()) & set(before.values()), "a data key survived the rotation"
        assert not set(after) & set(before), "an old segment survived the rotation"
        assert broker.status()["BrokerState"] == "RUNNING"
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            conn.subscribe("/queue/q", id="s", ack="auto")
            assert [f.body for f in got.take(len(bodies) + 1)] == [*bodies, "after"]
        finally:
            conn.disconnect()
    finally:
        assert broker.stop() == 0
    # Stopped, the command rotates the store itself.
    result = broker.sealmq("broker", "rotate-data-keys")
    assert result["Online"] is False
