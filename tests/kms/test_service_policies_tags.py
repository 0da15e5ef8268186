"""Key policies (kept as text) and tags over the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kms.support import Kms, kms_error


@pytest.fixture
def key(admin: Any) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


def test_default_policy_and_put_policy(kms: Kms, admin: Any, key: str) -> None:
    out = admin.get_key_policy(KeyId=key, PolicyName="default")
    assert out["PolicyName"] == "default"
    policy = json.loads(out["Policy"])
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{kms.service.account_id}:root"}
    assert statement["Action"] == "kms:*" and statement["Effect"] == "Allow"
    assert json.loads(admin.get_key_policy(KeyId=key)["Policy"]) == policy  # PolicyName optional
    mine = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "mine"}]})
    admin.put_key_policy(KeyId=key, PolicyName="default", Policy=mine)
    assert admin.get_key_policy(KeyId=key)["Policy"] == mine
    with kms_error("MalformedPolicyDocumentException"):
        admin.put_key_policy(KeyId=key, Policy="{oops")
    with kms_error("MalformedPolicyDocumentException"):
        admin.put_key_policy(KeyId=key, Policy='{"Version": "2012-10-17"}')
    with kms_error("NotFoundException"):
        admin.get_key_policy(KeyId=key, PolicyName="other")
    created = admin.create_key(Policy=mine)["KeyMetadata"]["KeyId"]
    assert admin.get_key_policy(KeyId=created)["Policy"] == mine


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
