"""``KeyProvider``-shaped clients of a key service, for the store.

Both give ``key_id``, ``generate_data_key(context) -> (plaintext, wrapped)`` and
``decrypt_data_key(wrapped, context) -> plaintext`` (the store's narrow
interface), asking for 256-bit data keys bound to the encryption context.

- :class:`ServiceKeyProvider` calls a :class:`~sealmq.kms.service.KeyService`
  in-process, as a principal (through the service by default, as Amazon MQ
  does, so the service-managed key and per-broker keys work).
- :class:`RemoteKeyProvider` speaks the KMS JSON protocol with botocore to any
  KMS-compatible endpoint: this package's server, or AWS KMS itself.

Failures are raised as :class:`~sealmq.kms.errors.KmsError` (named as KMS names
them) or, for a remote endpoint that cannot be reached, botocore's own errors;
the store turns any of them into its ``KeyUnavailableError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sealmq.kms.errors import ERRORS, KmsError
from sealmq.kms.service import Caller, KeyService

__all__ = ["RemoteKeyProvider", "ServiceKeyProvider"]

_DATA_KEY_SPEC = "AES_256"


class ServiceKeyProvider:
    """Data keys from an in-process :class:`KeyService`, under ``key_id``.

    ``key_id`` may be a key id, key ARN, alias name or alias ARN (e.g.
    ``alias/aws/mq``), the service-owned key's id, or a per-broker key's id.
    ``principal`` defaults to the admin; unless it is the admin of a customer
    key, it needs a grant (pass its token in ``grant_tokens`` if you have one).
    ``via_service`` False calls as the principal itself rather than through
    Amazon MQ (then the service-managed key refuses direct use, as in AWS).
    ``pin_decrypt`` False sends Decrypt without a KeyId, so data keys wrapped by
    another key the principal may use (a migrated broker's older segments) still
    unwrap; the blob names its key and the service checks the caller's right to it.
    """

    def __init__(
        self,
        service: KeyService,
        key_id: str,
        principal: str | None = None,
        *,
        grant_tokens: Sequence[str] = (),
        via_service: bool = True,
        pin_decrypt: bool = True,
    ) -> None:
        self._service = service
        self._key_id = key_id
        self._tokens = list(grant_tokens)
        self._pin_decrypt = pin_decrypt
        if via_service:
            self._caller = service.service_caller(principal)
        else:
            self._caller = Caller(principal or service.admin_principal, internal=True)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def caller(self) -> Caller:
        return self._caller

    def _common(self, context: Mapping[str, str]) -> dict[str, Any]:
        request: dict[str, Any] = {"KeyId": self._key_id, "EncryptionContext": dict(context)}
        if self._tokens:
            request["GrantTokens"] = list(self._tokens)
        return request

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        request = {**self._common(context), "KeySpec": _DATA_KEY_SPEC}
        response = self._service.call("GenerateDataKey", request, self._caller)
        return bytes(response["Plaintext"]), bytes(response["CiphertextBlob"])

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        request = {**self._common(context), "CiphertextBlob": bytes(wrapped)}
        if not self._pin_decrypt:
            del request["KeyId"]
        response = self._service.call("Decrypt", request, self._caller)
        return bytes(response["Plaintext"])


def _read_credentials(path: Path, profile: str) -> tuple[str, str, str | None]:
    """``(access key id, secret, session token)`` of ``profile`` in a shared-credentials file."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            parser.read_file(f)
        section = parser[profile]
        return (
            section["aws_access_key_id"],
            section["aws_secret_access_key"],
            section.get("aws_session_token"),
        )
    except (OSError, KeyError, configparser.Error) as exc:
        raise KmsError(
            "UnrecognizedClientException",
            f"no credentials for profile {profile!r} in {path}: {type(exc).__name__}",
        ) from None


class RemoteKeyProvider:
    """Data keys from a KMS-compatible endpoint, over HTTPS with SigV4 (botocore).

    ``endpoint_url`` None means AWS KMS in ``region``. Credentials come from the
    arguments, else from ``credentials_file``/``profile``, else from botocore's
    usual chain (environment, ~/.aws, instance role). ``verify`` is a CA bundle
    path (for this package's server with a local CA), True or False.

    Every call is bounded: ``max_attempts`` attempts (the first included;
    botocore's standard retry mode) of at most ``connect_timeout`` to connect and
    ``read_timeout`` to be answered, so a service that accepts connections and
    never answers is given up on within about ``max_attempts * (connect_timeout +
    read_timeout)`` seconds (about 7 s with the defaults, against botocore's own 45 s),
    and the caller (the store's writer thread) is not held longer.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        key_id: str,
        *,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        credentials_file: Path | None = None,
        profile: str | None = None,
        verify: str | bool | None = None,
        grant_tokens: Sequence[str] = (),
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 2,
    ) -> None:
        import botocore.config  # type: ignore[import-untyped, unused-ignore]
        import botocore.session  # type: ignore[import-untyped, unused-ignore]

        if credentials_file is not None and access_key_id is None:
            # The file named here wins over AWS_* variables of the environment, which
            # botocore's chain would otherwise consult first; the profile is the file's.
            access_key_id, secret_access_key, session_token = _read_credentials(
                Path(credentials_file), profile or "default"
            )
            profile = None
        session = botocore.session.Session(profile=profile)
        config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # total_max_attempts counts the first attempt; botocore's max_attempts does not.
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        self._client: Any = session.create_client(
            "kms",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            verify=verify,
            config=config,
        )
        self._key_id = key_id
        self._tokens = list(grant_tokens)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def client(self) -> Any:
        """The botocore KMS client (for calls beyond the KeyProvider interface)."""
        return self._client

    def _common(self, context: Mapping[str, str]) -> dict[str, Any]:
        request: dict[str, Any] = {"KeyId": self._key_id, "EncryptionContext": dict(context)}
        if self._tokens:
            request["GrantTokens"] = list(self._tokens)
        return request

    def _call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

        try:
            response: dict[str, Any] = getattr(self._client, operation)(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", ""))
            if code in ERRORS:
                raise KmsError(code, message) from exc
            raise
        return response

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        request = {**self._common(context), "KeySpec": _DATA_KEY_SPEC}
        response = self._call("generate_data_key", request)
        return bytes(response["Plaintext"]), bytes(response["CiphertextBlob"])

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        request = {**self._common(context), "CiphertextBlob": bytes(wrapped)}
        response = self._call("decrypt", request)
        return bytes(response["Plaintext"])

    def close(self) -> None:
        self._client.close()
