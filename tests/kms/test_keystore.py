"""The keystore: sealed persistence, private files, account identity, credentials, migration."""

from __future__ import annotations

import base64
import configparser
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from sealmq.kms.audit import Checkpoint
from sealmq.kms.clients import RemoteKeyProvider, ServiceKeyProvider
from sealmq.kms.keystore import (
    KEYSTORE_FILE,
    LEGACY_KEYSTORE_FILE,
    LOCK_FILE,
    ROOT_KEY_FILE,
    Keystore,
    KeystoreError,
)
from sealmq.kms.service import KeyService, open_key_service
from tests.kms.legacy import LegacyKeys
from tests.kms.support import Kms

CTX = {"purpose": "sealmq-journal", "broker": "b1", "segment": "1"}


def _all_secrets(keystore: Keystore) -> list[bytes]:
    found: list[bytes] = []
    for key in keystore.keys.values():
        found += [v.material for v in key.versions]
        if key.wrapped_material is not None:
            found.append(key.wrapped_material)
    found += [a.secret.encode() for a in keystore.access_keys.values()]
    found += [bytes.fromhex(g.token_secret) for g in keystore.grants.values()]
    return found


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = open_key_service(tmp_path)
    key = first.call("CreateKey", {"Description": "kept"})["KeyMetadata"]["KeyId"]
    first.call("CreateAlias", {"AliasName": "alias/kept", "TargetKeyId": key})
    first.call("RotateKeyOnDemand", {"KeyId": key})
    first.call("TagResource", {"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "b"}]})
    grant = first.call(
        "CreateGrant",
        {"KeyId": key, "GranteePrincipal": "arn:aws:iam::1:role/r", "Operations": ["Decrypt"]},
    )
    blob = first.call("Encrypt", {"KeyId": "alias/kept", "Plaintext": b"p"})["CiphertextBlob"]
    managed = first.service_managed_key()["KeyId"]
    first.close()
    second = open_key_service(tmp_path)
    assert second.account_id == first.account_id and second.region == "us-east-1"
    assert second.service_owned_key_id == first.service_owned_key_id
    assert second.keystore.admin_access_key == first.keystore.admin_access_key
    assert second.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == b"p"
    assert (
        second.call("DescribeKey", {"KeyId": "alias/kept"})["KeyMetadata"]["Description"] == "kept"
    )
    assert second.call("ListGrants", {"KeyId": key})["Grants"][0]["GrantId"] == grant["GrantId"]
    assert second.call("ListResourceTags", {"KeyId": key})["Tags"] == [
        {"TagKey": "a", "TagValue": "b"}
    ]
    assert len(second.call("ListKeyRotations", {"KeyId": key})["Rotations"]) == 1
    assert second.service_managed_key()["KeyId"] == managed
    second.close()


def test_files_are_private_and_hold_nothing_in_clear(kms: Kms, admin: Any) -> None:
    key = admin.create_key(Description="some description")["KeyMetadata"]["KeyId"]
    admin.rotate_key_on_demand(KeyId=key)
    arn, _ = kms.principal("broker")
    admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"])
    kms.service.service_managed_key()
    kms.service.create_broker_key(key, kms.service.admin_caller())
    keys_dir = kms.data_dir / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for name in (KEYSTORE_FILE, ROOT_KEY_FILE):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    # kms.lock is empty: only its flock matters.
    assert sorted(p.name for p in keys_dir.iterdir()) == sorted(
        [KEYSTORE_FILE, LOCK_FILE, ROOT_KEY_FILE]
    )
    assert (keys_dir / LOCK_FILE).stat().st_size == 0
    credentials = kms.data_dir / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    sealed = (keys_dir / KEYSTORE_FILE).read_bytes()
    audit = kms.audit_path.read_bytes()
    root = (keys_dir / ROOT_KEY_FILE).read_bytes()
    for secret in [*_all_secrets(kms.service.keystore), root]:
        for form in (secret, base64.b64encode(secret), secret.hex().encode()):
            assert form not in sealed and form not in audit
    # Not even names are in clear.
    for clear in (key.encode(), b"some description", arn.encode(), kms.service.account_id.encode()):
        assert clear not in sealed


def test_a_wrong_root_key_or_open_permissions_are_refused(tmp_path: Path) -> None:
    Keystore.open(tmp_path)
    root = tmp_path / ROOT_KEY_FILE
    os.chmod(tmp_path / KEYSTORE_FILE, 0o644)
    with pytest.raises(KeystoreError, match="chmod"):
        Keystore.open(tmp_path)
    os.chmod(tmp_path / KEYSTORE_FILE, 0o600)
    root.write_bytes(os.urandom(32))
    with pytest.raises(KeystoreError, match="root key"):
        Keystore.open(tmp_path)
    root.write_bytes(b"short")
    with pytest.raises(KeystoreError, match="256-bit"):
        Keystore.open(tmp_path)
    root.unlink()
    with pytest.raises(KeystoreError, match="missing"):
        Keystore.open(tmp_path)
    assert not root.exists()


def test_a_damaged_keystore_is_refused(tmp_path: Path) -> None:
    Keystore.open(tmp_path)
    path = tmp_path / KEYSTORE_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeystoreError, match="cannot be unsealed"):
        Keystore.open(tmp_path)
    path.write_bytes(b"something else entirely")
    with pytest.raises(KeystoreError, match="not a keystore"):
        Keystore.open(tmp_path)


def test_region_and_account_are_chosen_once(tmp_path: Path) -> None:
    made = Keystore.open(tmp_path, region="eu-west-1")
    assert made.region == "eu-west-1" and len(made.account_id) == 12
    assert made.account_id.isdigit() and not made.account_id.startswith("0")
    again = Keystore.open(tmp_path, region="eu-west-1")
    assert again.region == "eu-west-1" and again.account_id == made.account_id
    # Naming its own account id is fine; another region or account id is refused.
    assert Keystore.open(tmp_path, region="eu-west-1", account_id=made.account_id)
    with pytest.raises(KeystoreError, match=r"created for region eu-west-1.*\[kms\] region"):
        Keystore.open(tmp_path, region="us-east-1")
    other = "000000000000" if made.account_id != "000000000000" else "111111111111"
    with pytest.raises(
        KeystoreError, match=rf"created for account {made.account_id}.*\[kms\] account_id"
    ):
        Keystore.open(tmp_path, region="eu-west-1", account_id=other)


def test_an_account_id_chosen_at_creation(tmp_path: Path) -> None:
    with open_key_service(tmp_path, account_id="012345678901") as service:
        assert service.account_id == "012345678901"
        meta = service.call("CreateKey", {})["KeyMetadata"]
        assert meta["AWSAccountId"] == "012345678901"
        assert meta["Arn"].startswith("arn:aws:kms:us-east-1:012345678901:key/")
        assert service.admin_principal == "arn:aws:iam::012345678901:root"
    with open_key_service(tmp_path) as service:  # not named later: kept
        assert service.account_id == "012345678901"
    with pytest.raises(KeystoreError, match=r"012345678901.*111122223333"):
        open_key_service(tmp_path, account_id="111122223333")
    for bad in (
        "12345678901",
        "1234567890123",
        "12345678901a",
        "123456789012\n",
        "１２３４５６７８９０１２",
    ):
        with pytest.raises(KeystoreError, match="12 digits"):
            Keystore.open(tmp_path / "other", account_id=bad)
    assert not (tmp_path / "other").exists()


def test_the_audit_checkpoint_is_sealed_with_the_state(tmp_path: Path) -> None:
    keystore = Keystore.open(tmp_path)
    assert keystore.audit_checkpoint is None
    keystore.track_audit(lambda: Checkpoint(7, "ab" * 32))
    with keystore.lock:
        keystore.save()
    sealed = (tmp_path / KEYSTORE_FILE).read_bytes()
    assert b"ab" * 32 not in sealed
    assert Keystore.open(tmp_path).audit_checkpoint == Checkpoint(7, "ab" * 32)
    # Never moved back: a process that saw fewer lines keeps the further checkpoint.
    behind = Keystore.open(tmp_path)
    behind.track_audit(lambda: Checkpoint(3, "cd" * 32))
    assert behind.save_audit_checkpoint() is False
    with behind.lock:
        behind.save()
    assert Keystore.open(tmp_path).audit_checkpoint == Checkpoint(7, "ab" * 32)
    ahead = Keystore.open(tmp_path)
    ahead.track_audit(lambda: Checkpoint(9, "ef" * 32))
    assert ahead.save_audit_checkpoint() is True
    assert ahead.save_audit_checkpoint() is False  # nothing new: no write
    assert Keystore.open(tmp_path).audit_checkpoint == Checkpoint(9, "ef" * 32)


def test_credentials_file_works_with_botocore(kms: Kms) -> None:
    path = kms.data_dir / "credentials"
    parser = configparser.ConfigParser()
    parser.read(path)
    admin = kms.service.keystore.admin_access_key
    assert parser["default"]["aws_access_key_id"] == admin.access_key_id
    assert parser["default"]["aws_secret_access_key"] == admin.secret
    key = kms.service.call("CreateKey")["KeyMetadata"]["KeyId"]
    remote = RemoteKeyProvider(
        kms.endpoint, key, credentials_file=path, profile="default", verify=str(kms.certs.ca)
    )
    try:
        dek, wrapped = remote.generate_data_key(CTX)
        assert remote.decrypt_data_key(wrapped, CTX) == dek
    finally:
        remote.close()
    # Other profiles a user added are kept when the file is rewritten.
    with open(path, "a") as f:
        f.write("\n[mine]\naws_access_key_id = X\naws_secret_access_key = Y\n")
    kms.service.keystore.write_credentials_file(path)
    parser = configparser.ConfigParser()
    parser.read(path)
    assert parser["mine"]["aws_access_key_id"] == "X"


def test_credentials_file_is_written_as_configparser_writes_it(tmp_path: Path) -> None:
    keystore = Keystore.open(tmp_path / "keys")
    path = tmp_path / "credentials"
    keystore.write_credentials_file(path)
    admin = keystore.admin_access_key
    expected = configparser.ConfigParser(interpolation=None)
    expected["default"] = {
        "aws_access_key_id": admin.access_key_id,
        "aws_secret_access_key": admin.secret,
    }
    with open(tmp_path / "reference", "w") as f:
        expected.write(f)
    assert path.read_bytes() == (tmp_path / "reference").read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A file someone edited (a wrong secret, a comment) is put right, the rest kept.
    path.write_text("# mine\n[default]\naws_access_key_id = old\n[other]\nregion = eu-west-1\n")
    keystore.write_credentials_file(path)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser["default"]["aws_secret_access_key"] == admin.secret
    assert parser["other"]["region"] == "eu-west-1"
    # A file that is not an INI file is refused, not overwritten.
    path.write_text("[default\n")
    with pytest.raises(KeystoreError, match="cannot update"):
        keystore.write_credentials_file(path)
    assert path.read_text() == "[default\n"


def test_access_keys(tmp_path: Path) -> None:
    keystore = Keystore.open(tmp_path)
    made = keystore.create_access_key("arn:aws:iam::1:role/r")
    assert made.access_key_id.startswith("AKIA") and len(made.access_key_id) == 20
    assert made.secret not in repr(made)
    assert Keystore.open(tmp_path).lookup_access_key(made.access_key_id) == made
    assert keystore.delete_access_key(made.access_key_id) is True
    assert keystore.delete_access_key(made.access_key_id) is False
    with pytest.raises(KeystoreError):
        keystore.delete_access_key(keystore.admin_access_key_id)


def test_a_local_key_service_folder_migrates(tmp_path: Path) -> None:
    """Data keys wrapped by the old one-key service unwrap through the new service."""
    keys_dir = tmp_path / "keys"
    legacy = LegacyKeys(keys_dir)
    dek, wrapped = legacy.generate_data_key(CTX)
    service = open_key_service(tmp_path)
    assert service.service_owned_key_id == legacy.key_id
    provider = ServiceKeyProvider(service, service.service_owned_key_id)
    assert provider.key_id == legacy.key_id
    assert provider.decrypt_data_key(wrapped, CTX) == dek
    new_dek, new_wrapped = provider.generate_data_key(CTX)
    assert legacy.decrypt_data_key(new_wrapped, CTX) == new_dek  # the same key, the same blobs
    # The old file is left untouched, and later opens migrate nothing again.
    assert (keys_dir / LEGACY_KEYSTORE_FILE).exists()
    service.close()
    with open_key_service(tmp_path) as again:
        assert again.service_owned_key_id == legacy.key_id


def test_concurrent_calls_from_threads(tmp_path: Path) -> None:
    service: KeyService = open_key_service(tmp_path, audit_fsync=False)
    key = service.call("CreateKey")["KeyMetadata"]["KeyId"]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(20):
                out = service.call(
                    "GenerateDataKey",
                    {"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"i": str(i)}},
                )
                back = service.call(
                    "Decrypt",
                    {"CiphertextBlob": out["CiphertextBlob"], "EncryptionContext": {"i": str(i)}},
                )
                assert back["Plaintext"] == out["Plaintext"]
            service.call("TagResource", {"KeyId": key, "Tags": [{"TagKey": "t", "TagValue": "v"}]})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    service.close()
    lines = (tmp_path / "audit" / "kms.jsonl").read_bytes().splitlines()
    assert len(lines) == 1 + 8 * 41
