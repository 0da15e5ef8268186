"""A broker is created with one of the three kinds of key, and keeps it for life.

Real ``sealmq serve`` processes and the ``sealmq`` command as an operator runs
them: the managed key by default, the service-owned key, and a customer key made
with ``sealmq kms create-key --alias`` before the broker's first start. A later
configuration naming another key is refused at start, exit status 2; so is a
first start whose external key service refuses the configured credentials.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealmq.kms.service import open_key_service
from tests.cli.support import KeyBroker, boto_kms, cli, cli_json, external_encryption
from tests.support import stomp_connect, wait_until


def _round_trip(broker: KeyBroker, body: str) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.send("/queue/kinds", body, headers={"persistent": "true"}, receipt="r")
        wait_until(lambda: "r" in got.receipts, what="receipt")
        conn.subscribe("/queue/kinds", id="s", ack="auto")
        assert got.get().body == body
    finally:
        conn.disconnect()


def _refused(broker: KeyBroker, kms_key: str) -> str:
    """Start with ``kms_key`` in the config: must be refused; returns stderr."""
    other = broker.config_with(f"kms_key = {kms_key!r}")
    result = cli("serve", "--config", str(other))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    return result.stderr


@pytest.mark.slow
def test_managed_key_by_default_and_another_key_is_refused(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b").start()
    try:
        status = broker.status()
        assert status["BrokerState"] == "RUNNING"
        assert status["KeyKind"] == "managed"
        assert status["EncryptionOptions"]["UseAwsOwnedKey"] is False
        managed = cli_json(
            "kms", "describe-key", "--key-id", "alias/aws/mq", "--config", str(broker.config)
        )
        assert status["EncryptionOptions"]["KmsKeyId"] == managed["KeyMetadata"]["Arn"]
        assert managed["KeyMetadata"]["KeyManager"] == "AWS"
        # Its grant: the storage principal, the broker's context, nothing else.
        grants = broker.sealmq("kms", "list-grants", "--key-id", managed["KeyMetadata"]["KeyId"])[
            "Grants"
        ]
        assert [g["GranteePrincipal"] for g in grants] == [status["StoragePrincipal"]]
        assert grants[0]["Constraints"] == {
            "EncryptionContextSubset": {"broker": status["BrokerId"]}
        }
        assert sorted(grants[0]["Operations"]) == ["Decrypt", "Encrypt", "GenerateDataKey"]
        _round_trip(broker, "managed")
    finally:
        assert broker.stop() == 0
    assert broker.status()["BrokerState"] == "STOPPED"
    stderr = _refused(broker, "owned")
    assert "kms_key = 'owned'" in stderr and "was created with the service-managed key" in stderr
    assert "fixed" in stderr
    # Naming the key the broker has (or nothing) is fine.
    broker.process.config = broker.config_with('kms_key = "managed"')
    broker.start()
    try:
        assert broker.status()["KeyKind"] == "managed"
    finally:
        broker.stop()


@pytest.mark.slow
def test_owned_key(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b", encryption='kms_key = "owned"').start()
    try:
        status = broker.status()
        assert status["KeyKind"] == "owned"
        assert status["EncryptionOptions"] == {"UseAwsOwnedKey": True}
        # The service-owned key is in no listing of the account.
        assert broker.sealmq("kms", "list-keys")["Keys"] == []
        _round_trip(broker, "owned")
    finally:
        assert broker.stop() == 0
    assert "service-owned key" in _refused(broker, "managed")


@pytest.mark.slow
def test_customer_key_made_before_the_first_start(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b", encryption='kms_key = "alias/orders"')
    # Before any broker exists: the key service is created by the command itself.
    made = broker.sealmq("kms", "create-key", "--description", "orders", "--alias", "alias/orders")
    arn = made["KeyMetadata"]["Arn"]
    assert made["AliasName"] == "alias/orders"
    other = broker.sealmq("kms", "create-key", "--alias", "alias/other")["KeyMetadata"]
    broker.start()
    try:
        status = broker.status()
        assert status["KeyKind"] == "customer"
        assert status["EncryptionOptions"] == {"UseAwsOwnedKey": False, "KmsKeyId": arn}
        _round_trip(broker, "customer")
        # The CLI works next to the running broker (shared keystore).
        assert len(broker.sealmq("kms", "list-keys")["Keys"]) == 2
    finally:
        assert broker.stop() == 0
    stderr = _refused(broker, "alias/other")
    assert arn in stderr and "fixed" in stderr and f"names {other['Arn']}" in stderr
    assert "names another key" in _refused(broker, other["Arn"])


@pytest.mark.parametrize(
    ("prepare", "kms_key", "reason"),
    [
        (None, "alias/missing", "NotFoundException"),
        ("disable", "alias/off", "is disabled"),
    ],
)
def test_creation_with_an_unusable_customer_key_fails_clearly(
    tmp_path: Path, prepare: str | None, kms_key: str, reason: str
) -> None:
    broker = KeyBroker.make(tmp_path / "b", encryption=f"kms_key = {kms_key!r}")
    if prepare == "disable":
        key = broker.sealmq("kms", "create-key", "--alias", kms_key)["KeyMetadata"]["KeyId"]
        broker.sealmq("kms", "disable-key", "--key-id", key)
    result = cli("serve", "--config", str(broker.config))
    assert result.returncode == 2
    assert result.stderr.startswith("sealmq: cannot start: ")
    assert reason in result.stderr
    assert not (broker.data_dir / "broker.json").exists()
    # Nothing half-made stays: a later start with a usable key creates the broker.
    status = cli("status", "--config", str(broker.config))
    assert status.returncode == 1 and "no broker has been created" in status.stderr


@pytest.mark.slow
@pytest.mark.parametrize("rights", ["none", "DescribeKey only"])
def test_creation_with_a_key_the_creator_may_not_use_fails_clearly(
    tmp_path: Path, rights: str
) -> None:
    # In embedded mode the admin may always grant on a customer key (policies are stored,
    # not enforced); with an external key service the configured credentials may not.
    a = KeyBroker.make(tmp_path / "a")
    key = a.sealmq("kms", "create-key", "--alias", "alias/theirs")["KeyMetadata"]
    # A principal of A's account with an access key and no rights on the key (access
    # keys are made in-process: the KMS API has no call for them).
    service = open_key_service(a.kms_dir)
    try:
        principal = f"arn:aws:iam::{service.account_id}:role/stranger"
        access = service.keystore.create_access_key(principal)
        if rights == "DescribeKey only":
            service.call(
                "CreateGrant",
                {
                    "KeyId": key["KeyId"],
                    "GranteePrincipal": principal,
                    "Operations": ["DescribeKey"],
                },
            )
    finally:
        service.close()
    a.start()
    try:
        b = KeyBroker.make(
            tmp_path / "b",
            kms_listener=False,
            encryption=external_encryption(
                a.endpoint,
                "alias/theirs",
                access_key=(access.access_key_id, access.secret),
                ca_bundle=a.ca_file,
            ),
        )
        result = cli("serve", "--config", str(b.config))
        assert result.returncode == 2, result.stderr  # as every refused creation
        assert result.stderr.startswith("sealmq: cannot start: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
        assert "AccessDeniedException" in result.stderr and principal in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert not (b.data_dir / "broker.json").exists()
        status = cli("status", "--config", str(b.config))
        assert status.returncode == 1 and "no broker has been created" in status.stderr
        # A made no grant for it, and its audit trail shows the refusal.
        kms = boto_kms(a)
        grants = kms.list_grants(KeyId=key["KeyId"])["Grants"]
        assert [g["GranteePrincipal"] for g in grants] == (
            [principal] if rights == "DescribeKey only" else []
        )
        trail = (a.kms_dir / "audit" / "kms.jsonl").read_text().splitlines()
        refused = [
            event
            for event in map(json.loads, trail)
            if event["userIdentity"].get("arn") == principal
        ]
        assert refused and refused[-1]["errorCode"] == "AccessDeniedException"
    finally:
        assert a.stop() == 0
