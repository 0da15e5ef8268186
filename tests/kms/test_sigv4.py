"""SigV4 authentication: boto3 against the served endpoint, and hand-made bad requests."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sealmq.kms.errors import KmsError
from sealmq.kms.sigv4 import verify_request
from tests.kms.support import Kms, kms_error, post, sign

# KMS, a JSON 1.1 service, answers every authentication failure with HTTP 400 and
# the JSON error shape (as DynamoDB and Kinesis do; only REST services such as
# Glacier use 403).


def test_unknown_access_key(kms: Kms) -> None:
    client = kms.client("AKIAUNKNOWNUNKNOWN00", "x" * 40)
    with kms_error("UnrecognizedClientException", "security token"):
        client.list_keys()
    headers, body = sign(kms, "ListKeys", {}, access_key_id="AKIAUNKNOWNUNKNOWN00", secret="x" * 40)
    status, response_headers, answer = post(kms, headers, body)
    assert status == 400 and answer["__type"] == "UnrecognizedClientException"
    assert set(answer) == {"__type", "message"} and "security token" in answer["message"]
    assert response_headers["Content-Type"] == "application/x-amz-json-1.1"


def test_wrong_secret(kms: Kms) -> None:
    admin = kms.service.keystore.admin_access_key
    client = kms.client(
        admin.access_key_id, admin.secret[:-1] + ("A" if admin.secret[-1] != "A" else "B")
    )
    with kms_error("InvalidSignatureException", "does not match"):
        client.list_keys()


@pytest.mark.parametrize(
    ("skew", "message"),
    [(16 * 60, "Signature expired"), (-16 * 60, "Signature not yet current")],
)
def test_stale_or_future_dates(kms: Kms, admin: Any, skew: float, message: str) -> None:
    kms.wire_skew = skew
    with kms_error("InvalidSignatureException", message):
        admin.list_keys()
    status, _, answer = post(kms, *sign(kms, "ListKeys", {}))
    assert status == 400 and answer["__type"] == "InvalidSignatureException"
    assert set(answer) == {"__type", "message"} and answer["message"].startswith(message)
    kms.wire_skew = skew * 14 / 16  # within 15 minutes
    admin.list_keys()


def test_credentials_scoped_to_another_region(kms: Kms) -> None:
    admin = kms.service.keystore.admin_access_key
    client = kms.session.client(
        "kms",
        endpoint_url=kms.endpoint,
        region_name="eu-west-1",
        aws_access_key_id=admin.access_key_id,
        aws_secret_access_key=admin.secret,
        verify=str(kms.certs.ca),
    )
    try:
        with kms_error("InvalidSignatureException", "region"):
            client.list_keys()
    finally:
        client.close()


def test_missing_or_malformed_authorization(kms: Kms) -> None:
    headers, body = sign(kms, "ListKeys", {})
    unsigned = {k: v for k, v in headers.items() if k != "Authorization"}
    status, _, answer = post(kms, unsigned, body)
    assert status == 400 and answer["__type"] == "MissingAuthenticationTokenException"
    for bad in (
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/kms/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIA, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 garbage",
    ):
        status, _, answer = post(kms, {**unsigned, "Authorization": bad}, body)
        assert status == 400 and answer["__type"] == "IncompleteSignatureException", bad
        assert set(answer) == {"__type", "message"}


def test_tampering_after_signing_is_detected(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    headers, body = sign(kms, "DescribeKey", {"KeyId": key})
    status, _, answer = post(kms, headers, body)
    assert status == 200 and answer["KeyMetadata"]["KeyId"] == key
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    tampered = body.replace(key.encode(), other.encode())
    status, _, answer = post(kms, headers, tampered)
    assert status == 400 and answer["__type"] == "InvalidSignatureException"
    status, _, answer = post(kms, {**headers, "X-Amz-Target": "TrentService.DisableKey"}, body)
    assert answer["__type"] == "InvalidSignatureException"
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["Enabled"] is True


def test_a_signed_content_hash_must_be_the_bodys(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    body = f'{{"KeyId": "{key}"}}'.encode()
    headers, _ = sign(
        kms,
        "DisableKey",
        body,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"{}").hexdigest()},
    )
    status, _, answer = post(kms, headers, body)
    assert status == 400 and answer["__type"] == "InvalidSignatureException"
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["Enabled"] is True
    headers, _ = sign(
        kms, "DisableKey", body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    )
    status, _, _ = post(kms, headers, body)
    assert status == 200
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["Enabled"] is False


def test_session_tokens_are_not_recognised(kms: Kms) -> None:
    headers, body = sign(kms, "ListKeys", {}, headers={"X-Amz-Security-Token": "token"})
    status, _, answer = post(kms, headers, body)
    assert status == 400 and answer["__type"] == "UnrecognizedClientException"


def test_unsigned_extra_headers_do_not_matter(kms: Kms) -> None:
    headers, body = sign(kms, "ListKeys", {})
    status, _, _ = post(kms, {**headers, "X-Extra": "added later"}, body)
    assert status == 200


@pytest.mark.parametrize(
    ("host", "path"),
    [("[", "/"), ("[::1", "/"), (None, "/%zz"), (None, "/%ff%fe?%zz=%")],
)
def test_a_malformed_host_or_path_is_refused_not_dropped(
    kms: Kms, caplog: pytest.LogCaptureFixture, host: str | None, path: str
) -> None:
    """A signed request botocore cannot even canonicalize gets the KMS error shape."""
    headers, body = sign(kms, "ListKeys", {})
    if host is not None:
        headers = {**headers, "Host": host}
    before = len(kms.audit())
    with caplog.at_level(logging.WARNING):
        status, _, answer = post(kms, headers, body, path=path)
    assert status == 400, answer
    assert set(answer) == {"__type", "message"}
    assert answer["__type"] in ("InvalidSignatureException", "UnknownOperationException")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
    [event] = kms.audit()[before:]
    assert event["eventName"] == "ListKeys" and event["errorCode"] == answer["__type"]


def test_refusals_are_audited_with_the_claimed_key(kms: Kms) -> None:
    client = kms.client("AKIACLAIMEDCLAIMED00", "x" * 40)
    with kms_error("UnrecognizedClientException"):
        client.generate_data_key(KeyId="alias/x", KeySpec="AES_256")
    event = kms.audit()[-1]
    assert event["eventName"] == "GenerateDataKey"
    assert event["errorCode"] == "UnrecognizedClientException"
    assert event["userIdentity"]["accessKeyId"] == "AKIACLAIMEDCLAIMED00"


def _lookup(access_key_id: str) -> tuple[str, str] | None:
    return ("s3cret", "arn:aws:iam::123456789012:root") if access_key_id == "AKIDEXAMPLE" else None


def _signed(body: bytes = b"{}") -> dict[str, str]:
    """Headers of a request botocore signs now, lower-cased as the server sees them."""
    request = AWSRequest(
        method="POST",
        url="https://kms.local:9443/",
        data=body,
        headers={"X-Amz-Target": "TrentService.ListKeys"},
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "s3cret"), "kms", "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "kms.local:9443"
    return headers


def test_verify_request_unit() -> None:
    headers = _signed()
    now = time.time()
    verified = verify_request(
        "POST", "/", headers, b"{}", region="us-east-1", lookup=_lookup, now=now + 60
    )
    assert verified.principal.endswith(":root") and verified.access_key_id == "AKIDEXAMPLE"
    cases: list[tuple[dict[str, str], bytes, float, str]] = [
        (headers, b"{ }", now, "InvalidSignatureException"),
        ({**headers, "host": "evil:1"}, b"{}", now, "InvalidSignatureException"),
        (headers, b"{}", now + 901, "InvalidSignatureException"),
        (headers, b"{}", now - 901, "InvalidSignatureException"),
        (
            {k: v for k, v in headers.items() if k != "x-amz-date"},
            b"{}",
            now,
            "IncompleteSignatureException",
        ),
    ]
    for case_headers, body, at, code in cases:
        with pytest.raises(KmsError) as info:
            verify_request(
                "POST", "/", case_headers, body, region="us-east-1", lookup=_lookup, now=at
            )
        assert info.value.code == code
    with pytest.raises(KmsError) as info:
        verify_request("POST", "/", headers, b"{}", region="eu-west-1", lookup=_lookup, now=now)
    assert info.value.code == "InvalidSignatureException"
