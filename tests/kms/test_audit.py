"""The audit trail: every call once, CloudTrail's shape, no secrets, a chain that shows edits."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from sealmq.kms import audit as audit_module
from sealmq.kms.audit import (
    DAMAGE_FIELD,
    GENESIS_HASH,
    AuditLog,
    Checkpoint,
    audit_files,
    verify_audit,
)
from sealmq.kms.keystore import KEYSTORE_FILE
from sealmq.kms.service import open_key_service
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
    key = create["responseElements"]["keyMetadata"]["keyId"]
    assert key
    for event in events:  # CloudTrail's eventTime: UTC, whole seconds
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", event["eventTime"]), event
    encrypt = next(e for e in events if e["eventName"] == "Encrypt" and "errorCode" not in e)
    assert encrypt["requestParameters"]["keyId"] == key
    assert encrypt["requestParameters"]["encryptionContext"] == CTX
    # CloudTrail names CreateAlias's key targetKeyId (and the key is in resources).
    alias = next(e for e in events if e["eventName"] == "CreateAlias")
    assert alias["requestParameters"] == {"aliasName": "alias/audited", "targetKeyId": key}
    assert alias["resources"][0]["ARN"].endswith(f":key/{key}")
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
    # Without the key service's checkpoint, a cut tail shows only against a head kept elsewhere.
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


def _log_of(path: Path, *names: str) -> AuditLog:
    log = AuditLog(path)
    for name in names:
        log.record({"eventName": name})
    return log


def test_a_checkpoint_shows_a_cut_or_rewritten_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    with _log_of(path, "One", "Two", "Three") as log:
        checkpoint = log.checkpoint()
    assert checkpoint == Checkpoint(3, log.head)
    assert verify_audit(path, checkpoint=checkpoint) == (True, None, "")
    lines = path.read_bytes().splitlines(keepends=True)
    with AuditLog(path) as log:  # lines written after the checkpoint are fine
        log.record({"eventName": "Four"})
    assert verify_audit(path, checkpoint=checkpoint) == (True, None, "")
    path.write_bytes(b"".join(lines[:2]))  # the last checkpointed line deleted
    ok, line, reason = verify_audit(path, checkpoint=checkpoint)
    assert (ok, line) == (False, 3) and "cut" in reason
    path.write_bytes(b"")
    assert verify_audit(path, checkpoint=checkpoint)[:2] == (False, 1)
    # A tail rewritten with its hashes recomputed keeps the chain but not the checkpoint.
    path.write_bytes(b"".join(lines[:1]))
    with AuditLog(path) as log:
        log.record({"eventName": "Forged"})
        log.record({"eventName": "Three"})
    assert verify_audit(path) == (True, None, "")
    ok, line, reason = verify_audit(path, checkpoint=checkpoint)
    assert (ok, line) == (False, 3) and "rewritten" in reason
    # A wrong expected head fails too, at the end.
    path.write_bytes(b"".join(lines))
    ok, line, _ = verify_audit(path, "f" * 64, checkpoint=checkpoint)
    assert (ok, line) == (False, 4)


def test_a_trail_shrinking_under_a_running_log_is_logged_and_written_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    log = _log_of(path, "One", "Two", "Three")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))  # someone cuts the last line
    with caplog.at_level(logging.ERROR, logger="sealmq.kms.audit"):
        assert log.checkpoint() == Checkpoint(3, log.head)  # not seen yet: nothing read
        log.record({"eventName": "Four"})
        assert log.checkpoint() == Checkpoint(3, log.head)  # the note is written: checkpoints go on
    log.close()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "shrank" in caplog.records[0].getMessage()
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert last["eventName"] == "Four" and "shrank" in last["additionalEventData"][DAMAGE_FIELD][0]
    # The chain itself continues from the true last line; the note fails verification.
    ok, line, reason = verify_audit(path)
    assert (ok, line) == (False, 3) and "damaged" in reason


def test_opening_a_trail_shorter_than_its_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    with _log_of(path, "One", "Two", "Three") as log:
        checkpoint = log.checkpoint()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))
    with caplog.at_level(logging.ERROR, logger="sealmq.kms.audit"):
        log = AuditLog(path, checkpoint=checkpoint)
    assert "cut" in caplog.records[0].getMessage()
    assert log.checkpoint() is None  # vouches for nothing until the damage is written down
    log.record({"eventName": "Next"})
    log.close()
    damage = json.loads(path.read_bytes().splitlines()[-1])["additionalEventData"][DAMAGE_FIELD]
    assert "checkpointed 3" in damage[0]


def test_the_service_seals_its_checkpoint_on_save_and_close(tmp_path: Path) -> None:
    with open_key_service(tmp_path, audit_fsync=False) as service:
        key = service.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        # CreateKey saved the keystore before its own line was written.
        assert service.keystore.audit_checkpoint == Checkpoint(0, GENESIS_HASH)
        sealed = (tmp_path / "keys" / KEYSTORE_FILE).stat()
        for _ in range(5):
            service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})
        # The hot path writes no sealed file.
        assert (tmp_path / "keys" / KEYSTORE_FILE).stat().st_mtime_ns == sealed.st_mtime_ns
        audit = service.audit_log
        assert audit is not None
        head = audit.head
    with open_key_service(tmp_path) as service:
        assert service.keystore.audit_checkpoint == Checkpoint(6, head)
        # Reopening with nothing written does not move it back or forth.
    with open_key_service(tmp_path) as service:
        assert service.keystore.audit_checkpoint == Checkpoint(6, head)
    trail = tmp_path / "audit" / "kms.jsonl"
    assert verify_audit(trail, checkpoint=Checkpoint(6, head)) == (True, None, "")


def test_a_cut_trail_does_not_move_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_key_service(tmp_path, audit_fsync=False) as service:
        for _ in range(4):
            service.call("GenerateRandom", {"NumberOfBytes": 8})
    trail = tmp_path / "audit" / "kms.jsonl"
    lines = trail.read_bytes().splitlines(keepends=True)
    trail.write_bytes(b"".join(lines[:3]))
    with (
        caplog.at_level(logging.ERROR, logger="sealmq.kms.audit"),
        open_key_service(tmp_path) as service,
    ):
        checkpoint = service.keystore.audit_checkpoint
        assert checkpoint is not None and checkpoint.lines == 4
        for _ in range(3):  # past the old checkpoint: the first line says what was found
            service.call("GenerateRandom", {"NumberOfBytes": 8})
    assert any("checkpointed 4" in r.getMessage() for r in caplog.records)
    ok, line, reason = verify_audit(trail, checkpoint=checkpoint)
    assert (ok, line) == (False, 4), reason
    # The checkpoint moved on once the damage was written down; the note keeps failing.
    with open_key_service(tmp_path) as service:
        later = service.keystore.audit_checkpoint
    assert later is not None and later.lines == 6
    ok, line, reason = verify_audit(trail, checkpoint=later)
    assert (ok, line) == (False, 4) and "damaged" in reason


def test_busy_services_checkpoint_every_so_many_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "CHECKPOINT_LINES", 5)
    with open_key_service(tmp_path, audit_fsync=False) as service:
        for _ in range(4):
            service.call("GenerateRandom", {"NumberOfBytes": 8})
        assert service.keystore.audit_checkpoint is None
        service.call("GenerateRandom", {"NumberOfBytes": 8})
        assert service.keystore.audit_checkpoint is not None
        assert service.keystore.audit_checkpoint.lines == 5


# -- rotation by size -----------------------------------------------------------------------


def _event(number: int) -> dict[str, Any]:
    return {"eventName": "Encrypt", "n": number, "pad": "x" * 100}


def _write(path: Path, count: int, *, start: int = 0, max_bytes: int = 1000) -> AuditLog:
    log = AuditLog(path, fsync=False, max_bytes=max_bytes)
    for number in range(start, start + count):
        log.record(_event(number))
    return log


def test_the_trail_rotates_by_size_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    with _write(path, 30) as log:
        head, lines = log.head, len(log)
    files = audit_files(path)
    names = [f.name for f in files]
    assert names[-1] == "kms.jsonl" and names[0] == "kms.000001.jsonl" and len(files) >= 4
    assert names[:-1] == [f"kms.{n:06d}.jsonl" for n in range(1, len(files))]
    assert all(f.stat().st_size <= 1000 for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    events = [json.loads(line) for f in files for line in f.read_bytes().splitlines()]
    assert [e["n"] for e in events] == list(range(30)) and lines == 30
    # Each new file's first line chains to the previous file's last line and names it.
    seen = 0
    for before, after in itertools.pairwise(files):
        seen += len(before.read_bytes().splitlines())
        first = json.loads(after.read_bytes().splitlines()[0])
        last = before.read_bytes().splitlines()[-1]
        assert first["previousHash"] == hashlib.sha256(last).hexdigest()
        assert first["previousFile"] == {"name": before.name, "lines": seen}
    assert verify_audit(path, head, checkpoint=Checkpoint(lines, head)) == (True, None, "")
    # Reopened, the trail goes on counting lines across files.
    with _write(path, 5, start=30) as log:
        assert len(log) == 35
        assert log.checkpoint() == Checkpoint(35, log.head)
    assert verify_audit(path) == (True, None, "")


def test_verify_audit_finds_a_removed_or_reordered_file_and_an_edited_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    _write(path, 30).close()
    files = audit_files(path)
    rotated = files[:-1]
    assert len(rotated) >= 3
    saved = {f: f.read_bytes() for f in files}

    def restore() -> None:
        for f in path.parent.iterdir():
            f.unlink()
        for f, data in saved.items():
            f.write_bytes(data)
            f.chmod(0o600)
        assert verify_audit(path) == (True, None, "")

    middle = rotated[1]
    middle.unlink()
    ok, line, reason = verify_audit(path)
    assert not ok and line is None and f"{middle.name} is missing" in reason
    # Renumbering the later files to hide the gap still breaks the chain, by name.
    for before, after in itertools.pairwise(rotated[1:]):
        after.rename(before)
    ok, line, reason = verify_audit(path)
    assert not ok and f"not {rotated[0].name} after {len(saved[rotated[0]].splitlines())}" in reason
    assert "a file was removed, replaced or reordered" in reason, reason
    restore()
    # One byte edited in a rotated file: the next line's link breaks, numbered trail-wide.
    lines_before = len(saved[rotated[0]].splitlines())
    middle.write_bytes(saved[middle].replace(b'"n":', b'"m":', 1))
    ok, line, reason = verify_audit(path)
    assert not ok and line == lines_before + 2, reason
    assert reason.startswith(f"{middle.name} line 2: previousHash does not match"), reason
    restore()
    # The oldest file removed: the trail cannot be checked from its start.
    rotated[0].unlink()
    ok, line, reason = verify_audit(path)
    assert not ok and "kms.000001.jsonl is missing" in reason


def test_two_writers_follow_each_others_rotations(tmp_path: Path) -> None:
    """A broker and the ``sealmq kms`` command append to one trail; either may rotate it."""
    path = tmp_path / "audit" / "kms.jsonl"
    first = AuditLog(path, fsync=False, max_bytes=1000)
    second = AuditLog(path, fsync=False, max_bytes=1000)
    try:
        for number in range(40):
            (first if number % 3 else second).record(_event(number))
    finally:
        first.close()
        second.close()
    assert len(audit_files(path)) >= 4
    events = [json.loads(line) for f in audit_files(path) for line in f.read_bytes().splitlines()]
    assert [e["n"] for e in events] == list(range(40))
    assert verify_audit(path) == (True, None, "")


def test_a_crash_right_after_a_rotation_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "kms.jsonl"
    _write(path, 12).close()
    # As if the process died between renaming the live file and writing the new one.
    number = len(audit_files(path))
    path.rename(path.with_name(f"kms.{number:06d}.jsonl"))
    assert verify_audit(path) == (True, None, "")
    with _write(path, 3, start=12) as log:
        assert len(log) == 15
    first = json.loads(path.read_bytes().splitlines()[0])
    assert first["previousFile"] == {"name": f"kms.{number:06d}.jsonl", "lines": 12}
    assert verify_audit(path) == (True, None, "")


def test_the_service_rotates_its_trail_past_audit_max_bytes(tmp_path: Path) -> None:
    with open_key_service(tmp_path, audit_fsync=False, audit_max_bytes=4096) as service:
        key = service.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        for _ in range(20):
            service.call("Encrypt", {"KeyId": key, "Plaintext": b"x"})
        lines = len(service.audit_log or [])
    trail = tmp_path / "audit" / "kms.jsonl"
    assert len(audit_files(trail)) >= 3 and lines == 21
    with open_key_service(tmp_path) as service:
        checkpoint = service.keystore.audit_checkpoint
    assert checkpoint is not None and checkpoint.lines == 21
    assert verify_audit(trail, checkpoint=checkpoint) == (True, None, "")
