"""Cryptographic operations over the wire: Encrypt, Decrypt, ReEncrypt, data keys, random."""

from __future__ import annotations

from typing import Any

import pytest

from sealmq.kms.ciphertext import parse_header
from tests.kms.support import Kms, kms_error

CTX = {"broker": "b-1", "purpose": "sealmq-journal", "segment": "7"}


@pytest.fixture
def key(admin: Any) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


def test_encrypt_and_decrypt(kms: Kms, admin: Any, key: str) -> None:
    out = admin.encrypt(KeyId=key, Plaintext=b"attack at dawn", EncryptionContext=CTX)
    arn = f"arn:aws:kms:us-east-1:{kms.service.account_id}:key/{key}"
    assert out["KeyId"] == arn and out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = out["CiphertextBlob"]
    assert b"attack" not in blob
    header = parse_header(blob)
    assert header.key_id == key and header.version == 1
    # The context's order does not matter; without KeyId the blob says which key.
    back = admin.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(CTX.items())))
    assert back["Plaintext"] == b"attack at dawn" and back["KeyId"] == arn
    assert admin.decrypt(CiphertextBlob=blob, EncryptionContext=CTX, KeyId=arn)["KeyId"] == arn
    assert (
        admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        != admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    )


@pytest.mark.parametrize(
    "context",
    [
        {},
        {**CTX, "segment": "8"},
        {"broker": "b-1", "purpose": "sealmq-journal"},
        {**CTX, "extra": ""},
        {"broker": "b-1purpose", "": "sealmq-journal", "segment": "7"},
    ],
)
def test_a_different_context_decrypts_nothing(
    admin: Any, key: str, context: dict[str, str]
) -> None:
    blob = admin.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=CTX)["CiphertextBlob"]
    with kms_error("InvalidCiphertextException"):
        admin.decrypt(CiphertextBlob=blob, EncryptionContext=context)


def test_damaged_or_foreign_ciphertexts(admin: Any, key: str) -> None:
    blob = admin.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    for i in (0, 5, len(blob) // 2, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[i] ^= 0x01
        with pytest.raises(Exception) as info:
            admin.decrypt(CiphertextBlob=bytes(damaged))
        code = getattr(info.value, "response", {}).get("Error", {}).get("Code")
        assert code in ("InvalidCiphertextException", "AccessDeniedException"), code
    with kms_error("InvalidCiphertextException"):
        admin.decrypt(CiphertextBlob=b"not a ciphertext at all")
    with kms_error("InvalidCiphertextException"):
        admin.decrypt(CiphertextBlob=blob[:20])


def test_decrypt_with_the_wrong_key_id(admin: Any, key: str) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    blob = admin.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    with kms_error("IncorrectKeyException"):
        admin.decrypt(CiphertextBlob=blob, KeyId=other)
    with kms_error("IncorrectKeyException"):
        admin.re_encrypt(CiphertextBlob=blob, SourceKeyId=other, DestinationKeyId=other)


def test_re_encrypt(admin: Any, key: str) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    blob = admin.encrypt(KeyId=key, Plaintext=b"moving", EncryptionContext=CTX)["CiphertextBlob"]
    out = admin.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext=CTX,
        DestinationKeyId=other,
        DestinationEncryptionContext={"new": "ctx"},
    )
    assert out["SourceKeyId"].endswith(key) and out["KeyId"].endswith(other)
    assert out["SourceEncryptionAlgorithm"] == out["DestinationEncryptionAlgorithm"]
    moved = out["CiphertextBlob"]
    assert parse_header(moved).key_id == other
    assert (
        admin.decrypt(CiphertextBlob=moved, EncryptionContext={"new": "ctx"})["Plaintext"]
        == b"moving"
    )
    with kms_error("InvalidCiphertextException"):
        admin.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other)


def test_generate_data_keys(admin: Any, key: str) -> None:
    for spec, size in (("AES_256", 32), ("AES_128", 16)):
        out = admin.generate_data_key(KeyId=key, KeySpec=spec, EncryptionContext=CTX)
        assert len(out["Plaintext"]) == size and out["KeyId"].endswith(key)
        back = admin.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=CTX)
        assert back["Plaintext"] == out["Plaintext"]
    out = admin.generate_data_key(KeyId=key, NumberOfBytes=1024)
    assert len(out["Plaintext"]) == 1024
    bare = admin.generate_data_key_without_plaintext(
        KeyId=key, KeySpec="AES_256", EncryptionContext=CTX
    )
    assert "Plaintext" not in bare
    assert (
        len(
            admin.decrypt(CiphertextBlob=bare["CiphertextBlob"], EncryptionContext=CTX)["Plaintext"]
        )
        == 32
    )
    with kms_error("ValidationException", "number of bytes or key spec"):
        admin.generate_data_key(KeyId=key)
    with kms_error("ValidationException"):
        admin.generate_data_key(KeyId=key, KeySpec="AES_256", NumberOfBytes=32)
    with kms_error("ValidationException"):
        admin.generate_data_key_without_plaintext(KeyId=key)


def test_generate_random(admin: Any) -> None:
    one, two = (admin.generate_random(NumberOfBytes=64)["Plaintext"] for _ in range(2))
    assert len(one) == 64 and one != two
    assert len(admin.generate_random(NumberOfBytes=1)["Plaintext"]) == 1
    with kms_error("ValidationException"):
        admin.generate_random()


def test_algorithms_and_dry_runs(admin: Any, key: str) -> None:
    with kms_error("InvalidKeyUsageException"):
        admin.encrypt(KeyId=key, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    with kms_error("DryRunOperationException"):
        admin.encrypt(KeyId=key, Plaintext=b"x", DryRun=True)
    with kms_error("DryRunOperationException"):
        admin.decrypt(CiphertextBlob=blob, DryRun=True)
    with kms_error("DryRunOperationException"):
        admin.generate_data_key(KeyId=key, KeySpec="AES_256", DryRun=True)
