"""``sealmq kms ...``: AWS-CLI-shaped JSON, one-line errors, the keystore with no broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sealmq.kms.service import open_key_service
from tests.cli.support import cli, cli_json, cli_process


@pytest.fixture
def data(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def kms(data: str, *args: str) -> Any:
    return cli_json("kms", *args, "--data-dir", data)


def test_a_key_and_its_alias_in_one_step_before_any_broker(data: str) -> None:
    made = kms(data, "create-key", "--description", "orders", "--alias", "alias/orders")
    meta = made["KeyMetadata"]
    assert made["AliasName"] == "alias/orders"
    assert meta["Description"] == "orders" and meta["KeyManager"] == "CUSTOMER"
    # Dates as the AWS CLI prints them.
    assert meta["CreationDate"].endswith("+00:00") and "T" in meta["CreationDate"]
    assert kms(data, "describe-key", "--key-id", "alias/orders")["KeyMetadata"] == meta
    assert kms(data, "list-keys") == {"Keys": [{"KeyId": meta["KeyId"], "KeyArn": meta["Arn"]}]}
    aliases = kms(data, "list-aliases", "--key-id", meta["KeyId"])["Aliases"]
    assert [a["AliasName"] for a in aliases] == ["alias/orders"]
    # The credentials file boto3 and the AWS CLI use is there from the start.
    assert (Path(data) / "credentials").stat().st_mode & 0o777 == 0o600


def test_grants_disable_enable_deletion_rotation(data: str) -> None:
    key = kms(data, "create-key")["KeyMetadata"]["KeyId"]
    principal = "arn:aws:iam::111122223333:role/reader"
    grant = kms(
        data,
        "create-grant",
        "--key-id",
        key,
        "--grantee-principal",
        principal,
        "--operations",
        "Decrypt",
        "Encrypt",
        "--constraints",
        json.dumps({"EncryptionContextSubset": {"app": "x"}}),
    )
    assert set(grant) == {"GrantId", "GrantToken"}
    [listed] = kms(data, "list-grants", "--key-id", key)["Grants"]
    assert listed["GrantId"] == grant["GrantId"] and listed["GranteePrincipal"] == principal
    assert (
        cli(
            "kms",
            "revoke-grant",
            "--key-id",
            key,
            "--grant-id",
            grant["GrantId"],
            "--data-dir",
            data,
        ).stdout
        == ""
    )
    assert kms(data, "list-grants", "--key-id", key) == {"Grants": []}
    assert kms(data, "disable-key", "--key-id", key) is None  # prints nothing, as the AWS CLI
    assert kms(data, "describe-key", "--key-id", key)["KeyMetadata"]["KeyState"] == "Disabled"
    kms(data, "enable-key", "--key-id", key)
    assert kms(data, "rotate-key", "--key-id", key)["KeyId"].endswith(key)
    scheduled = kms(data, "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    assert scheduled["DeletionDate"].endswith("+00:00")
    kms(data, "cancel-key-deletion", "--key-id", key)
    assert kms(data, "describe-key", "--key-id", key)["KeyMetadata"]["KeyState"] == "Disabled"


def test_errors_are_one_line_and_non_zero(data: str) -> None:
    for args, said in (
        (("describe-key", "--key-id", "alias/none"), "NotFoundException"),
        (
            (
                "create-grant",
                "--key-id",
                "alias/none",
                "--grantee-principal",
                "p",
                "--operations",
                "Decrypt",
            ),
            "NotFoundException",
        ),
        (
            (
                "create-grant",
                "--key-id",
                "k",
                "--grantee-principal",
                "p",
                "--operations",
                "Decrypt",
                "--constraints",
                "{",
            ),
            "not JSON",
        ),
        (
            ("schedule-key-deletion", "--key-id", "1234abcd-12ab-34cd-56ef-1234567890ab"),
            "does not exist",
        ),
    ):
        result = cli("kms", *args, "--data-dir", data)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr.startswith("sealmq: ") and result.stderr.count("\n") == 1
        assert said in result.stderr
    # The alias of a failed create-key is not left half-made.
    kms(data, "create-key", "--alias", "alias/taken")
    result = cli("kms", "create-key", "--alias", "alias/taken", "--data-dir", data)
    assert result.returncode == 1 and "AlreadyExists" in result.stderr
    keys = kms(data, "list-keys")["Keys"]
    states = [
        kms(data, "describe-key", "--key-id", k["KeyId"])["KeyMetadata"]["KeyState"] for k in keys
    ]
    assert sorted(states) == ["Enabled", "PendingDeletion"]


def test_verify_audit_finds_an_edited_line(data: str) -> None:
    kms(data, "create-key")
    kms(data, "create-key")
    verified = kms(data, "verify-audit")
    assert verified["Valid"] is True and verified["Lines"] >= 1
    assert kms(data, "verify-audit", "--expected-head", verified["Head"])["Valid"] is True
    trail = Path(data) / "audit" / "kms.jsonl"
    trail.write_bytes(trail.read_bytes().replace(b"CreateKey", b"CreateKez", 1))
    result = cli("kms", "verify-audit", "--data-dir", data)
    assert result.returncode == 1 and "is broken at line 2" in result.stderr


def test_a_real_process_prints_the_same(data: str) -> None:
    result = cli_process("kms", "create-key", "--alias", "alias/p", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)["KeyMetadata"]["KeyId"]
    service = open_key_service(Path(data))
    try:
        assert service.call("DescribeKey", {"KeyId": "alias/p"})["KeyMetadata"]["KeyId"] == key
    finally:
        service.close()
    missing = cli_process("kms", "describe-key", "--key-id", "alias/none", "--data-dir", data)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1


def test_broker_commands_without_a_broker(data: str) -> None:
    for args in (
        ("status",),
        ("broker", "restore-key-access"),
        ("broker", "rotate-data-keys"),
        ("broker", "delete", "--yes"),
    ):
        result = cli(*args, "--data-dir", data)
        assert result.returncode == 1, args
        assert "no broker has been created" in result.stderr
