"""Revoking the broker's access to its key stops it, closed and loud, with nothing lost.

A real broker process with ``data_key_cache_seconds = 1``; the key service is
driven with boto3 over the broker's own ``kms`` listener (the credentials file it
wrote) and with the ``sealmq`` command. Each time: within the cache period the
broker reports CRITICAL_ACTION_REQUIRED / INVALID_KMS_KEY, the connected STOMP
client gets an ERROR frame saying the key is unavailable, new connections are
refused; once access returns the broker serves again and every persistent
message sent before is delivered. The cycles: RevokeGrant (back with a boto3
CreateGrant), DisableKey/EnableKey, RevokeGrant with the CLI (back with
``sealmq broker restore-key-access``), ScheduleKeyDeletion/CancelKeyDeletion.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import KeyBroker, boto_kms
from tests.support import TIMEOUT, stomp_connect, wait_until

#: The cache period; the broker must notice a refusal within about this long.
CACHE_SECONDS = 1


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KeyBroker]:
    made = KeyBroker.make(
        tmp_path / "b",
        encryption=f'kms_key = "alias/app"\ndata_key_cache_seconds = {CACHE_SECONDS}',
    )
    made.sealmq("kms", "create-key", "--alias", "alias/app")
    made.start()
    yield made
    made.close()


def _send(broker: KeyBroker, bodies: list[str]) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        for i, body in enumerate(bodies):
            conn.send("/queue/kept", body, headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda: len(got.receipts) == len(bodies), what="receipts")
    finally:
        conn.disconnect()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def _stops(broker: KeyBroker, cut_access: Callable[[], object], said: str) -> dict[str, Any]:
    """Cut the key off with a client connected; check what everyone sees; the status."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        cut_access()
        # Within the cache period (plus the check itself and a loaded machine's slack).
        status = broker.wait_state("CRITICAL_ACTION_REQUIRED", timeout=CACHE_SECONDS + TIMEOUT)
        error = got.error()
        assert "encryption key is unavailable" in error.headers["message"]
    finally:
        conn.disconnect()
    [action] = status["ActionsRequired"]
    assert action["ActionRequiredCode"] == "INVALID_KMS_KEY"
    assert status["EncryptionOptions"]["KmsKeyId"] in action["ActionRequiredInfo"]
    assert said in action["ActionRequiredInfo"]
    assert _refused(broker.stomp_port)
    log = broker.process.run_output()
    assert "CRITICAL_ACTION_REQUIRED INVALID_KMS_KEY" in log
    return status


@pytest.mark.slow
def test_revoke_disable_delete_and_restore(broker: KeyBroker) -> None:
    kms = boto_kms(broker)
    status = broker.status()
    key_arn = status["EncryptionOptions"]["KmsKeyId"]
    principal = status["StoragePrincipal"]
    broker_id = status["BrokerId"]
    sent = [f"before-revoke-{i}" for i in range(5)]
    _send(broker, sent)

    # 1. RevokeGrant; access comes back with a new grant made with boto3 (the call
    #    docs/keys.md gives).
    [grant] = kms.list_grants(KeyId=key_arn, GranteePrincipal=principal)["Grants"]
    _stops(
        broker,
        lambda: kms.revoke_grant(KeyId=key_arn, GrantId=grant["GrantId"]),
        "AccessDeniedException",
    )
    kms.create_grant(
        KeyId=key_arn,
        GranteePrincipal=principal,
        Operations=["Encrypt", "Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"broker": broker_id}},
    )
    broker.wait_state("RUNNING")
    more = [f"before-disable-{i}" for i in range(3)]
    _send(broker, more)
    sent += more

    # 2. DisableKey, then EnableKey.
    _stops(broker, lambda: kms.disable_key(KeyId=key_arn), "DisabledException")
    kms.enable_key(KeyId=key_arn)
    broker.wait_state("RUNNING")

    # 3. Revoked again (with the command this time); `sealmq broker restore-key-access`.
    grants = kms.list_grants(KeyId=key_arn, GranteePrincipal=principal)["Grants"]
    assert len(grants) == 1

    def revoke_with_cli() -> None:
        broker.sealmq(
            "kms", "revoke-grant", "--key-id", key_arn, "--grant-id", grants[0]["GrantId"]
        )

    _stops(broker, revoke_with_cli, "AccessDeniedException")
    restored = broker.sealmq("broker", "restore-key-access")
    assert restored["GranteePrincipal"] == principal
    broker.wait_state("RUNNING")

    # 4. ScheduleKeyDeletion; CancelKeyDeletion leaves the key disabled (as KMS does).
    _stops(
        broker,
        lambda: kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7),
        "pending deletion",
    )
    kms.cancel_key_deletion(KeyId=key_arn)
    kms.enable_key(KeyId=key_arn)
    broker.wait_state("RUNNING")

    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe("/queue/kept", id="s", ack="auto")
        assert [frame.body for frame in got.take(len(sent))] == sent
        assert got.nothing_more()
    finally:
        conn.disconnect()
