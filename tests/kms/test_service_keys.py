"""Keys over the wire with boto3: CreateKey, DescribeKey, ListKeys, Enable/Disable, deletion."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sealmq.kms.errors import KmsError
from sealmq.kms.service import open_key_service
from tests.kms.support import DAY, Kms, kms_error

CTX = {"purpose": "test"}


def test_create_and_describe_key_metadata(kms: Kms, admin: Any) -> None:
    meta = admin.create_key(Description="orders", Tags=[{"TagKey": "team", "TagValue": "mq"}])[
        "KeyMetadata"
    ]
    uuid.UUID(meta["KeyId"])
    account = kms.service.account_id
    assert len(account) == 12 and account.isdigit()
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:{account}:key/{meta['KeyId']}"
    assert meta["AWSAccountId"] == account
    assert meta["Enabled"] is True and meta["KeyState"] == "Enabled"
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["KeySpec"] == meta["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["Origin"] == "AWS_KMS"
    assert meta["Description"] == "orders"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert "DeletionDate" not in meta
    for ref in (meta["KeyId"], meta["Arn"]):
        assert admin.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == meta["KeyId"]
    admin.create_alias(AliasName="alias/orders", TargetKeyId=meta["KeyId"])
    for ref in ("alias/orders", f"arn:aws:kms:us-east-1:{account}:alias/orders"):
        assert admin.describe_key(KeyId=ref)["KeyMetadata"]["Arn"] == meta["Arn"]


def test_describe_unknown_keys(admin: Any) -> None:
    with kms_error("NotFoundException", "does not exist"):
        admin.describe_key(KeyId=str(uuid.uuid4()))
    with kms_error("NotFoundException", "is not found"):
        admin.describe_key(KeyId="alias/nothing")
    with kms_error("NotFoundException"):
        admin.describe_key(KeyId=f"arn:aws:kms:eu-west-1:123456789012:key/{uuid.uuid4()}")
    with kms_error("NotFoundException"):
        admin.describe_key(KeyId="not-a-key")


def test_create_key_refuses_what_it_cannot_make(admin: Any) -> None:
    with kms_error("UnsupportedOperationException"):
        admin.create_key(KeySpec="RSA_2048")
    with kms_error("UnsupportedOperationException"):
        admin.create_key(KeyUsage="SIGN_VERIFY")
    with kms_error("UnsupportedOperationException"):
        admin.create_key(Origin="EXTERNAL")
    with kms_error("UnsupportedOperationException"):
        admin.create_key(MultiRegion=True)
    with kms_error("MalformedPolicyDocumentException"):
        admin.create_key(Policy="{not json")
    with kms_error("TagException"):
        admin.create_key(Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])


def test_list_keys_pages_and_hides_the_service_owned_key(kms: Kms, admin: Any) -> None:
    made = [admin.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]
    listed = admin.list_keys()
    ids = [k["KeyId"] for k in listed["Keys"]]
    assert ids == made and listed["Truncated"] is False
    assert kms.service.service_owned_key_id not in ids
    for key in listed["Keys"]:
        assert key["KeyArn"].endswith(f":key/{key['KeyId']}")
    first = admin.list_keys(Limit=2)
    assert first["Truncated"] is True and len(first["Keys"]) == 2
    second = admin.list_keys(Limit=2, Marker=first["NextMarker"])
    assert [k["KeyId"] for k in first["Keys"] + second["Keys"]] == made
    assert second["Truncated"] is False
    with kms_error("InvalidMarkerException"):
        admin.list_keys(Marker="bogus")
    managed = kms.service.service_managed_key()["KeyId"]
    assert managed in [k["KeyId"] for k in admin.list_keys()["Keys"]]


def test_other_principals_cannot_create_or_list_keys(kms: Kms) -> None:
    _, client = kms.principal("app")
    with kms_error("AccessDeniedException", "kms:CreateKey"):
        client.create_key()
    with kms_error("AccessDeniedException", "kms:ListKeys"):
        client.list_keys()
    with kms_error("AccessDeniedException", "kms:ListAliases"):
        client.list_aliases()


def test_a_disabled_key_does_nothing_cryptographic(admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    blob = admin.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext=CTX)["CiphertextBlob"]
    admin.disable_key(KeyId=key)
    meta = admin.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled" and meta["Enabled"] is False
    with kms_error("DisabledException", "is disabled"):
        admin.decrypt(CiphertextBlob=blob, EncryptionContext=CTX)
    with kms_error("DisabledException"):
        admin.encrypt(KeyId=key, Plaintext=b"x")
    with kms_error("DisabledException"):
        admin.generate_data_key(KeyId=key, KeySpec="AES_256")
    with kms_error("DisabledException"):
        admin.generate_data_key_without_plaintext(KeyId=key, KeySpec="AES_256")
    with kms_error("DisabledException"):
        admin.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=CTX, DestinationKeyId=key)
    admin.disable_key(KeyId=key)  # disabling twice is fine
    admin.enable_key(KeyId=key)
    assert admin.decrypt(CiphertextBlob=blob, EncryptionContext=CTX)["Plaintext"] == b"secret"


def test_scheduled_deletion_and_its_key_state(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/doomed", TargetKeyId=key)
    blob = admin.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    with kms_error("ValidationException", "pendingWindowInDays"):
        admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=31)
    scheduled = admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    assert scheduled["KeyId"].endswith(key)
    meta = admin.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    assert meta["DeletionDate"] == scheduled["DeletionDate"]
    with kms_error("KMSInvalidStateException", "pending deletion"):
        admin.decrypt(CiphertextBlob=blob)
    with kms_error("KMSInvalidStateException", "pending deletion"):
        admin.encrypt(KeyId=key, Plaintext=b"x")
    with kms_error("KMSInvalidStateException"):
        admin.generate_data_key(KeyId="alias/doomed", NumberOfBytes=32)
    with kms_error("KMSInvalidStateException"):
        admin.enable_key(KeyId=key)
    with kms_error("KMSInvalidStateException"):
        admin.disable_key(KeyId=key)
    with kms_error("KMSInvalidStateException"):
        admin.schedule_key_deletion(KeyId=key)
    with kms_error("KMSInvalidStateException"):
        admin.create_alias(AliasName="alias/late", TargetKeyId=key)
    with kms_error("KMSInvalidStateException"):
        admin.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}])
    with kms_error("KMSInvalidStateException"):
        admin.enable_key_rotation(KeyId=key)
    assert admin.get_key_policy(KeyId=key)["Policy"]  # reading still works
    cancelled = admin.cancel_key_deletion(KeyId=key)
    assert cancelled["KeyId"].endswith(key)
    meta = admin.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled" and "DeletionDate" not in meta
    with kms_error("KMSInvalidStateException", "is not pending deletion"):
        admin.cancel_key_deletion(KeyId=key)
    admin.enable_key(KeyId=key)
    assert admin.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"


def test_a_deleted_key_and_its_ciphertexts_are_gone(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/short-lived", TargetKeyId=key)
    blob = admin.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    with kms_error("ValidationException"):
        admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=31)
    admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=1)  # test minimum is 1 day
    kms.clock.advance(DAY - 60)
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    kms.clock.advance(120)
    with kms_error("NotFoundException"):
        admin.describe_key(KeyId=key)
    with kms_error("AccessDeniedException", "does not exist"):
        admin.decrypt(CiphertextBlob=blob)
    assert "alias/short-lived" not in [a["AliasName"] for a in admin.list_aliases()["Aliases"]]
    assert key not in [k["KeyId"] for k in admin.list_keys()["Keys"]]
    assert key not in kms.service.keystore.keys


def test_default_minimum_pending_window_is_seven_days(tmp_path: Path) -> None:
    with open_key_service(tmp_path / "d") as service:
        key = service.call("CreateKey")["KeyMetadata"]["KeyId"]
        with pytest.raises(KmsError, match="greater than or equal to 7") as info:
            service.call("ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": 6})
        assert info.value.code == "ValidationException"
        assert service.call("ScheduleKeyDeletion", {"KeyId": key})["PendingWindowInDays"] == 30


def test_management_operations_refuse_aliases(admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/k", TargetKeyId=key)
    with kms_error("NotFoundException", "Invalid keyId"):
        admin.disable_key(KeyId="alias/k")
