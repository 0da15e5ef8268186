"""Support for the key-service tests: certificates, a fake clock, the served service.

Certificates are minted here with ``cryptography`` (a CA and a server certificate
for 127.0.0.1), never committed. The service runs on an event loop in a
background thread; boto3 calls it from the test thread. The service's clock is a
:class:`FakeClock` (advance it to reach deletion dates and rotations); the wire's
clock is the real one plus ``Kms.wire_skew`` (to make signatures look stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import ipaddress
import json
import os
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealmq.kms.server import KmsServer
from sealmq.kms.service import KeyService
from sealmq.kms.wire import WireHandler

DAY = 86400.0
#: Every wait, times SEALMQ_TEST_TIMEOUT_FACTOR (as in tests/support.py, without importing
#: the broker: these tests need nothing of sealmq outside sealmq.kms).
TIMEOUT = 10.0 * float(os.environ.get("SEALMQ_TEST_TIMEOUT_FACTOR", "1"))


class FakeClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def mint_certs(directory: Path) -> Certs:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealmq kms test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certs(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Kms:
    service: KeyService
    server: KmsServer
    port: int
    certs: Certs
    data_dir: Path
    clock: FakeClock
    session: boto3.session.Session
    wire_skew: float = 0.0
    _clients: list[Any] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit" / "kms.jsonl"

    def client(self, access_key_id: str | None = None, secret: str | None = None) -> Any:
        """A boto3 KMS client of the served endpoint (the admin's credentials by default)."""
        admin = self.service.keystore.admin_access_key
        client = self.session.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key_id or admin.access_key_id,
            aws_secret_access_key=secret or admin.secret,
            verify=str(self.certs.ca),
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=TIMEOUT,
                read_timeout=TIMEOUT,
            ),
        )
        self._clients.append(client)
        return client

    def principal(self, name: str) -> tuple[str, Any]:
        """A role principal of the account with an access key, and a client using it."""
        arn = f"arn:aws:iam::{self.service.account_id}:role/{name}"
        access_key = self.service.keystore.create_access_key(arn)
        return arn, self.client(access_key.access_key_id, access_key.secret)

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_bytes().splitlines()]

    def close(self) -> None:
        for client in self._clients:
            client.close()


def serve(
    loop: asyncio.AbstractEventLoop, handler: WireHandler, context: ssl.SSLContext | None
) -> KmsServer:
    server = KmsServer(handler, context)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(TIMEOUT)
    return server


def stop(loop: asyncio.AbstractEventLoop, server: KmsServer) -> None:
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(TIMEOUT)


def error_code(exc: BaseException) -> str:
    response: dict[str, Any] = getattr(exc, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def kms_error(code: str, match: str | None = None) -> Iterator[None]:
    """Expect a boto3 ClientError with KMS error ``code`` (and a message matching ``match``)."""
    with pytest.raises(ClientError) as info:
        yield
    assert error_code(info.value) == code, str(info.value)
    if match is not None:
        assert re.search(match, str(info.value)), str(info.value)


def sign(
    kms: Kms,
    operation: str,
    payload: dict[str, Any] | bytes,
    *,
    access_key_id: str | None = None,
    secret: str | None = None,
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a request signed with botocore's SigV4, as boto3 would send it."""
    admin = kms.service.keystore.admin_access_key
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = AWSRequest(
        method="POST",
        url=f"{kms.endpoint}/",
        data=body,
        headers={
            "X-Amz-Target": f"TrentService.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
            **(headers or {}),
        },
    )
    credentials = Credentials(access_key_id or admin.access_key_id, secret or admin.secret)
    SigV4Auth(credentials, "kms", region).add_auth(request)
    return dict(request.headers.items()), body


def post(
    kms: Kms,
    headers: dict[str, str],
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send one raw HTTPS request; (status, headers, JSON body)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", kms.port, context=kms.certs.client_context(), timeout=TIMEOUT
    )
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else {}
    finally:
        connection.close()
