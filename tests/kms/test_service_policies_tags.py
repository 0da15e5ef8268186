"""Key policies (validated, enforced as AWS evaluates them), key descriptions, tags."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sealmq.kms.errors import KmsError
from sealmq.kms.service import Caller, default_key_policy
from tests.kms.support import Kms, kms_error


@pytest.fixture
def key(admin: Any) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _root(kms: Kms) -> str:
    return f"arn:aws:iam::{kms.service.account_id}:root"


def _admin_statement(kms: Kms) -> dict[str, Any]:
    return {
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": _root(kms)},
        "Action": "kms:*",
        "Resource": "*",
    }


def test_default_policy_and_put_policy(kms: Kms, admin: Any, key: str) -> None:
    out = admin.get_key_policy(KeyId=key, PolicyName="default")
    assert out["PolicyName"] == "default"
    policy = json.loads(out["Policy"])
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"AWS": _root(kms)}
    assert statement["Action"] == "kms:*" and statement["Effect"] == "Allow"
    assert json.loads(admin.get_key_policy(KeyId=key)["Policy"]) == policy  # PolicyName optional
    mine = _policy(_admin_statement(kms), {**_admin_statement(kms), "Sid": "mine"})
    admin.put_key_policy(KeyId=key, PolicyName="default", Policy=mine)
    assert admin.get_key_policy(KeyId=key)["Policy"] == mine
    with kms_error("NotFoundException"):
        admin.get_key_policy(KeyId=key, PolicyName="other")
    created = admin.create_key(Policy=mine)["KeyMetadata"]["KeyId"]
    assert admin.get_key_policy(KeyId=created)["Policy"] == mine


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ({"Sid": "no effect"}, "Effect"),
        ({"Effect": "Allow", "Action": "kms:*", "Resource": "*"}, "Principal"),
        ({"Effect": "Allow", "Principal": "*", "Resource": "*"}, "Action"),
        ({"Effect": "Allow", "Principal": "*", "Action": "kms:*"}, "Resource"),
        ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}, "kms:"),
        (
            {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "kms:*", "Resource": "*"},
            "invalid principals",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceIp": "10.0.0.1"}},
            },
            "Condition key aws:SourceIp is not supported",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {"IpAddress": {"kms:ViaService": "x"}},
            },
            "Condition operator IpAddress is not supported",
        ),
    ],
)
def test_policies_that_cannot_be_evaluated_are_refused(
    kms: Kms, admin: Any, key: str, statement: dict[str, Any], reason: str
) -> None:
    policy = _policy(_admin_statement(kms), statement)
    with kms_error("MalformedPolicyDocumentException", reason):
        admin.put_key_policy(KeyId=key, Policy=policy)
    with kms_error("MalformedPolicyDocumentException", reason):
        admin.create_key(Policy=policy)
    assert json.loads(admin.get_key_policy(KeyId=key)["Policy"])["Id"] == "key-default-1"


def test_malformed_documents_and_the_lockout_check(kms: Kms, admin: Any, key: str) -> None:
    with kms_error("MalformedPolicyDocumentException", "not valid JSON"):
        admin.put_key_policy(KeyId=key, Policy="{oops")
    with kms_error("MalformedPolicyDocumentException", "no Statement"):
        admin.put_key_policy(KeyId=key, Policy='{"Version": "2012-10-17"}')
    arn, _ = kms.principal("app")
    only_app = _policy(
        {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:*", "Resource": "*"}
    )
    # A policy that would lock its author out is refused unless the check is bypassed.
    with kms_error("MalformedPolicyDocumentException", "will not allow you to update"):
        admin.put_key_policy(KeyId=key, Policy=only_app)
    with kms_error("MalformedPolicyDocumentException", "will not allow you to update"):
        admin.create_key(Policy=only_app)
    admin.put_key_policy(KeyId=key, Policy=only_app, BypassPolicyLockoutSafetyCheck=True)
    with kms_error("AccessDeniedException", "no resource-based policy allows the kms:Encrypt"):
        admin.encrypt(KeyId=key, Plaintext=b"p")
    with kms_error("AccessDeniedException"):
        admin.put_key_policy(KeyId=key, Policy=default_key_policy(kms.service.account_id))


def test_a_deny_wins_over_the_default_allow_and_over_grants(kms: Kms, admin: Any, key: str) -> None:
    arn, app = kms.principal("app")
    grant = admin.create_grant(KeyId=key, GranteePrincipal=arn, Operations=["Encrypt", "Decrypt"])
    blob = app.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    deny_app_decrypt = {
        "Sid": "no decrypt for app",
        "Effect": "Deny",
        "Principal": {"AWS": arn},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    admin.put_key_policy(KeyId=key, Policy=_policy(_admin_statement(kms), deny_app_decrypt))
    with kms_error("AccessDeniedException", f"User: {arn} .*kms:Decrypt .*explicit deny"):
        app.decrypt(CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])
    app.encrypt(KeyId=key, Plaintext=b"still")  # the grant still allows what is not denied
    assert admin.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"  # the admin is not app
    # A Deny naming the account applies to every principal of it, the admin included.
    deny_all = {**deny_app_decrypt, "Principal": {"AWS": _root(kms)}}
    admin.put_key_policy(KeyId=key, Policy=_policy(_admin_statement(kms), deny_all))
    with kms_error("AccessDeniedException", "explicit deny"):
        admin.decrypt(CiphertextBlob=blob)
    admin.encrypt(KeyId=key, Plaintext=b"p")
    refused = [e for e in kms.audit() if e.get("errorCode") == "AccessDeniedException"]
    assert [e["eventName"] for e in refused] == ["Decrypt", "Decrypt"]


def test_a_policy_allowing_a_principal_only_encrypt(kms: Kms, admin: Any, key: str) -> None:
    arn, app = kms.principal("app")
    with kms_error("AccessDeniedException", "kms:Encrypt"):
        app.encrypt(KeyId=key, Plaintext=b"p")  # the default policy: the account's IAM decides
    encrypt_only = {
        "Effect": "Allow",
        "Principal": {"AWS": [arn]},
        "Action": ["kms:Encrypt", "kms:Describe*"],
        "Resource": "*",
    }
    admin.put_key_policy(KeyId=key, Policy=_policy(_admin_statement(kms), encrypt_only))
    blob = app.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    assert app.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    with kms_error("AccessDeniedException", "kms:Decrypt"):
        app.decrypt(CiphertextBlob=blob)
    with kms_error("AccessDeniedException", "kms:GenerateDataKey"):
        app.generate_data_key(KeyId=key, KeySpec="AES_256")
    with kms_error("AccessDeniedException", "kms:DisableKey"):
        app.disable_key(KeyId=key)
    other_arn, other = kms.principal("other")
    with kms_error("AccessDeniedException", other_arn):
        other.encrypt(KeyId=key, Plaintext=b"p")


def test_conditions_on_encryption_context_and_caller_account(
    kms: Kms, admin: Any, key: str
) -> None:
    _, app = kms.principal("app")
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "kms:EncryptionContext:tenant": "blue",
                "kms:CallerAccount": kms.service.account_id,
            },
            "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "app"]},
        },
    }
    admin.put_key_policy(KeyId=key, Policy=_policy(_admin_statement(kms), statement))
    blue = {"tenant": "blue"}
    blob = app.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=blue)["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob, EncryptionContext=blue)["Plaintext"] == b"p"
    for context in ({"tenant": "red"}, {}, {"tenant": "blue", "extra": "x"}):
        with kms_error("AccessDeniedException", "kms:Encrypt"):
            app.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=context)
    app.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"tenant": "blue", "app": "a"})


def test_the_service_managed_key_policy_is_enforced(kms: Kms, admin: Any) -> None:
    """Its first statement: any principal of the account, only through Amazon MQ."""
    key = kms.service.service_managed_key()["KeyId"]
    arn, app = kms.principal("app")
    with kms_error("AccessDeniedException", "kms:GenerateDataKey"):
        app.generate_data_key(KeyId=key, KeySpec="AES_256")
    through_mq = kms.service.service_caller(arn)
    made = kms.service.call("GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256"}, through_mq)
    assert (
        kms.service.call("Decrypt", {"CiphertextBlob": made["CiphertextBlob"]}, through_mq)[
            "Plaintext"
        ]
        == made["Plaintext"]
    )
    with pytest.raises(KmsError) as refused:
        kms.service.call("DisableKey", {"KeyId": key}, through_mq)
    assert refused.value.code == "AccessDeniedException"
    # Another account's principal through the service: kms:CallerAccount does not match.
    stranger = Caller(
        "arn:aws:iam::999999999999:role/x",
        via_service=through_mq.via_service,
        internal=True,
    )
    with pytest.raises(KmsError) as refused:
        kms.service.call("GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256"}, stranger)
    assert refused.value.code == "AccessDeniedException"
    assert admin.list_key_policies(KeyId=key)["PolicyNames"] == ["default"]


def test_list_key_policies_and_update_key_description(kms: Kms, admin: Any, key: str) -> None:
    out = admin.list_key_policies(KeyId=key)
    assert out["PolicyNames"] == ["default"] and out["Truncated"] is False
    assert admin.list_key_policies(KeyId=key, Limit=1)["PolicyNames"] == ["default"]
    admin.update_key_description(KeyId=key, Description="orders, production")
    meta = admin.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["Description"] == "orders, production"
    arn_key = meta["Arn"]
    admin.update_key_description(KeyId=arn_key, Description="")
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["Description"] == ""
    [event] = [e for e in kms.audit() if e["eventName"] == "UpdateKeyDescription"][-1:]
    assert event["requestParameters"]["keyId"] == arn_key and event["readOnly"] is False
    with kms_error("ValidationException"):
        admin.update_key_description(KeyId=key, Description="x" * 8193)
    with kms_error("NotFoundException"):
        admin.update_key_description(KeyId="alias/none", Description="x")
    with kms_error("NotFoundException"):
        admin.list_key_policies(KeyId="00000000-0000-0000-0000-000000000000")
    _, app = kms.principal("app")
    with kms_error("AccessDeniedException", "kms:UpdateKeyDescription"):
        app.update_key_description(KeyId=key, Description="mine")
    with kms_error("AccessDeniedException", "kms:ListKeyPolicies"):
        app.list_key_policies(KeyId=key)
    managed = kms.service.service_managed_key()["KeyId"]
    with kms_error("AccessDeniedException", "kms:UpdateKeyDescription"):
        admin.update_key_description(KeyId=managed, Description="mine")
    admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with kms_error("KMSInvalidStateException"):
        admin.update_key_description(KeyId=key, Description="late")


def test_tags(admin: Any, key: str) -> None:
    assert admin.list_resource_tags(KeyId=key)["Tags"] == []
    admin.tag_resource(
        KeyId=key,
        Tags=[{"TagKey": "team", "TagValue": "mq"}, {"TagKey": "env", "TagValue": "test"}],
    )
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "team", "TagValue": "platform"}])
    tags = admin.list_resource_tags(KeyId=key)
    assert tags["Tags"] == [
        {"TagKey": "team", "TagValue": "platform"},
        {"TagKey": "env", "TagValue": "test"},
    ]
    assert tags["Truncated"] is False
    admin.untag_resource(KeyId=key, TagKeys=["team", "missing"])
    assert admin.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "env", "TagValue": "test"}]
    with kms_error("TagException"):
        admin.tag_resource(KeyId=key, Tags=[{"TagKey": "aws:x", "TagValue": "y"}])
    with kms_error("LimitExceededException"):
        admin.tag_resource(KeyId=key, Tags=[{"TagKey": f"k{i}", "TagValue": ""} for i in range(50)])
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "owner", "TagValue": "ops"}])
    page = admin.list_resource_tags(KeyId=key, Limit=1)
    assert page["Truncated"] is True and len(page["Tags"]) == 1
    admin.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with kms_error("KMSInvalidStateException"):
        admin.untag_resource(KeyId=key, TagKeys=["env"])
    assert admin.list_resource_tags(KeyId=key)["Tags"]  # still readable


def test_a_stored_policy_from_before_enforcement_reads_as_the_default(
    kms: Kms, admin: Any, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key whose stored policy predates validation keeps working as it did."""
    with kms.service.keystore.lock:
        kms.service.keystore.keys[key].policy = '{"Statement": [{"Sid": "mine"}]}'
        kms.service.keystore.save()
    with caplog.at_level("WARNING", logger="sealmq.kms.core"):
        blob = admin.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
        assert admin.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
    warned = [r for r in caplog.records if "not a valid key policy" in r.getMessage()]
    assert len(warned) == 1 and key in warned[0].getMessage()
    _, app = kms.principal("app")
    with kms_error("AccessDeniedException"):
        app.decrypt(CiphertextBlob=blob)
    admin.put_key_policy(KeyId=key, Policy=default_key_policy(kms.service.account_id))
