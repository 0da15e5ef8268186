"""Generating and checking the local CA and the server certificate.

Kept apart from :mod:`sealmq.net.tls` because ``cryptography.x509`` costs the
process several MiB of resident memory: it is imported only when certificates
must be made or re-checked, not on every start.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealmq.kms.files import make_private_dir
from sealmq.net.tls import (
    _CA_KEY,
    _CA_PEM,
    _LOCK,
    _SERVER_KEY,
    _SERVER_PEM,
    BACKDATE,
    CA_VALIDITY,
    RENEW_BEFORE,
    SERVER_VALIDITY,
    CertPaths,
    TLSSetupError,
    _locked,
    _write_file,
)

__all__ = ["check_or_create", "same_public_key"]

log = logging.getLogger("sealmq.net.tls")


def check_or_create(
    tls_dir: Path, hostnames: Sequence[str], now: datetime
) -> tuple[CertPaths, datetime]:
    """Make sure ``tls_dir`` holds a local CA and a server certificate; return their paths.

    First run: creates the folder (0700), an EC P-256 CA valid 10 years
    (``ca.pem``, ``ca.key``) and a server certificate it signs, valid 825 days,
    for ``localhost``, ``127.0.0.1``, ``::1`` and every entry of ``hostnames``
    (names or addresses; unspecified addresses such as ``0.0.0.0`` are skipped).
    Later runs reuse the files, replacing only a server certificate that is
    missing, unreadable, within 30 days of expiry, not signed by the CA, or not
    covering ``hostnames``. Keys are 0600; every file is replaced atomically, and
    concurrent callers on the same folder are serialised by a lock file.

    The CA key is only needed to sign a new server certificate: an operator may
    move ``ca.key`` offline, and the broker starts while ``server.pem`` is good.
    Raises TLSSetupError when a file cannot be used and must not be overwritten.
    """
    names = _subject_alt_names(hostnames)
    make_private_dir(tls_dir)
    paths = CertPaths(tls_dir / _CA_PEM, tls_dir / _SERVER_PEM, tls_dir / _SERVER_KEY, False)
    ca_key_path = tls_dir / _CA_KEY
    generated = False
    with _locked(tls_dir / _LOCK):
        ca_cert = _read_cert(paths.ca)
        if ca_cert is not None and ca_cert.not_valid_after_utc <= now:
            log.warning("local CA %s expired; creating a new one", paths.ca)
            ca_cert = None
        ca_key: ec.EllipticCurvePrivateKey | None = None
        if ca_cert is None:
            ca_cert, ca_key = _make_ca(now)
            _write_file(ca_key_path, _key_pem(ca_key))
            _write_file(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
            generated = True
        if not _server_usable(paths, ca_cert, names, now):
            if ca_key is None:
                ca_key = _read_ca_key(ca_key_path, ca_cert)
            server_cert, server_key = _make_server(ca_cert, ca_key, names, now)
            chain = b"".join(
                cert.public_bytes(serialization.Encoding.PEM) for cert in (server_cert, ca_cert)
            )
            _write_file(paths.key, _key_pem(server_key))
            _write_file(paths.cert, chain)
            generated = True
    if generated:
        log.info("TLS certificate %s written; clients should trust %s", paths.cert, paths.ca)
    leaf = _read_cert(paths.cert)
    expires = min(ca_cert.not_valid_after_utc, leaf.not_valid_after_utc if leaf else now)
    return CertPaths(paths.ca, paths.cert, paths.key, generated), expires


def _subject_alt_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    dns: list[str] = ["localhost"]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    for raw in hostnames:
        name = raw.strip().strip("[]").split("%", 1)[0].rstrip(".").lower()
        if not name:
            continue
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"not a host name or IP address: {raw!r}") from exc
            if name not in dns:
                dns.append(name)
            continue
        if not address.is_unspecified and address not in ips:
            ips.append(address)
    return [*(x509.DNSName(name) for name in dns), *(x509.IPAddress(ip) for ip in ips)]


def _make_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A distinct name per CA, so a client that trusted an earlier one cannot
    # confuse the two when building a chain.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealmq"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sealmq local CA {secrets.token_hex(4)}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0].value
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealmq"),
            x509.NameAttribute(NameOID.COMMON_NAME, str(first)),
        ]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _server_usable(
    paths: CertPaths, ca_cert: x509.Certificate, names: list[x509.GeneralName], now: datetime
) -> bool:
    try:
        leaf = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if leaf.not_valid_after_utc - RENEW_BEFORE <= now or not same_public_key(leaf, key):
        return False
    try:
        leaf.verify_directly_issued_by(ca_cert)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return all(name in san for name in names)


def _read_cert(path: Path) -> x509.Certificate | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TLSSetupError(f"cannot read {path}: {exc}") from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        # Not overwritten: clients may trust it. Only the operator may remove it.
        raise TLSSetupError(
            f"{path} is not a PEM certificate; remove it to create a new CA"
        ) from exc


def _read_ca_key(path: Path, ca_cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TLSSetupError(
            f"a new server certificate is needed but the CA key {path} cannot be read ({exc}); "
            f"restore it, or remove {path.parent / _CA_PEM} to create a new CA"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not same_public_key(ca_cert, key):
        raise TLSSetupError(f"{path} is not the key of {path.parent / _CA_PEM}")
    return key


def same_public_key(cert: x509.Certificate, key: object) -> bool:
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    mine: bytes = public().public_bytes(*fmt)
    return mine == cert.public_key().public_bytes(*fmt)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Collected(logging.Handler):
    """Keeps the child's log records, for the parent to log as its own."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def _child_main(argv: Sequence[str]) -> int:
    """``python -m sealmq.net.certs TLS_DIR NOW [HOSTNAME...]``: one JSON answer on stdout."""
    import json
    import sys

    collected = _Collected()
    log.addHandler(collected)
    log.setLevel(logging.INFO)
    log.propagate = False
    answer: dict[str, object]
    try:
        paths, expires = check_or_create(Path(argv[0]), argv[2:], datetime.fromisoformat(argv[1]))
        answer = {"generated": paths.generated, "expires": expires.isoformat()}
    except TLSSetupError as exc:
        answer = {"error": str(exc)}
    except ValueError as exc:  # a host name that cannot go in a certificate
        answer = {"error": str(exc), "kind": "value"}
    answer["log"] = collected.lines
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_child_main(sys.argv[1:]))
