"""Rotation over the wire: automatic and on demand; old ciphertexts keep decrypting."""

from __future__ import annotations

from typing import Any

import pytest

from sealmq.kms.ciphertext import parse_header
from tests.kms.support import DAY, Kms, kms_error


@pytest.fixture
def key(admin: Any) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


def test_rotation_settings(kms: Kms, admin: Any, key: str) -> None:
    status = admin.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False and status["KeyId"].endswith(key)
    assert "NextRotationDate" not in status
    admin.enable_key_rotation(KeyId=key)
    status = admin.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365
    first_date = status["NextRotationDate"]
    admin.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    status = admin.get_key_rotation_status(KeyId=key)
    assert status["RotationPeriodInDays"] == 90 and status["NextRotationDate"] < first_date
    admin.disable_key_rotation(KeyId=key)
    assert admin.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    admin.disable_key(KeyId=key)
    with kms_error("DisabledException"):
        admin.enable_key_rotation(KeyId=key)
    with kms_error("DisabledException"):
        admin.disable_key_rotation(KeyId=key)
    with kms_error("DisabledException"):
        admin.rotate_key_on_demand(KeyId=key)
    assert admin.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_on_demand_rotation_keeps_old_ciphertexts(kms: Kms, admin: Any, key: str) -> None:
    old = admin.encrypt(KeyId=key, Plaintext=b"before", EncryptionContext={"a": "1"})[
        "CiphertextBlob"
    ]
    old_material = admin.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert admin.rotate_key_on_demand(KeyId=key)["KeyId"].endswith(key)
    new = admin.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]
    assert parse_header(old).version == 1 and parse_header(new).version == 2
    assert admin.decrypt(CiphertextBlob=old, EncryptionContext={"a": "1"})["Plaintext"] == b"before"
    assert admin.decrypt(CiphertextBlob=new)["Plaintext"] == b"after"
    assert admin.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] != old_material
    rotations = admin.list_key_rotations(KeyId=key)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert rotations[0]["KeyId"].endswith(key)


def test_automatic_rotation_when_due(kms: Kms, admin: Any, key: str) -> None:
    admin.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    old = admin.encrypt(KeyId=key, Plaintext=b"old")["CiphertextBlob"]
    kms.clock.advance(89 * DAY)
    assert parse_header(admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]).version == 1
    kms.clock.advance(2 * DAY)
    new = admin.encrypt(KeyId=key, Plaintext=b"new")["CiphertextBlob"]
    assert parse_header(new).version == 2
    assert admin.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    rotations = admin.list_key_rotations(KeyId=key)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"]
    status = admin.get_key_rotation_status(KeyId=key)
    assert status["NextRotationDate"].timestamp() > kms.clock() + 80 * DAY


def test_on_demand_rotations_are_limited(kms: Kms, admin: Any, key: str) -> None:
    for _ in range(25):
        admin.rotate_key_on_demand(KeyId=key)
    with kms_error("LimitExceededException"):
        admin.rotate_key_on_demand(KeyId=key)
    rotations = admin.list_key_rotations(KeyId=key, Limit=10)
    assert rotations["Truncated"] and len(rotations["Rotations"]) == 10
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert parse_header(blob).version == 26


def test_the_service_managed_key_rotates_every_year(kms: Kms, admin: Any) -> None:
    managed = kms.service.service_managed_key()["KeyId"]
    via_mq = kms.service.service_caller()
    ctx = {"broker": "b-1"}
    old = kms.service.call(
        "Encrypt",
        {"KeyId": "alias/aws/mq", "Plaintext": b"last year", "EncryptionContext": ctx},
        via_mq,
    )["CiphertextBlob"]
    status = admin.get_key_rotation_status(KeyId=managed)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 365
    assert admin.list_key_rotations(KeyId=managed)["Rotations"] == []
    kms.clock.advance(366 * DAY)
    rotations = admin.list_key_rotations(KeyId=managed)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"]
    assert rotations[0]["KeyId"].endswith(managed)
    new = kms.service.call("Encrypt", {"KeyId": "alias/aws/mq", "Plaintext": b"this year"}, via_mq)[
        "CiphertextBlob"
    ]
    assert parse_header(old).version == 1 and parse_header(new).version == 2
    decrypted = kms.service.call(
        "Decrypt", {"CiphertextBlob": old, "EncryptionContext": ctx}, via_mq
    )["Plaintext"]
    assert decrypted == b"last year"
    status = admin.get_key_rotation_status(KeyId=managed)
    assert status["NextRotationDate"].timestamp() > kms.clock() + 360 * DAY
