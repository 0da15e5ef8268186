"""``sealmq kms ...``: AWS-CLI-shaped JSON, one-line errors, the keystore with no broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sealmq.kms.ciphertext import parse_header
from sealmq.kms.errors import KmsError
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


def _trail(data: str) -> tuple[Path, list[bytes]]:
    trail = Path(data) / "audit" / "kms.jsonl"
    return trail, trail.read_bytes().splitlines(keepends=True)


def _broken_at(data: str, *args: str) -> str:
    result = cli("kms", "verify-audit", *args, "--data-dir", data)
    assert result.returncode == 1 and result.stdout == "", result.stderr
    return result.stderr


def test_verify_audit_finds_a_deleted_last_line_with_no_head_given(data: str) -> None:
    for _ in range(3):
        kms(data, "create-key")
    verified = kms(data, "verify-audit")
    assert verified["Valid"] is True and verified["CheckpointLines"] == verified["Lines"] == 3
    trail, lines = _trail(data)
    trail.write_bytes(b"".join(lines[:-1]))
    said = _broken_at(data)
    assert "is broken at line 3" in said and "checkpointed 3 lines" in said
    # Running verify-audit (or anything else) on the cut trail never moves the checkpoint back.
    assert "is broken at line 3" in _broken_at(data)


def test_verify_audit_finds_a_deleted_middle_line(data: str) -> None:
    for _ in range(3):
        kms(data, "create-key")
    trail, lines = _trail(data)
    trail.write_bytes(b"".join([lines[0], *lines[2:]]))
    assert "is broken at line 2" in _broken_at(data)


def test_verify_audit_with_a_wrong_expected_head(data: str) -> None:
    kms(data, "create-key")
    verified = kms(data, "verify-audit")
    said = _broken_at(data, "--expected-head", "0" * 64)
    assert f"is broken at line {verified['Lines'] + 1}" in said and "expected head" in said
    assert kms(data, "verify-audit", "--expected-head", verified["Head"])["Valid"] is True


def test_verify_audit_finds_a_trail_cut_under_a_running_service(data: str) -> None:
    service = open_key_service(Path(data))
    try:
        key = service.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        for _ in range(3):
            service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})
        service.call("CreateAlias", {"AliasName": "alias/running", "TargetKeyId": key})
        # CreateAlias sealed a checkpoint of the 4 lines before it; then the tail is cut.
        trail, lines = _trail(data)
        assert len(lines) == 5
        trail.write_bytes(b"".join(lines[:3]))
        service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})  # notices, says so
    finally:
        service.close()
    said = _broken_at(data)
    assert "is broken at line 4" in said
    event = json.loads(_trail(data)[1][3])
    assert "shrank" in event["additionalEventData"]["auditTrailDamage"][0]


def test_create_alias_then_describe_and_rotate_then_a_new_version(data: str) -> None:
    key = kms(data, "create-key")["KeyMetadata"]["KeyId"]
    assert kms(data, "create-alias", "--alias-name", "alias/by-cli", "--target-key-id", key) is None
    described = kms(data, "describe-key", "--key-id", "alias/by-cli")["KeyMetadata"]
    assert described["KeyId"] == key
    before = described["CurrentKeyMaterialId"]
    assert kms(data, "rotate-key", "--key-id", key)["KeyId"].endswith(key)
    after = kms(data, "describe-key", "--key-id", key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert after != before
    with open_key_service(Path(data)) as service:
        rotations = service.call("ListKeyRotations", {"KeyId": key})["Rotations"]
        blob = service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})["CiphertextBlob"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert rotations[0]["KeyMaterialId"] == after
    assert parse_header(blob).version == 2


def _config(tmp_path: Path, data: str, kms_lines: str) -> str:
    path = tmp_path / f"sealmq-{len(list(tmp_path.glob('*.toml')))}.toml"
    path.write_text(f"data_dir = {data!r}\n[kms]\n{kms_lines}\n")
    return str(path)


def test_a_shorter_pending_window_from_the_config(data: str, tmp_path: Path) -> None:
    short = _config(tmp_path, data, "min_pending_window_days = 1")
    key = cli_json("kms", "create-key", "--config", short)["KeyMetadata"]["KeyId"]
    scheduled = cli_json(
        "kms",
        "schedule-key-deletion",
        "--key-id",
        key,
        "--pending-window-in-days",
        "1",
        "--config",
        short,
    )
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 1
    # KMS's own minimum, 7 days, when the config does not lower it.
    other = cli_json("kms", "create-key", "--config", _config(tmp_path, data, ""))
    for config in (
        _config(tmp_path, data, ""),
        _config(tmp_path, data, "min_pending_window_days = 7"),
    ):
        result = cli(
            "kms",
            "schedule-key-deletion",
            "--key-id",
            other["KeyMetadata"]["KeyId"],
            "--pending-window-in-days",
            "6",
            "--config",
            config,
        )
        assert result.returncode == 1 and "ValidationException" in result.stderr, result.stderr
    # 0 is no window at all: the configuration is refused, naming the key.
    result = cli(
        "kms", "list-keys", "--config", _config(tmp_path, data, "min_pending_window_days = 0")
    )
    assert result.returncode == 2 and "kms.min_pending_window_days" in result.stderr


def test_a_region_other_than_the_key_services_is_refused(data: str, tmp_path: Path) -> None:
    made = cli_json(
        "kms", "create-key", "--config", _config(tmp_path, data, 'region = "eu-west-1"')
    )
    assert made["KeyMetadata"]["Arn"].startswith("arn:aws:kms:eu-west-1:")
    result = cli("kms", "list-keys", "--config", _config(tmp_path, data, 'region = "us-east-1"'))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "created for region eu-west-1" in result.stderr and "[kms] region" in result.stderr


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


def test_verify_audit_reads_every_rotated_file(data: str, tmp_path: Path) -> None:
    config = _config(tmp_path, data, "audit_max_bytes = 4096")
    for _ in range(12):
        cli_json("kms", "create-key", "--config", config)
    verified = cli_json("kms", "verify-audit", "--config", config)
    files = verified["Files"]
    assert verified["Valid"] is True and verified["Lines"] == 12
    assert len(files) >= 3 and files[0] == "kms.000001.jsonl" and files[-1] == "kms.jsonl"
    audit = Path(data) / "audit"
    assert all((audit / name).stat().st_size <= 4096 for name in files)
    # An edited line in a rotated file.
    first = audit / files[0]
    saved = first.read_bytes()
    first.write_bytes(saved.replace(b"CreateKey", b"CreateKez", 1))
    result = cli("kms", "verify-audit", "--config", config)
    assert result.returncode == 1 and "is broken at line 2" in result.stderr
    assert f"{files[0]} line 2" in result.stderr
    first.write_bytes(saved)
    assert cli_json("kms", "verify-audit", "--config", config)["Valid"] is True
    # A middle file removed.
    (audit / files[1]).unlink()
    result = cli("kms", "verify-audit", "--config", config)
    # (the last rotated file: the live file's first line names it as its predecessor)
    assert result.returncode == 1 and f"continues {files[1]}" in result.stderr
    assert "a file was removed" in result.stderr and result.stderr.count("\n") == 1


def test_a_bad_audit_max_bytes_is_refused(data: str, tmp_path: Path) -> None:
    result = cli("kms", "list-keys", "--config", _config(tmp_path, data, "audit_max_bytes = 10"))
    assert result.returncode != 0 and "kms.audit_max_bytes" in result.stderr


def test_key_policies_and_descriptions_from_the_command(data: str, tmp_path: Path) -> None:
    key = kms(data, "create-key", "--description", "first")["KeyMetadata"]["KeyId"]
    policy = json.loads(kms(data, "get-key-policy", "--key-id", key)["Policy"])
    account = policy["Statement"][0]["Principal"]["AWS"]
    deny_decrypt = {
        "Effect": "Deny",
        "Principal": {"AWS": account},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    policy["Statement"].append(deny_decrypt)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    put = cli(
        "kms", "put-key-policy", "--key-id", key, "--policy", f"file://{path}", "--data-dir", data
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(kms(data, "get-key-policy", "--key-id", key)["Policy"]) == policy
    with open_key_service(Path(data)) as service:
        blob = service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})["CiphertextBlob"]
        with pytest.raises(KmsError, match="explicit deny"):
            service.call("Decrypt", {"CiphertextBlob": blob})
    bad = '{"Statement": []}'
    refused = cli("kms", "put-key-policy", "--key-id", key, "--policy", bad, "--data-dir", data)
    assert refused.returncode == 1 and "MalformedPolicyDocumentException" in refused.stderr
    assert refused.stderr.count("\n") == 1
    kms(data, "update-key-description", "--key-id", key, "--description", "second")
    assert kms(data, "describe-key", "--key-id", key)["KeyMetadata"]["Description"] == "second"
