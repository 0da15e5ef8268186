"""The JSON 1.1 protocol: base64 blobs, KMS error bodies, nothing internal ever sent back."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from sealmq.kms import wire
from sealmq.kms.keystore import KeystoreError
from tests.kms.support import Kms, post, sign


def test_blobs_travel_as_base64(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    plaintext = bytes(range(256))
    headers, body = sign(
        kms, "Encrypt", {"KeyId": key, "Plaintext": base64.b64encode(plaintext).decode()}
    )
    status, response_headers, answer = post(kms, headers, body)
    assert status == 200 and response_headers["Content-Type"] == "application/x-amz-json-1.1"
    blob = base64.b64decode(answer["CiphertextBlob"], validate=True)
    headers, body = sign(kms, "Decrypt", {"CiphertextBlob": answer["CiphertextBlob"]})
    status, _, answer = post(kms, headers, body)
    assert status == 200 and base64.b64decode(answer["Plaintext"]) == plaintext
    assert admin.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    status, _, answer = post(kms, *sign(kms, "DescribeKey", {"KeyId": key}))
    assert isinstance(answer["KeyMetadata"]["CreationDate"], float)


def test_wire_level_errors_are_kms_json(kms: Kms) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("ListKeys", b"{not json", "SerializationException"),
        ("ListKeys", b"[1, 2]", "SerializationException"),
        ("Decrypt", b'{"CiphertextBlob": "%%%not base64"}', "SerializationException"),
        ("Decrypt", b'{"CiphertextBlob": 42}', "SerializationException"),
        ("Encrypt", b'{"KeyId": 7, "Plaintext": "eA=="}', "SerializationException"),
        ("NoSuchOperation", b"{}", "UnknownOperationException"),
        ("ListKeys", b'{"Limit": "ten"}', "SerializationException"),
        ("ListKeys", b'{"Limit": 0}', "ValidationException"),
    ]
    for operation, body, code in cases:
        headers, _ = sign(kms, operation, body)
        status, _, answer = post(kms, headers, body)
        assert status == 400 and answer["__type"] == code, (operation, body, answer)
        assert set(answer) == {"__type", "message"}
    headers, body = sign(kms, "ListKeys", {})
    status, _, answer = post(kms, headers, body, method="PUT")
    assert answer["__type"] in ("InvalidSignatureException", "UnknownOperationException")


def test_an_unexpected_failure_is_an_internal_error_without_detail(
    kms: Kms, admin: Any, monkeypatch: Any
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setitem(kms.service._ops, "ListKeys", (broken, True))
    headers, body = sign(kms, "ListKeys", {})
    status, _, answer = post(kms, headers, body)
    assert status == 500 and answer["__type"] == "KMSInternalException"
    assert "secret" not in json.dumps(answer)
    assert kms.audit()[-1]["errorCode"] == "KMSInternalException"


def test_a_body_too_deep_to_decode_is_a_serialization_error(
    kms: Kms, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"[" * 200_000  # json.loads raises RecursionError, not ValueError
    headers, _ = sign(kms, "ListKeys", body)
    with caplog.at_level(logging.WARNING, logger="sealmq.kms.wire"):
        status, _, answer = post(kms, headers, body)
    assert status == 400 and answer["__type"] == "SerializationException"
    assert set(answer) == {"__type", "message"}
    assert kms.audit()[-1]["errorCode"] == "SerializationException"
    [record] = caplog.records
    assert record.exc_info is None and "RecursionError" in record.getMessage()


def test_any_failure_of_verification_is_a_refusal(
    kms: Kms, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("Invalid IPv6 URL")

    monkeypatch.setattr(wire, "verify_request", broken)
    headers, body = sign(kms, "Decrypt", {})
    with caplog.at_level(logging.WARNING, logger="sealmq.kms.wire"):
        status, _, answer = post(kms, headers, body)
    assert status == 400 and answer["__type"] == "InvalidSignatureException"
    assert set(answer) == {"__type", "message"} and "IPv6" not in answer["message"]
    event = kms.audit()[-1]
    assert event["eventName"] == "Decrypt" and event["errorCode"] == "InvalidSignatureException"
    assert event["userIdentity"]["accessKeyId"] == kms.service.keystore.admin_access_key_id
    [record] = caplog.records
    assert record.exc_info is None and "ValueError: Invalid IPv6 URL" in record.getMessage()


def test_an_unreadable_keystore_while_verifying_is_an_internal_error(
    kms: Kms, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeystoreError("kms.sealed cannot be unsealed with this root key")

    monkeypatch.setattr(wire, "verify_request", broken)
    status, _, answer = post(kms, *sign(kms, "ListKeys", {}))
    assert status == 500 and answer["__type"] == "KMSInternalException"
    assert set(answer) == {"__type", "message"} and "sealed" not in answer["message"]
