"""The AWS JSON 1.1 protocol of KMS, sans I/O: one HTTP request in, one HTTP response out.

``POST /`` with ``X-Amz-Target: TrentService.<Operation>`` and a JSON body;
binary members (``Plaintext``, ``CiphertextBlob``) travel as base64 strings,
dates as epoch seconds. Every request is authenticated with SigV4
(:mod:`sealmq.kms.sigv4`) before anything else is looked at. Errors are
``{"__type": name, "message": text}`` with the status of
:data:`sealmq.kms.errors.ERRORS`; nothing else (no stack trace, no internal
detail) ever goes back.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import KeystoreError
from sealmq.kms.service import Caller, KeyService
from sealmq.kms.sigv4 import MAX_CLOCK_SKEW_SECONDS, verify_request

__all__ = ["CONTENT_TYPE", "TARGET_PREFIX", "HttpResponse", "WireHandler"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService."
#: Members that are blobs in KMS's model: base64 on the wire, bytes in the service.
_BLOB_MEMBERS = ("Plaintext", "CiphertextBlob")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class WireHandler:
    """Turns authenticated KMS JSON requests into :class:`KeyService` calls.

    Blocking (the service writes and fsyncs files): call :meth:`handle` off the
    event loop.
    """

    def __init__(
        self,
        service: KeyService,
        *,
        clock: Callable[[], float] = time.time,
        max_clock_skew: float = MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        self._service = service
        self._clock = clock
        self._max_skew = max_clock_skew

    @property
    def service(self) -> KeyService:
        return self._service

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        peer: str,
    ) -> HttpResponse:
        """Answer one request; ``headers`` keyed in lower case."""
        request_id = str(uuid.uuid4())
        operation = ""
        amz_target = headers.get("x-amz-target", "")
        if amz_target.startswith(TARGET_PREFIX):
            operation = amz_target[len(TARGET_PREFIX) :]
        user_agent = headers.get("user-agent", "")[:256]
        try:
            verified = verify_request(
                method,
                target,
                headers,
                body,
                region=self._service.region,
                lookup=self._lookup,
                now=self._clock(),
                max_skew=self._max_skew,
            )
        except Exception as exc:
            # Anything a request can make verification raise (a Host of "[" makes
            # botocore's URL parsing fail) is a refusal, never a dropped connection.
            error = exc if isinstance(exc, KmsError) else _unverifiable(exc, operation, peer)
            claimed = _claimed_access_key(headers.get("authorization", ""))
            caller = Caller("unknown", claimed, source_ip=peer, user_agent=user_agent)
            self._service.record_refusal(
                operation or "Unknown", caller, error, request_id=request_id
            )
            return _error(error, request_id)
        caller = Caller(
            verified.principal, verified.access_key_id, source_ip=peer, user_agent=user_agent
        )
        try:
            if method != "POST" or target.split("?", 1)[0] != "/" or not operation:
                raise KmsError(
                    "UnknownOperationException", "The action or operation requested is not valid."
                )
            request = _decode(body)
        except Exception as exc:
            error = exc if isinstance(exc, KmsError) else _undecodable(exc, operation, peer)
            self._service.record_refusal(
                operation or "Unknown", caller, error, request_id=request_id
            )
            return _error(error, request_id)
        try:
            response = self._service.call(operation, request, caller, request_id=request_id)
        except KmsError as exc:
            return _error(exc, request_id)
        except Exception:
            log.exception("key service wire: %s failed", operation)
            return _error(KmsError("KMSInternalException"), request_id)
        return HttpResponse(200, _headers(request_id), json.dumps(_encode(response)).encode())

    def _lookup(self, access_key_id: str) -> tuple[str, str] | None:
        found = self._service.keystore.lookup_access_key(access_key_id)
        return None if found is None else (found.secret, found.principal)


def _unverifiable(exc: Exception, operation: str, peer: str) -> KmsError:
    if isinstance(exc, KeystoreError | OSError):  # our fault: the access keys cannot be read
        log.error(
            "key service wire: %s from %s: cannot check the signature: %.200s",
            operation[:64] or "request",
            peer,
            exc,
        )
        return KmsError("KMSInternalException")
    return _refused(
        exc, operation, peer, "InvalidSignatureException", "signature cannot be checked"
    )


def _undecodable(exc: Exception, operation: str, peer: str) -> KmsError:
    return _refused(exc, operation, peer, "SerializationException", "body cannot be decoded")


def _refused(exc: Exception, operation: str, peer: str, code: str, what: str) -> KmsError:
    """The client's request cannot be read: one log line (no traceback), the KMS error."""
    log.warning(
        "key service wire: %s from %s: %s: %s: %.200s",
        operation[:64] or "request",
        peer,
        what,
        type(exc).__name__,
        exc,
    )
    return KmsError(code, f"The request {what}.")


def _claimed_access_key(authorization: str) -> str | None:
    _, _, rest = authorization.partition("Credential=")
    claimed = rest.split("/", 1)[0].strip()
    return claimed[:128] or None


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("x-amzn-RequestId", request_id), ("Content-Type", CONTENT_TYPE)]


def _error(exc: KmsError, request_id: str) -> HttpResponse:
    body = json.dumps({"__type": exc.code, "message": exc.message}).encode()
    return HttpResponse(exc.status, _headers(request_id), body)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise KmsError("SerializationException", "The request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise KmsError("SerializationException", "The request body must be a JSON object.")
    for name in _BLOB_MEMBERS:
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise KmsError("SerializationException", f"'{name}' must be a base64 string")
        try:
            request[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise KmsError("SerializationException", f"'{name}' is not valid base64") from None
    return request


def _encode(response: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(response)
    for name in _BLOB_MEMBERS:
        value = out.get(name)
        if isinstance(value, bytes | bytearray):
            out[name] = base64.b64encode(value).decode()
    return out
