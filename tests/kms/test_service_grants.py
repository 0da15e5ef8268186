"""Grants over the wire: principals, operations, constraints, tokens, retiring and revoking."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.kms.support import Kms, kms_error

B1 = {"broker": "b-1", "purpose": "sealmq-journal"}


@pytest.fixture
def key(admin: Any) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


def test_without_a_grant_another_principal_may_do_nothing(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    blob = admin.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    with kms_error(
        "AccessDeniedException", f"User: {arn} is not authorized to perform: kms:Encrypt"
    ):
        broker.encrypt(KeyId=key, Plaintext=b"p")
    with kms_error("AccessDeniedException", "kms:Decrypt"):
        broker.decrypt(CiphertextBlob=blob)
    with kms_error("AccessDeniedException"):
        broker.generate_data_key(KeyId=key, KeySpec="AES_256")
    with kms_error("AccessDeniedException"):
        broker.describe_key(KeyId=key)
    with kms_error("AccessDeniedException"):
        broker.disable_key(KeyId=key)
    with kms_error("AccessDeniedException"):
        broker.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"])
    with kms_error("AccessDeniedException"):
        broker.list_grants(KeyId=key)
    assert len(broker.generate_random(NumberOfBytes=8)["Plaintext"]) == 8


def test_a_grant_allows_its_operations_only(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    grant = admin.create_grant(
        KeyId=key, GranteePrincipal=arn, Operations=["GenerateDataKey", "Decrypt", "DescribeKey"]
    )
    tokens = [grant["GrantToken"]]
    out = broker.generate_data_key(KeyId=key, KeySpec="AES_256", GrantTokens=tokens)
    assert broker.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == out["Plaintext"]
    assert broker.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    with kms_error("AccessDeniedException", "kms:Encrypt"):
        broker.encrypt(KeyId=key, Plaintext=b"p")
    with kms_error("AccessDeniedException", "kms:GenerateDataKeyWithoutPlaintext"):
        broker.generate_data_key_without_plaintext(KeyId=key, KeySpec="AES_256")
    with kms_error("AccessDeniedException", "kms:ReEncryptFrom"):
        broker.re_encrypt(CiphertextBlob=out["CiphertextBlob"], DestinationKeyId=key)
    other_arn, other = kms.principal("someone-else")
    with kms_error("AccessDeniedException"):
        other.decrypt(CiphertextBlob=out["CiphertextBlob"])
    assert other_arn != arn


def test_grant_tokens_are_accepted_at_once_and_checked(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    grant = admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Encrypt"])
    assert len(grant["GrantId"]) == 64
    broker.encrypt(KeyId=key, Plaintext=b"p", GrantTokens=[grant["GrantToken"]])
    with kms_error("InvalidGrantTokenException"):
        broker.encrypt(KeyId=key, Plaintext=b"p", GrantTokens=["not-a-token"])
    with kms_error("InvalidGrantTokenException"):
        admin.describe_key(KeyId=key, GrantTokens=["AAAA"])


def test_a_grant_token_must_name_a_grant_on_the_key_used(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    grant = admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Encrypt"])
    token = grant["GrantToken"]
    other_key = admin.create_key()["KeyMetadata"]["KeyId"]
    other = admin.create_grant(KeyId=other_key, GranteePrincipal=arn, Operations=["Encrypt"])
    # Well formed, authentic, but of a grant on another key.
    with kms_error("InvalidGrantTokenException", "not a token of a grant on this key"):
        broker.encrypt(KeyId=key, Plaintext=b"p", GrantTokens=[other["GrantToken"]])
    # A token with one byte changed is not one this service made.
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with kms_error("InvalidGrantTokenException"):
        broker.encrypt(KeyId=key, Plaintext=b"p", GrantTokens=[forged])
    with kms_error("InvalidGrantTokenException"):
        broker.retire_grant(GrantToken=forged)
    # ReEncrypt accepts tokens of grants on either of its keys.
    admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["ReEncryptFrom"])
    admin.create_grant(KeyId=other_key, GranteePrincipal=arn, Operations=["ReEncryptTo"])
    blob = admin.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    moved = broker.re_encrypt(
        CiphertextBlob=blob,
        DestinationKeyId=other_key,
        GrantTokens=[token, other["GrantToken"]],
    )
    assert moved["SourceKeyId"].endswith(key)
    # The token of a revoked grant is authentic but allows nothing: refused as without it.
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    with kms_error("AccessDeniedException", "kms:Encrypt"):
        broker.encrypt(KeyId=key, Plaintext=b"p", GrantTokens=[token])


def test_encryption_context_subset_constraint(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        Operations=["GenerateDataKey", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
    )
    out = broker.generate_data_key(
        KeyId=key, KeySpec="AES_256", EncryptionContext={**B1, "segment": "3"}
    )
    broker.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={**B1, "segment": "3"})
    for context in ({"broker": "b-2", "purpose": "sealmq-journal"}, {}, {"purpose": "x"}):
        with kms_error("AccessDeniedException"):
            broker.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
    blob = admin.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"broker": "b-2"})[
        "CiphertextBlob"
    ]
    with kms_error("AccessDeniedException"):
        broker.decrypt(CiphertextBlob=blob, EncryptionContext={"broker": "b-2"})


def test_encryption_context_equals_constraint(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        Operations=["Encrypt", "Decrypt"],
        Constraints={"EncryptionContextEquals": B1},
    )
    blob = broker.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=B1)["CiphertextBlob"]
    assert broker.decrypt(CiphertextBlob=blob, EncryptionContext=B1)["Plaintext"] == b"p"
    with kms_error("AccessDeniedException"):
        broker.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={**B1, "segment": "1"})
    with kms_error("AccessDeniedException"):
        broker.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"broker": "b-1"})


def test_constraints_on_operations_without_context_are_refused(
    kms: Kms, admin: Any, key: str
) -> None:
    arn, _ = kms.principal("broker")
    with kms_error("ValidationException", "DescribeKey"):
        admin.create_grant(
            KeyId=key,
            GranteePrincipal=arn,
            Operations=["Decrypt", "DescribeKey"],
            Constraints={"EncryptionContextSubset": {"a": "b"}},
        )
    with kms_error("ValidationException"):
        admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Sign"])
    with kms_error("ValidationException"):
        admin.create_grant(
            KeyId=key,
            GranteePrincipal=arn,
            Operations=["Decrypt"],
            Constraints={
                "EncryptionContextSubset": {"a": "b"},
                "EncryptionContextEquals": {"a": "b"},
            },
        )


def test_revoking_a_grant_takes_effect_on_the_next_call(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    grant = admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt", "Encrypt"])
    blob = broker.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    assert broker.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    with kms_error("AccessDeniedException"):
        broker.decrypt(CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])
    assert admin.list_grants(KeyId=key)["Grants"] == []
    with kms_error("NotFoundException"):
        admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    with kms_error("InvalidGrantIdException"):
        admin.revoke_grant(KeyId=key, GrantId="not-a-grant-id")


def test_list_grants_and_retirable_grants(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    control, control_client = kms.principal("control")
    made = admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        RetiringPrincipal=control,
        Operations=["Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
        Name="broker-b-1",
    )
    admin.create_grant(KeyId=key, GranteePrincipal=control, Operations=["DescribeKey"])
    grants = admin.list_grants(KeyId=key)["Grants"]
    assert len(grants) == 2
    entry = next(gr for gr in grants if gr["GrantId"] == made["GrantId"])
    assert entry["KeyId"].endswith(key)
    assert entry["GranteePrincipal"] == arn and entry["RetiringPrincipal"] == control
    assert entry["Operations"] == ["Decrypt", "GenerateDataKey"]
    assert entry["Constraints"] == {"EncryptionContextSubset": {"broker": "b-1"}}
    assert entry["Name"] == "broker-b-1"
    assert entry["IssuingAccount"] == f"arn:aws:iam::{kms.service.account_id}:root"
    assert [
        gr["GrantId"] for gr in admin.list_grants(KeyId=key, GrantId=made["GrantId"])["Grants"]
    ] == [made["GrantId"]]
    assert len(admin.list_grants(KeyId=key, GranteePrincipal=control)["Grants"]) == 1
    page = admin.list_grants(KeyId=key, Limit=1)
    assert page["Truncated"] and len(page["Grants"]) == 1
    retirable = control_client.list_retirable_grants(RetiringPrincipal=control)["Grants"]
    assert [gr["GrantId"] for gr in retirable] == [made["GrantId"]]
    with kms_error("AccessDeniedException"):
        broker.list_retirable_grants(RetiringPrincipal=control)
    # Creating the same named grant again answers with the same grant.
    again = admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        RetiringPrincipal=control,
        Operations=["Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
        Name="broker-b-1",
    )
    assert again["GrantId"] == made["GrantId"]


def test_retiring_grants(kms: Kms, admin: Any, key: str) -> None:
    arn, broker = kms.principal("broker")
    control, control_client = kms.principal("control")
    by_token = admin.create_grant(
        KeyId=key, GranteePrincipal=arn, RetiringPrincipal=control, Operations=["Encrypt"]
    )
    with kms_error("AccessDeniedException", "kms:RetireGrant"):
        broker.retire_grant(GrantToken=by_token["GrantToken"])
    control_client.retire_grant(GrantToken=by_token["GrantToken"])
    with kms_error("AccessDeniedException"):
        broker.encrypt(KeyId=key, Plaintext=b"p")
    with kms_error("InvalidGrantTokenException"):
        control_client.retire_grant(GrantToken=by_token["GrantToken"])
    # A grantee may retire its own grant when the grant says so.
    own = admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Encrypt", "RetireGrant"])
    broker.retire_grant(KeyId=key, GrantId=own["GrantId"])
    assert admin.list_grants(KeyId=key)["Grants"] == []
    with kms_error("NotFoundException"):
        admin.retire_grant(KeyId=key, GrantId=own["GrantId"])
    with kms_error("InvalidGrantIdException"):
        admin.retire_grant(KeyId=key, GrantId="x")
    with kms_error("InvalidGrantTokenException"):
        admin.retire_grant(GrantToken="garbage")


def test_grants_through_grants_cannot_widen(kms: Kms, admin: Any, key: str) -> None:
    arn, delegate = kms.principal("delegate")
    worker, worker_client = kms.principal("worker")
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        Operations=["CreateGrant", "Decrypt", "Encrypt"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
    )
    with kms_error("AccessDeniedException"):
        delegate.create_grant(KeyId=key, GranteePrincipal=worker, Operations=["Encrypt"])
    with kms_error("AccessDeniedException"):
        delegate.create_grant(
            KeyId=key,
            GranteePrincipal=worker,
            Operations=["Encrypt", "GenerateDataKey"],
            Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
        )
    delegate.create_grant(
        KeyId=key,
        GranteePrincipal=worker,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1", "segment": "1"}},
    )
    worker_client.encrypt(
        KeyId=key, Plaintext=b"p", EncryptionContext={"broker": "b-1", "segment": "1"}
    )


def test_grants_on_disabled_or_deleting_keys(kms: Kms, admin: Any, key: str) -> None:
    arn, _ = kms.principal("broker")
    admin.disable_key(KeyId=key)
    with kms_error("DisabledException"):
        admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"])
    admin.enable_key(KeyId=key)
    admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with kms_error("KMSInvalidStateException"):
        admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"])
    admin.cancel_key_deletion(KeyId=key)
    admin.enable_key(KeyId=key)
    with kms_error("DryRunOperationException"):
        admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Decrypt"], DryRun=True)
    assert admin.list_grants(KeyId=key)["Grants"] == []
