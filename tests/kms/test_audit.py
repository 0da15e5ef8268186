"""The audit trail: every call once, CloudTrail's shape, no secrets, a chain that shows edits."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

from botocore import xform_name
from botocore.exceptions import ClientError

from sealmq.kms.audit import GENESIS_HASH, AuditLog, verify_audit
from tests.kms.support import Kms, error_code

CTX = {"broker": "b-1"}


def _scenario(kms: Kms, admin: Any) -> tuple[list[tuple[str, str, str | None]], list[bytes]]:
    """Run calls that succeed and fail; (request id, operation, error code) and secrets seen."""
    calls: list[tuple[str, str, str | None]] = []
    secrets: list[bytes] = []
    arn, broker = kms.principal("broker")

    def run(client: Any, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(client, xform_name(operation))
        try:
            response: dict[str, Any] = method(**params)
        except ClientError as exc:
            calls.append(
                (exc.response["ResponseMetadata"]["RequestId"], operation, error_code(exc))
            )
            return {}
        calls.append((response["ResponseMetadata"]["RequestId"], operation, None))
        return response

    key = run(admin, "CreateKey", Description="audited")["KeyMetadata"]["KeyId"]
    run(admin, "CreateAlias", AliasName="alias/audited", TargetKeyId=key)
    out = run(admin, "Encrypt", KeyId=key, Plaintext=b"top secret plaintext", EncryptionContext=CTX)
    secrets += [b"top secret plaintext", out["CiphertextBlob"]]
    data_key = run(admin, "GenerateDataKey", KeyId=key, KeySpec="AES_256", EncryptionContext=CTX)
    secrets += [data_key["Plaintext"], data_key["CiphertextBlob"]]
    run(admin, "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"wrong": "ctx"})
    grant = run(admin, "CreateGrant", KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"])
    secrets.append(grant["GrantToken"].encode())
    run(broker, "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext=CTX)
    run(broker, "Encrypt", KeyId=key, Plaintext=b"denied")
    run(admin, "RevokeGrant", KeyId=key, GrantId=grant["GrantId"])
    run(admin, "DisableKey", KeyId=key)
    run(admin, "DescribeKey", KeyId="alias/nope")
    random = run(admin, "GenerateRandom", NumberOfBytes=32)
    secrets.append(random["Plaintext"])
    return calls, secrets


def test_every_call_appears_once_in_order(kms: Kms, admin: Any) -> None:
    before = len(kms.audit())
    calls, _ = _scenario(kms, admin)
    events = kms.audit()[before:]
    assert [(e["requestID"], e["eventName"], e.get("errorCode")) for e in events] == calls
    assert len({e["eventID"] for e in events}) == len(events)


def test_events_are_cloudtrail_shaped_and_hold_no_secrets(kms: Kms, admin: Any) -> None:
    _, secrets = _scenario(kms, admin)
    raw = kms.audit_path.read_bytes()
    for secret in secrets:
        for form in (secret, base64.b64encode(secret), secret.hex().encode()):
            assert form not in raw
    assert b"Plaintext" not in raw and b"CiphertextBlob" not in raw and b"GrantToken" not in raw
    material = [v.material for k in kms.service.keystore.keys.values() for v in k.versions]
    for m in material:
        assert m not in raw and base64.b64encode(m) not in raw
    events = kms.audit()
    decrypt = next(e for e in events if e["eventName"] == "Decrypt" and "errorCode" not in e)
    assert decrypt["eventVersion"] and decrypt["eventSource"] == "kms.amazonaws.com"
    assert decrypt["awsRegion"] == "us-east-1" and decrypt["readOnly"] is True
    assert decrypt["userIdentity"]["type"] == "AssumedRole"
    assert decrypt["userIdentity"]["arn"].endswith(":role/broker")
    assert decrypt["userIdentity"]["accessKeyId"].startswith("AKIA")
    assert decrypt["sourceIPAddress"] == "127.0.0.1"
    assert decrypt["requestParameters"]["encryptionContext"] == CTX
    assert decrypt["resources"][0]["type"] == "AWS::KMS::Key"
    assert len(decrypt["eventID"]) == 36
    create = next(e for e in events if e["eventName"] == "CreateKey")
    assert create["readOnly"] is False and create["userIdentity"]["type"] == "Root"
    assert create["responseElements"]["keyMetadata"]["keyId"]
    failed = next(e for e in events if e.get("errorCode") == "InvalidCiphertextException")
    assert failed["eventName"] == "Decrypt" and "errorMessage" in failed


def test_the_chain_verifies_and_shows_edits(kms: Kms, admin: Any, tmp_path: Path) -> None:
    _scenario(kms, admin)
    path = kms.audit_path
    assert verify_audit(path) == (True, None, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[0])["previousHash"] == GENESIS_HASH

    def check(mutated: list[bytes], expected_line: int) -> None:
        copy = tmp_path / "copy.jsonl"
        copy.write_bytes(b"".join(mutated))
        ok, line, reason = verify_audit(copy)
        assert not ok and line == expected_line, reason

    edited = list(lines)
    edited[3] = edited[3].replace(b'"awsRegion":"us-east-1"', b'"awsRegion":"us-east-2"')
    assert edited[3] != lines[3]
    check(edited, 5)  # line 4 edited: the link from line 5 breaks
    check(lines[:4] + lines[5:], 5)  # line 5 deleted
    check([lines[1], lines[0], *lines[2:]], 1)  # reordered
    check(lines[1:], 1)  # first line deleted
    check([*lines[:-1], lines[-1][:-10]], len(lines))  # torn last line
    check([*lines[:2], b"not json\n", *lines[2:]], 3)
    # Cutting the tail is only visible against a head kept elsewhere.
    with AuditLog(path) as log:
        head = log.head
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b"".join(lines[:-1]))
    assert verify_audit(copy)[0] is True
    ok, line, _ = verify_audit(copy, expected_head=head)
    assert not ok and line == len(lines)
    assert verify_audit(path, expected_head=head) == (True, None, "")


def test_a_torn_tail_is_cut_on_reopen_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    log = AuditLog(path)
    log.record({"eventName": "One"})
    log.record({"eventName": "Two"})
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"eventName": "Tor')
    reopened = AuditLog(path)
    assert len(reopened) == 2
    reopened.record({"eventName": "Three"})
    reopened.close()
    assert verify_audit(path) == (True, None, "")
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert last["additionalEventData"]["truncatedTailBytes"] == len(b'{"eventName": "Tor')
    assert oct(stat.S_IMODE(os.stat(path).st_mode)) == oct(0o600)
