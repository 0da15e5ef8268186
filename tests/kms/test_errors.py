"""The error table: KMS's names, statuses and messages in one place."""

from __future__ import annotations

from sealmq.kms.errors import ERRORS, KmsError, error_status


def test_the_table_names_kms_errors_once() -> None:
    assert len(ERRORS) >= 25
    for name, spec in ERRORS.items():
        assert spec.name == name and name[0].isupper()
        assert spec.status in (400, 412, 500)
    assert ERRORS["KMSInternalException"].status == 500
    assert ERRORS["DryRunOperationException"].status == 412
    for needed in (
        "NotFoundException",
        "DisabledException",
        "KMSInvalidStateException",
        "AccessDeniedException",
        "InvalidCiphertextException",
        "ValidationException",
        "AlreadyExistsException",
        "InvalidAliasNameException",
        "InvalidGrantTokenException",
        "InvalidGrantIdException",
        "UnsupportedOperationException",
        "IncorrectKeyException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
    ):
        assert needed in ERRORS


def test_kms_error() -> None:
    error = KmsError("NotFoundException", "Key 'x' does not exist")
    assert (error.code, error.status, error.message) == (
        "NotFoundException",
        400,
        "Key 'x' does not exist",
    )
    assert KmsError("DisabledException").message == ERRORS["DisabledException"].message
    unknown = KmsError("MadeUpException", "x")
    assert unknown.code == "KMSInternalException" and unknown.status == 500
    assert error_status("MadeUpException") == 500
