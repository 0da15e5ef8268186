"""The kinds of key Amazon MQ offers, and per-broker keys for crypto-shredding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sealmq.kms.clients import ServiceKeyProvider
from sealmq.kms.errors import KmsError
from sealmq.kms.service import Caller
from tests.kms.support import Kms, kms_error

CTX = {"broker": "b-1", "purpose": "sealmq-journal"}


def _code(exc: pytest.ExceptionInfo[KmsError]) -> str:
    return exc.value.code


# -- the service-managed key, alias/aws/mq -----------------------------------------------


def test_service_managed_key_is_made_once_and_rotates_yearly(kms: Kms, admin: Any) -> None:
    meta = kms.service.service_managed_key("aws/mq")
    assert kms.service.service_managed_key("alias/aws/mq")["KeyId"] == meta["KeyId"]
    assert meta["KeyManager"] == "AWS" and meta["KeyState"] == "Enabled"
    described = admin.describe_key(KeyId="alias/aws/mq")["KeyMetadata"]
    assert described["KeyId"] == meta["KeyId"] and described["KeyManager"] == "AWS"
    status = admin.get_key_rotation_status(KeyId=meta["KeyId"])
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365
    aliases = {a["AliasName"]: a for a in admin.list_aliases()["Aliases"]}
    assert aliases["alias/aws/mq"]["TargetKeyId"] == meta["KeyId"]
    policy = json.loads(admin.get_key_policy(KeyId=meta["KeyId"])["Policy"])
    assert "mq.us-east-1.amazonaws.com" in json.dumps(policy)


def test_describing_the_alias_creates_the_service_managed_key(admin: Any) -> None:
    meta = admin.describe_key(KeyId="alias/aws/mq")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    assert meta["KeyId"] in [k["KeyId"] for k in admin.list_keys()["Keys"]]


def test_the_account_cannot_manage_the_service_managed_key(kms: Kms, admin: Any) -> None:
    key = kms.service.service_managed_key()["KeyId"]
    for call in (
        lambda: admin.disable_key(KeyId=key),
        lambda: admin.enable_key(KeyId=key),
        lambda: admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7),
        lambda: admin.cancel_key_deletion(KeyId=key),
        lambda: admin.put_key_policy(KeyId=key, Policy='{"Statement": []}'),
        lambda: admin.enable_key_rotation(KeyId=key),
        lambda: admin.disable_key_rotation(KeyId=key),
        lambda: admin.rotate_key_on_demand(KeyId=key),
        lambda: admin.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}]),
        lambda: admin.create_alias(AliasName="alias/mine", TargetKeyId=key),
    ):
        with kms_error("AccessDeniedException", "because no resource-based policy allows"):
            call()
    for call in (
        lambda: admin.delete_alias(AliasName="alias/aws/mq"),
        lambda: admin.update_alias(
            AliasName="alias/aws/mq", TargetKeyId=admin.create_key()["KeyMetadata"]["KeyId"]
        ),
        lambda: admin.create_alias(AliasName="alias/aws/other", TargetKeyId=key),
    ):
        with kms_error("NotAuthorizedException"):
            call()
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_the_service_managed_key_is_used_through_the_service_or_a_grant(
    kms: Kms, admin: Any
) -> None:
    key = kms.service.service_managed_key()["KeyId"]
    with kms_error("AccessDeniedException", "kms:Encrypt"):
        admin.encrypt(KeyId="alias/aws/mq", Plaintext=b"p")
    with kms_error("AccessDeniedException", "kms:CreateGrant"):
        admin.create_grant(
            KeyId=key, GranteePrincipal="arn:aws:iam::1:role/x", Operations=["Decrypt"]
        )
    # In-process, through the service: as Amazon MQ does for the broker.
    provider = ServiceKeyProvider(kms.service, "alias/aws/mq")
    dek, wrapped = provider.generate_data_key(CTX)
    assert provider.decrypt_data_key(wrapped, CTX) == dek
    # The service grants the broker's storage identity; that principal then uses the key.
    arn, broker = kms.principal("broker")
    grant = kms.service.call(
        "CreateGrant",
        {"KeyId": key, "GranteePrincipal": arn, "Operations": ["Decrypt", "GenerateDataKey"]},
        kms.service.service_caller(),
    )
    assert broker.decrypt(CiphertextBlob=wrapped, EncryptionContext=CTX)["Plaintext"] == dek
    assert [gr["GrantId"] for gr in admin.list_grants(KeyId=key)["Grants"]] == [grant["GrantId"]]
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])  # the account may revoke
    with kms_error("AccessDeniedException"):
        broker.decrypt(CiphertextBlob=wrapped, EncryptionContext=CTX)
    # ... and the service retires the grants it made (deleting a broker).
    again = kms.service.call(
        "CreateGrant",
        {"KeyId": key, "GranteePrincipal": arn, "Operations": ["Decrypt"]},
        kms.service.service_caller(),
    )
    with kms_error("AccessDeniedException", "kms:RetireGrant"):
        admin.retire_grant(GrantToken=again["GrantToken"])
    kms.service.call(
        "RetireGrant", {"GrantToken": again["GrantToken"]}, kms.service.service_caller()
    )
    assert admin.list_grants(KeyId=key)["Grants"] == []


# -- the service-owned key ---------------------------------------------------------------


def test_the_service_owned_key_is_invisible_in_the_account(kms: Kms, admin: Any) -> None:
    owned = kms.service.service_owned_key_id
    assert owned not in [k["KeyId"] for k in admin.list_keys()["Keys"]]
    with kms_error("NotFoundException"):
        admin.describe_key(KeyId=owned)
    with kms_error("NotFoundException"):
        admin.encrypt(KeyId=owned, Plaintext=b"p")
    with kms_error("NotFoundException"):
        admin.disable_key(KeyId=owned)
    provider = ServiceKeyProvider(kms.service, owned)
    dek, wrapped = provider.generate_data_key(CTX)
    assert provider.decrypt_data_key(wrapped, CTX) == dek
    assert provider.key_id == owned
    with kms_error("AccessDeniedException", "does not exist"):
        admin.decrypt(CiphertextBlob=wrapped, EncryptionContext=CTX)
    with pytest.raises(KmsError) as info:
        kms.service.call("DisableKey", {"KeyId": owned})
    assert _code(info) == "AccessDeniedException"


# -- per-broker keys ----------------------------------------------------------------------


def test_a_per_broker_key_works_through_the_chosen_keys_grant(kms: Kms, admin: Any) -> None:
    chosen = admin.create_key()["KeyMetadata"]["KeyId"]
    arn, _ = kms.principal("broker-b-1")
    grant = admin.create_grant(
        KeyId=chosen,
        GranteePrincipal=arn,
        Operations=["GenerateDataKey", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
    )
    storage = kms.service.service_caller(arn)
    broker_key = kms.service.create_broker_key(chosen, storage, context={"broker": "b-1"})
    provider = ServiceKeyProvider(kms.service, broker_key, arn)
    dek, wrapped = provider.generate_data_key({**CTX, "segment": "1"})
    assert provider.decrypt_data_key(wrapped, {**CTX, "segment": "1"}) == dek
    # Invisible on the wire, even to the admin.
    with kms_error("NotFoundException"):
        admin.describe_key(KeyId=broker_key)
    with kms_error("AccessDeniedException"):
        admin.decrypt(CiphertextBlob=wrapped, EncryptionContext={**CTX, "segment": "1"})
    assert broker_key not in [k["KeyId"] for k in admin.list_keys()["Keys"]]
    # The grant's constraint still applies to each use.
    with pytest.raises(KmsError) as info:
        provider.generate_data_key({"broker": "b-2"})
    assert _code(info) == "AccessDeniedException"
    # Disabling the chosen key stops the per-broker key.
    admin.disable_key(KeyId=chosen)
    with pytest.raises(KmsError) as info:
        provider.decrypt_data_key(wrapped, {**CTX, "segment": "1"})
    assert _code(info) == "DisabledException"
    admin.enable_key(KeyId=chosen)
    # So does revoking the grant on the chosen key.
    admin.revoke_grant(KeyId=chosen, GrantId=grant["GrantId"])
    with pytest.raises(KmsError) as info:
        provider.decrypt_data_key(wrapped, {**CTX, "segment": "1"})
    assert _code(info) == "AccessDeniedException"


def test_destroying_a_per_broker_key_shreds_its_ciphertexts(kms: Kms, admin: Any) -> None:
    chosen = kms.service.service_managed_key()["KeyId"]
    broker_key = kms.service.create_broker_key("alias/aws/mq", context={"broker": "b-1"})
    provider = ServiceKeyProvider(kms.service, broker_key)
    _, wrapped = provider.generate_data_key(CTX)
    sealed_before = kms.service.keystore.path.read_bytes()
    kms.service.destroy_broker_key(broker_key)
    with pytest.raises(KmsError) as info:
        provider.decrypt_data_key(wrapped, CTX)
    assert _code(info) in ("NotFoundException", "AccessDeniedException")
    assert broker_key not in kms.service.keystore.keys
    assert kms.service.keystore.path.read_bytes() != sealed_before
    # The chosen key is intact and still works; the per-broker key's data does not.
    assert ServiceKeyProvider(kms.service, chosen).generate_data_key(CTX)
    with pytest.raises(KmsError):
        kms.service.destroy_broker_key(broker_key)


def test_only_the_admin_the_service_or_the_creator_destroy_per_broker_keys(kms: Kms) -> None:
    owned = kms.service.service_owned_key_id
    broker_key = kms.service.create_broker_key(owned)
    stranger = Caller("arn:aws:iam::1:role/stranger", internal=True)
    with pytest.raises(KmsError) as info:
        kms.service.destroy_broker_key(broker_key, stranger)
    assert _code(info) == "AccessDeniedException"
    outsider = Caller(kms.service.admin_principal)  # not in-process
    with pytest.raises(KmsError) as info:
        kms.service.create_broker_key(owned, outsider)
    assert _code(info) == "AccessDeniedException"
    kms.service.destroy_broker_key(broker_key, kms.service.admin_caller())


def test_deleting_the_chosen_key_deletes_its_per_broker_keys(kms: Kms, admin: Any) -> None:
    chosen = admin.create_key()["KeyMetadata"]["KeyId"]
    broker_key = kms.service.create_broker_key(chosen, kms.service.admin_caller())
    admin.schedule_key_deletion(KeyId=chosen, PendingWindowInDays=1)
    kms.clock.advance(2 * 86400)
    admin.list_keys()
    assert broker_key not in kms.service.keystore.keys
