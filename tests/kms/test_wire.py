"""The JSON 1.1 protocol: base64 blobs, KMS error bodies, nothing internal ever sent back."""

from __future__ import annotations

import base64
import json
from typing import Any

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
