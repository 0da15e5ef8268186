"""Key-policy evaluation, statement by statement, as AWS evaluates key policies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sealmq.kms.errors import KmsError
from sealmq.kms.policy import ALLOW, DENY, RequestFacts, evaluate, parse_policy

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
APP = f"arn:aws:iam::{ACCOUNT}:role/app"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MQ = "mq.us-east-1.amazonaws.com"


def _decide(
    statements: list[dict[str, Any]], action: str, facts: RequestFacts, resource: str = KEY
) -> str | None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return evaluate(parse_policy(policy), action, resource, facts)


def _allow(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"AWS": APP}, "Resource": "*", **extra}


def test_actions_resources_and_their_negations() -> None:
    app = RequestFacts(APP)
    assert _decide([_allow(Action="kms:Encrypt")], "Encrypt", app) == ALLOW
    assert _decide([_allow(Action="kms:encrypt")], "Encrypt", app) == ALLOW  # case-insensitive
    assert _decide([_allow(Action="kms:Encrypt")], "Decrypt", app) is None
    assert _decide([_allow(Action="kms:Generate*")], "GenerateDataKey", app) == ALLOW
    assert _decide([_allow(Action="kms:*")], "PutKeyPolicy", app) == ALLOW
    assert _decide([_allow(NotAction="kms:Decrypt")], "Encrypt", app) == ALLOW
    assert _decide([_allow(NotAction="kms:Decrypt")], "Decrypt", app) is None
    other_key = {**_allow(Action="kms:*"), "Resource": KEY.replace("1234abcd", "99999999")}
    assert _decide([other_key], "Encrypt", app) is None
    not_this = {**_allow(Action="kms:*"), "NotResource": KEY}
    del not_this["Resource"]
    assert _decide([not_this], "Encrypt", app) is None


def test_principals_and_the_account() -> None:
    everyone = {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}
    assert _decide([everyone], "Encrypt", RequestFacts(APP)) == ALLOW
    account = {**everyone, "Principal": {"AWS": ROOT}}
    # Allow to the account: its IAM decides, and only its root user holds IAM rights here.
    assert _decide([account], "Encrypt", RequestFacts(ROOT)) == ALLOW
    assert _decide([account], "Encrypt", RequestFacts(APP)) is None
    assert _decide([{**account, "Principal": {"AWS": ACCOUNT}}], "Encrypt", RequestFacts(ROOT))
    # Deny to the account: every principal of it.
    deny = {**account, "Effect": "Deny"}
    assert _decide([everyone, deny], "Encrypt", RequestFacts(APP)) == DENY
    assert _decide([everyone, deny], "Encrypt", RequestFacts(ROOT)) == DENY
    stranger = RequestFacts("arn:aws:iam::999999999999:role/app")
    assert _decide([everyone, deny], "Encrypt", stranger) == ALLOW
    not_app = {"Effect": "Deny", "NotPrincipal": {"AWS": APP}, "Action": "kms:*", "Resource": "*"}
    assert _decide([everyone, not_app], "Encrypt", RequestFacts(APP)) == ALLOW
    assert _decide([everyone, not_app], "Encrypt", stranger) == DENY


def test_the_conditions_of_the_aws_managed_key_policy() -> None:
    via_mq = {
        "StringEquals": {"kms:ViaService": MQ, "kms:CallerAccount": ACCOUNT},
    }
    statement = _allow(Action="kms:Decrypt", Condition=via_mq, Principal={"AWS": "*"})
    assert _decide([statement], "Decrypt", RequestFacts(APP, via_service=MQ)) == ALLOW
    assert _decide([statement], "Decrypt", RequestFacts(APP)) is None
    assert _decide([statement], "Decrypt", RequestFacts(APP, via_service="s3.x")) is None
    far = RequestFacts("arn:aws:iam::999999999999:role/x", via_service=MQ)
    assert _decide([statement], "Decrypt", far) is None


def test_encryption_context_conditions() -> None:
    def facts(context: dict[str, str] | None) -> RequestFacts:
        return RequestFacts(APP, encryption_context=context)

    exact = _allow(Action="kms:*", Condition={"StringEquals": {"kms:EncryptionContext:t": "a"}})
    assert _decide([exact], "Decrypt", facts({"t": "a"})) == ALLOW
    assert _decide([exact], "Decrypt", facts({"t": "b"})) is None
    assert _decide([exact], "Decrypt", facts(None)) is None
    like = _allow(Action="kms:*", Condition={"StringLike": {"kms:EncryptionContext:t": "b-*"}})
    assert _decide([like], "Decrypt", facts({"t": "b-1"})) == ALLOW
    assert _decide([like], "Decrypt", facts({"t": "c-1"})) is None
    if_exists = _allow(
        Action="kms:*", Condition={"StringEqualsIfExists": {"kms:EncryptionContext:t": "a"}}
    )
    assert _decide([if_exists], "Decrypt", facts({})) == ALLOW
    assert _decide([if_exists], "Decrypt", facts({"t": "b"})) is None
    only_keys = _allow(
        Action="kms:*",
        Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["t", "u"]}},
    )
    assert _decide([only_keys], "Decrypt", facts({"t": "1"})) == ALLOW
    assert _decide([only_keys], "Decrypt", facts({"t": "1", "v": "2"})) is None
    any_key = _allow(
        Action="kms:*",
        Condition={"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "t"}},
    )
    assert _decide([any_key], "Decrypt", facts({"t": "1", "v": "2"})) == ALLOW
    assert _decide([any_key], "Decrypt", facts({"v": "2"})) is None
    needs_context = _allow(Action="kms:*", Condition={"Null": {"kms:EncryptionContextKeys": False}})
    assert _decide([needs_context], "Decrypt", facts({"t": "1"})) == ALLOW
    assert _decide([needs_context], "Decrypt", facts({})) is None
    deny_other = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"kms:EncryptionContext:t": "a"}},
    }
    everyone = _allow(Action="kms:*")
    assert _decide([everyone, deny_other], "Decrypt", facts({"t": "a"})) == ALLOW
    assert _decide([everyone, deny_other], "Decrypt", facts({"t": "b"})) == DENY
    assert _decide([everyone, deny_other], "Decrypt", facts({})) == DENY  # absent: not equal


def test_grant_is_for_aws_resource() -> None:
    condition = {"Bool": {"kms:GrantIsForAWSResource": True}}
    statement = _allow(Action="kms:CreateGrant", Condition=condition)
    assert _decide([statement], "CreateGrant", RequestFacts(APP, grant_for_aws_resource=True))
    assert (
        _decide([statement], "CreateGrant", RequestFacts(APP, grant_for_aws_resource=False)) is None
    )


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"Statement": []}',
        '{"Version": "2099-01-01", "Statement": {}}',
        '{"Statement": {"Effect": "Allow"}, "Extra": 1}',
    ],
)
def test_documents_that_are_not_policies(text: str) -> None:
    with pytest.raises(KmsError) as refused:
        parse_policy(text)
    assert refused.value.code == "MalformedPolicyDocumentException"
