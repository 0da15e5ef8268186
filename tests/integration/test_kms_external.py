"""A broker whose key lives in another KMS-compatible service (``kms_endpoint``).

Broker A serves its key service on its ``kms`` listener; broker B names A's
endpoint, a customer key there, A's credentials file and CA: B's data keys are
wrapped by that key over HTTPS with SigV4, exactly as with AWS KMS. Disabling the
key in A stops B within its cache period; deleting B cannot shred anything in A,
and says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import KeyBroker, boto_kms
from tests.support import stomp_connect, wait_until


@pytest.mark.slow
def test_a_broker_using_another_key_service(tmp_path: Path) -> None:
    a = KeyBroker.make(tmp_path / "a")
    key = a.sealmq("kms", "create-key", "--alias", "alias/remote")["KeyMetadata"]
    a.start()
    b = KeyBroker.make(
        tmp_path / "b",
        kms_listener=False,
        encryption="\n".join(
            [
                f"kms_endpoint = {a.endpoint!r}",
                'kms_key = "alias/remote"',
                f"kms_credentials_file = {str(a.credentials)!r}",
                f"kms_ca_bundle = {str(a.ca_file)!r}",
                "data_key_cache_seconds = 1",
            ]
        ),
    )
    try:
        b.start()
        status = b.status()
        assert status["KeyKind"] == "external"
        assert status["KmsEndpoint"] == a.endpoint
        assert status["EncryptionOptions"]["KmsKeyId"] == key["Arn"]
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            conn.send("/queue/r", "remote", headers={"persistent": "true"}, receipt="r")
            wait_until(lambda: "r" in got.receipts, what="receipt")
        finally:
            conn.disconnect()
        # B's own data folder holds no key service.
        assert not (b.data_dir / "keys").exists()

        kms = boto_kms(a)
        kms.disable_key(KeyId=key["KeyId"])
        action = b.wait_state("CRITICAL_ACTION_REQUIRED")["ActionsRequired"][0]
        assert action["ActionRequiredCode"] == "INVALID_KMS_KEY"
        assert "DisabledException" in action["ActionRequiredInfo"]
        kms.enable_key(KeyId=key["KeyId"])
        b.wait_state("RUNNING")
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            conn.subscribe("/queue/r", id="s", ack="auto")
            assert got.get().body == "remote"
        finally:
            conn.disconnect()
        assert b.stop() == 0
        report = b.sealmq("broker", "delete", "--yes")
        assert "destroyed no key material" in report["Warning"]
        assert not b.data_dir.exists()
    finally:
        b.close()
        a.stop()
