"""Aliases over the wire: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from typing import Any

from tests.kms.support import Kms, kms_error


def test_alias_lifecycle(kms: Kms, admin: Any) -> None:
    first = admin.create_key()["KeyMetadata"]["KeyId"]
    second = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/app/orders", TargetKeyId=first)
    blob = admin.encrypt(KeyId="alias/app/orders", Plaintext=b"x")["CiphertextBlob"]
    aliases = {a["AliasName"]: a for a in admin.list_aliases()["Aliases"]}
    entry = aliases["alias/app/orders"]
    assert entry["TargetKeyId"] == first
    assert entry["AliasArn"] == f"arn:aws:kms:us-east-1:{kms.service.account_id}:alias/app/orders"
    assert entry["CreationDate"] == entry["LastUpdatedDate"]
    # KMS lists the predefined AWS alias even before its key exists.
    assert "TargetKeyId" not in aliases["alias/aws/mq"]

    admin.update_alias(AliasName="alias/app/orders", TargetKeyId=second)
    assert admin.describe_key(KeyId="alias/app/orders")["KeyMetadata"]["KeyId"] == second
    assert admin.decrypt(CiphertextBlob=blob)["KeyId"].endswith(first)  # the blob names its key
    by_key = admin.list_aliases(KeyId=second)["Aliases"]
    assert [a["AliasName"] for a in by_key] == ["alias/app/orders"]
    assert admin.list_aliases(KeyId=first)["Aliases"] == []

    admin.delete_alias(AliasName="alias/app/orders")
    with kms_error("NotFoundException", "is not found"):
        admin.describe_key(KeyId="alias/app/orders")
    with kms_error("NotFoundException"):
        admin.delete_alias(AliasName="alias/app/orders")
    with kms_error("NotFoundException"):
        admin.update_alias(AliasName="alias/app/orders", TargetKeyId=first)


def test_alias_names_are_checked(admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/taken", TargetKeyId=key)
    with kms_error("AlreadyExistsException", "already exists"):
        admin.create_alias(AliasName="alias/taken", TargetKeyId=key)
    with kms_error("ValidationException", "alias/"):
        admin.create_alias(AliasName="no-prefix", TargetKeyId=key)
    with kms_error("InvalidAliasNameException"):
        admin.create_alias(AliasName="alias/bad name!", TargetKeyId=key)
    with kms_error("NotAuthorizedException"):
        admin.create_alias(AliasName="alias/aws/mine", TargetKeyId=key)
    with kms_error("ValidationException", "Aliases must refer to keys"):
        admin.create_alias(AliasName="alias/other", TargetKeyId="alias/taken")
    with kms_error("NotFoundException"):
        admin.create_alias(
            AliasName="alias/other", TargetKeyId="1234abcd-12ab-34cd-56ef-1234567890ab"
        )


def test_aliases_page(admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    for i in range(5):
        admin.create_alias(AliasName=f"alias/a{i}", TargetKeyId=key)
    seen: list[str] = []
    marker: dict[str, str] = {}
    while True:
        out = admin.list_aliases(Limit=2, **marker)
        seen += [a["AliasName"] for a in out["Aliases"]]
        if not out["Truncated"]:
            break
        marker = {"Marker": out["NextMarker"]}
    assert seen == sorted(seen) and len(seen) == 6  # five plus alias/aws/mq
