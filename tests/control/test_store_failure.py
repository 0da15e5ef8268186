"""A store write refused for lack of the key stops the broker by itself, not only the check.

The periodic key-access check is disabled here (it always passes), so only the
store's own ``KeyUnavailableError`` can bring the broker to CRITICAL_ACTION_REQUIRED.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import sealmq.app
from sealmq.config import EncryptionSettings
from sealmq.control.keys import EmbeddedKeys
from tests.support import TIMEOUT, BrokerThread, make_settings, stomp_connect, wait_until


def test_a_write_failing_for_the_key_enters_critical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealmq.app, "check_key_access", lambda *args, **kwargs: None)
    settings = make_settings(
        tmp_path / "data", encryption=EncryptionSettings(data_key_cache_seconds=0.5)
    )
    broker = BrokerThread(settings).start()
    try:
        running = broker.running
        assert running is not None and running.key_service is not None
        service, record = running.key_service, running.record
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        conn.send("/queue/w", "before", headers={"persistent": "true"}, receipt="r1")
        wait_until(lambda: "r1" in got.receipts, what="receipt")
        service.call("RevokeGrant", {"KeyId": record.kms_key_id, "GrantId": record.grant_ids[0]})
        time.sleep(0.6)  # past the data-key cache period
        conn.send("/queue/w", "refused", headers={"persistent": "true"}, receipt="r2")
        wait_until(lambda: running.state == "CRITICAL_ACTION_REQUIRED", what="critical state")
        [action] = running.supervisor.actions
        assert action.code == "INVALID_KMS_KEY"
        assert "encryption key is unavailable" in got.error().headers["message"]
        assert "r2" not in got.receipts  # never confirmed: it was not written
        conn.disconnect()

        record, _ = EmbeddedKeys(service).restore_access(record)
        wait_until(lambda: running.state == "RUNNING", TIMEOUT, what="running again")
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            conn.subscribe("/queue/w", id="s", ack="auto")
            assert got.get().body == "before"
            assert got.nothing_more()  # the refused message was not half-kept in memory
        finally:
            conn.disconnect()
    finally:
        broker.stop()
