"""Every error the key service returns, as one table: (name, HTTP status, default message).

Names, statuses and messages are KMS's own (``__type`` in the JSON error body), so
boto3 and the AWS CLI raise the exception classes their users already catch.
Raise :class:`KmsError` with a name from :data:`ERRORS`; the wire turns it into
``{"__type": name, "message": message}`` with the table's status. A name that is
not in the table is a bug and becomes ``KMSInternalException``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ERRORS", "ErrorSpec", "KmsError", "error_status"]


class ErrorSpec(NamedTuple):
    name: str
    status: int
    message: str


# KMS answers 400 for every client error (authentication and authorization
# included), 412 for a successful dry run and 500 for its own faults.
_TABLE = (
    ErrorSpec("AccessDeniedException", 400, "Access denied."),
    ErrorSpec("AlreadyExistsException", 400, "The resource already exists."),
    ErrorSpec("DisabledException", 400, "The KMS key is disabled."),
    ErrorSpec(
        "DryRunOperationException",
        412,
        "The request would have succeeded, but the DryRun option is set.",
    ),
    ErrorSpec(
        "IncorrectKeyException",
        400,
        "The key ID in the request does not identify a KMS key that can perform this operation.",
    ),
    ErrorSpec(
        "IncompleteSignatureException",
        400,
        "The request signature does not conform to AWS standards.",
    ),
    ErrorSpec("InvalidAliasNameException", 400, "The specified alias name is not valid."),
    ErrorSpec("InvalidArnException", 400, "The ARN is not valid."),
    ErrorSpec("InvalidCiphertextException", 400, ""),
    ErrorSpec("InvalidGrantIdException", 400, "The specified GrantId is not valid."),
    ErrorSpec("InvalidGrantTokenException", 400, "The grant token is not valid."),
    ErrorSpec("InvalidKeyUsageException", 400, "The key usage is not valid for this operation."),
    ErrorSpec("InvalidMarkerException", 400, "The marker is not valid."),
    ErrorSpec(
        "InvalidSignatureException",
        400,
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details.",
    ),
    ErrorSpec("KMSInternalException", 500, "An internal error occurred."),
    ErrorSpec("KMSInvalidStateException", 400, "The KMS key is not in a valid state."),
    ErrorSpec("LimitExceededException", 400, "A limit was exceeded."),
    ErrorSpec("MalformedPolicyDocumentException", 400, "The key policy is not valid."),
    ErrorSpec(
        "MissingAuthenticationTokenException", 400, "Request is missing Authentication Token"
    ),
    ErrorSpec("NotAuthorizedException", 400, ""),
    ErrorSpec("NotFoundException", 400, "The specified entity or resource could not be found."),
    ErrorSpec("SerializationException", 400, "The request body is not valid JSON."),
    ErrorSpec("TagException", 400, "The tags are not valid."),
    ErrorSpec("UnknownOperationException", 400, "The action or operation requested is not valid."),
    ErrorSpec(
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    ),
    ErrorSpec("UnsupportedOperationException", 400, "The operation is not supported."),
    ErrorSpec("ValidationException", 400, "The request is not valid."),
)

#: name -> spec, for every error the service can return.
ERRORS: dict[str, ErrorSpec] = {spec.name: spec for spec in _TABLE}


class KmsError(Exception):
    """A refusal named as KMS names it; ``message`` is safe to return to the caller."""

    def __init__(self, code: str, message: str | None = None) -> None:
        spec = ERRORS.get(code)
        if spec is None:
            spec, message = ERRORS["KMSInternalException"], f"unlisted error {code}"
        self.code = spec.name
        self.status = spec.status
        self.message = spec.message if message is None else message
        super().__init__(f"{self.code}: {self.message}" if self.message else self.code)


def error_status(code: str) -> int:
    """The HTTP status for ``code`` (500 for a name not in the table)."""
    spec = ERRORS.get(code)
    return spec.status if spec is not None else 500
