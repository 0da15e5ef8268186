"""Checking AWS Signature Version 4 on incoming requests, with botocore's own signer.

The canonical request, string to sign and signature are recomputed by
``botocore.auth.SigV4Auth`` from the request as received (only the headers the
client listed in ``SignedHeaders``) and compared in constant time. Refusals are
the errors AWS returns: ``MissingAuthenticationTokenException``,
``IncompleteSignatureException``, ``UnrecognizedClientException`` (unknown
access key, or a session token: this service issues none) and
``InvalidSignatureException`` (wrong signature, wrong scope, or an
``X-Amz-Date`` more than :data:`MAX_CLOCK_SKEW_SECONDS` away).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sealmq.kms.errors import KmsError

__all__ = ["MAX_CLOCK_SKEW_SECONDS", "Verified", "verify_request"]

#: AWS refuses a signature whose X-Amz-Date is more than 15 minutes off.
MAX_CLOCK_SKEW_SECONDS = 15 * 60

_ALGORITHM = "AWS4-HMAC-SHA256"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Verified:
    access_key_id: str
    principal: str


@functools.cache
def _botocore() -> tuple[Any, Any, Any]:
    """``(verifier class, AWSRequest, Credentials)``, botocore imported on first use.

    botocore and what it pulls in (urllib3, dateutil, email) cost several MiB of
    memory: a broker whose kms listener is never called does not pay for them.
    """
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped, unused-ignore]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped, unused-ignore]
    from botocore.compat import HTTPHeaders  # type: ignore[import-untyped, unused-ignore]
    from botocore.credentials import Credentials  # type: ignore[import-untyped, unused-ignore]

    class Verifier(SigV4Auth):  # type: ignore[misc, unused-ignore]
        """botocore's SigV4 with the header list taken from the request, not chosen by us."""

        def __init__(self, credentials: Any, service: str, region: str, signed: list[str]) -> None:
            super().__init__(credentials, service, region)
            self._signed = signed

        def headers_to_sign(self, request: Any) -> Any:
            selected = HTTPHeaders()
            for name in self._signed:
                for value in request.headers.get_all(name) or []:
                    selected[name] = value
            return selected

    return Verifier, AWSRequest, Credentials


def _incomplete(message: str) -> KmsError:
    return KmsError("IncompleteSignatureException", message)


def _parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != _ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm[:64]}'")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep:
            raise _incomplete(f"'{part.strip()[:64]}' not a valid key=value pair")
        fields[name] = field_value
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise _incomplete(
                f"Authorization header requires '{required}' parameter. Authorization={value[:256]}"
            )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not scope[0]:
        raise _incomplete(
            "Credential should be scoped to a valid region, service and terminated by "
            "'aws4_request'."
        )
    signed = fields["SignedHeaders"].split(";")
    if not all(signed) or signed != sorted(signed) or any(h != h.lower() for h in signed):
        raise _incomplete("SignedHeaders must be lower case, sorted and separated by ';'.")
    return scope, signed, fields["Signature"]


def verify_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    lookup: Callable[[str], tuple[str, str] | None],
    now: float,
    service: str = "kms",
    max_skew: float = MAX_CLOCK_SKEW_SECONDS,
) -> Verified:
    """Authenticate one request; ``headers`` keyed in lower case.

    ``lookup(access key id)`` returns ``(secret, principal)`` or None.
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise KmsError("MissingAuthenticationTokenException", "Missing Authentication Token")
    scope, signed, signature = _parse_authorization(authorization)
    access_key_id, scope_date, scope_region, scope_service, _ = scope
    found = lookup(access_key_id)
    if found is None or headers.get("x-amz-security-token"):
        raise KmsError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    secret, principal = found
    amz_date = headers.get("x-amz-date", "")
    if "host" not in signed or "x-amz-date" not in signed or not amz_date:
        raise _incomplete(
            "Authorization header requires the 'host' and 'x-amz-date' headers to be signed."
        )
    missing = [name for name in signed if name not in headers]
    if missing:
        raise _incomplete(f"Signed header {missing[0]} is missing from the request.")
    try:
        stamp = datetime.strptime(amz_date, _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete(
            f"Date must be in ISO-8601 'basic format'. Got '{amz_date[:32]}'."
        ) from None
    current = datetime.fromtimestamp(now, UTC)
    skew = timedelta(seconds=max_skew)
    minutes = int(max_skew // 60)
    if stamp < current - skew:
        raise KmsError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(current - skew).strftime(_TIMESTAMP)} "
            f"({current.strftime(_TIMESTAMP)} - {minutes} min.)",
        )
    if stamp > current + skew:
        raise KmsError(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than "
            f"{(current + skew).strftime(_TIMESTAMP)} "
            f"({current.strftime(_TIMESTAMP)} + {minutes} min.)",
        )
    if scope_date != amz_date[:8]:
        raise KmsError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date[:16]}' != '{amz_date[:8]}'",
        )
    if scope_service != service:
        raise KmsError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    if scope_region != region:
        raise KmsError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region: '{region}'.",
        )
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        # botocore trusts this header as the body's hash; it must be the body's hash.
        raise KmsError("InvalidSignatureException", "The body does not match X-Amz-Content-SHA256.")
    if not _SIGNATURE.match(signature):
        raise KmsError("InvalidSignatureException", "The request signature is malformed.")
    verifier, aws_request, credentials = _botocore()
    request = aws_request(
        method=method,
        url=f"https://{headers['host']}{target}",
        headers={name: headers[name] for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = verifier(credentials(access_key_id, secret), service, region, signed)
    try:
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
    except (ValueError, UnicodeError):
        # No canonical request can be made of it (a Host of "[", a path that is not text).
        raise KmsError(
            "InvalidSignatureException",
            "The request signature cannot be checked: its Host header or path is malformed.",
        ) from None
    if not hmac.compare_digest(str(expected), signature):
        raise KmsError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details.",
        )
    return Verified(access_key_id, principal)
