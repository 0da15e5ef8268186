"""TLS: the generated CA and server certificate, context policy, and reload without restart.

Every handshake is real, over a socketpair or a 127.0.0.1 socket; certificates
are minted here, never committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from sealmq.net.tls import (
    TLS12_CIPHERS,
    CertPaths,
    ReloadableContext,
    TLSSetupError,
    client_context,
    ensure_certificates,
    prepare_certificates,
    server_context,
)
from tests.support import TIMEOUT, mint_client_cert


@pytest.fixture
def certs(tmp_path: Path) -> CertPaths:
    return ensure_certificates(tmp_path / "tls", ["broker.example", "10.1.2.3", "0.0.0.0"])


def strict_client(ca: Path) -> ssl.SSLContext:
    context = client_context(ca)
    # Python 3.13's default; the generated chain must pass it too.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


@dataclass
class Handshake:
    """What each side saw of one handshake."""

    version: str | None = None
    cipher: str | None = None
    server_cert: x509.Certificate | None = None
    server_error: BaseException | None = None
    client_cert_seen: bytes | None = None


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> Handshake:
    """A real handshake over a socketpair; client-side errors are raised."""
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    seen = Handshake()

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                seen.client_cert_seen = tls.getpeercert(binary_form=True)
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            seen.server_error = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=hostname) as tls:
            # The read also surfaces a TLS 1.3 server's late refusal of the client.
            assert tls.recv(2) == b"ok"
            seen.version = tls.version()
            cipher = tls.cipher()
            seen.cipher = cipher[0] if cipher else None
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            seen.server_cert = x509.load_der_x509_certificate(der)
    finally:
        right.close()
        thread.join(5)
    return seen


def served_serial(server: ssl.SSLContext, ca: Path) -> int:
    cert = handshake(server, client_context(ca), "localhost").server_cert
    assert cert is not None
    return cert.serial_number


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- generation ---------------------------------------------------------------------------------


def test_generated_files_and_modes(certs: CertPaths) -> None:
    folder = certs.ca.parent
    assert certs.generated
    assert certs == CertPaths(folder / "ca.pem", folder / "server.pem", folder / "server.key", True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("server.key", "ca.key", "ca.pem", "server.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]


def test_generated_certificate_contents(certs: CertPaths) -> None:
    ca = load(certs.ca)
    chain = x509.load_pem_x509_certificates(certs.cert.read_bytes())
    leaf = chain[0]
    assert [c.fingerprint(hashes.SHA256()) for c in chain[1:]] == [ca.fingerprint(hashes.SHA256())]

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca_days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 3650 <= ca_days <= 3651

    leaf.verify_directly_issued_by(ca)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "broker.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
    ]  # 0.0.0.0 (bind-all) is skipped
    leaf_days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert 825 <= leaf_days <= 826


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1", "broker.example"])
def test_handshake_verifies_generated_chain(certs: CertPaths, hostname: str) -> None:
    server = server_context(certs.cert, certs.key)
    seen = handshake(server, strict_client(certs.ca), hostname)
    assert seen.server_error is None
    assert seen.version == "TLSv1.3"
    assert seen.server_cert is not None
    assert seen.server_cert.fingerprint(hashes.SHA256()) == load(certs.cert).fingerprint(
        hashes.SHA256()
    )


def test_wrong_hostname_refused(certs: CertPaths) -> None:
    server = server_context(certs.cert, certs.key)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(server, client_context(certs.ca), "other.example")


def test_tls12_uses_ecdhe_aead(certs: CertPaths) -> None:
    client = client_context(certs.ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    seen = handshake(server_context(certs.cert, certs.key), client, "localhost")
    assert seen.version == "TLSv1.2"
    assert seen.cipher in TLS12_CIPHERS.split(":")


def test_tls12_cbc_only_client_refused(certs: CertPaths) -> None:
    client = client_context(certs.ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(server_context(certs.cert, certs.key), client, "localhost")


def test_tls11_refused(certs: CertPaths) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(certs.ca)
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context(certs.cert, certs.key).wrap_socket(left, server_side=True):
                pass
        except ssl.SSLError as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    with pytest.raises(ssl.SSLError), client.wrap_socket(right, server_hostname="localhost"):
        pass
    right.close()
    thread.join(5)
    # The server refused it, not merely the client.
    assert len(errors) == 1
    assert "UNSUPPORTED_PROTOCOL" in str(errors[0]).upper()


def test_context_options(certs: CertPaths) -> None:
    context = server_context(certs.cert, certs.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and tls12 <= set(TLS12_CIPHERS.split(":"))


# -- reuse and renewal -----------------------------------------------------------------------


def test_second_call_reuses_files(certs: CertPaths) -> None:
    before = {p.name: p.read_bytes() for p in certs.ca.parent.iterdir()}
    again = ensure_certificates(certs.ca.parent, ["broker.example", "10.1.2.3"])
    assert not again.generated
    assert {p.name: p.read_bytes() for p in certs.ca.parent.iterdir()} == before


def test_missing_server_cert_regenerated_under_same_ca(certs: CertPaths) -> None:
    old = load(certs.cert)
    ca_before = certs.ca.read_bytes()
    certs.cert.unlink()
    again = ensure_certificates(certs.ca.parent, ["broker.example"])
    assert again.generated
    assert certs.ca.read_bytes() == ca_before
    assert load(certs.cert).serial_number != old.serial_number
    load(certs.cert).verify_directly_issued_by(load(certs.ca))


def test_expired_server_cert_renewed(certs: CertPaths) -> None:
    ca_before = certs.ca.read_bytes()
    later = datetime.now(UTC) + timedelta(days=900)
    again = ensure_certificates(certs.ca.parent, ["broker.example"], now=later)
    assert again.generated
    assert certs.ca.read_bytes() == ca_before
    assert load(certs.cert).not_valid_after_utc > later


def test_new_hostname_renews_server_cert(certs: CertPaths) -> None:
    again = ensure_certificates(certs.ca.parent, ["mq.internal"])
    assert again.generated
    san = load(certs.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "mq.internal" in san.value.get_values_for_type(x509.DNSName)


def test_ca_key_may_be_offline(certs: CertPaths) -> None:
    ca_key = certs.ca.parent / "ca.key"
    ca_key.unlink()
    assert not ensure_certificates(certs.ca.parent, ["broker.example"]).generated
    certs.cert.unlink()
    with pytest.raises(TLSSetupError, match=r"CA key .*ca\.key"):
        ensure_certificates(certs.ca.parent, ["broker.example"])


def test_corrupt_ca_not_overwritten(certs: CertPaths) -> None:
    certs.ca.write_bytes(b"garbage")
    with pytest.raises(TLSSetupError, match="not a PEM certificate"):
        ensure_certificates(certs.ca.parent, [])
    assert certs.ca.read_bytes() == b"garbage"


def test_a_child_process_makes_the_files_the_broker_would(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The broker makes its certificates in a child process, so it never loads
    # cryptography.x509 itself: the files, the answer and the log line are the same.
    caplog.set_level(logging.INFO, logger="sealmq.net.tls")
    made = prepare_certificates(tmp_path / "tls", ["broker.example"], in_child=True)()
    assert made.generated
    san = load(made.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "broker.example" in san.value.get_values_for_type(x509.DNSName)
    assert load(made.cert).issuer == load(made.ca).subject
    assert any("written; clients should trust" in r.getMessage() for r in caplog.records)
    # Checked once: the next start reads no certificate at all.
    again = prepare_certificates(tmp_path / "tls", ["broker.example"], in_child=True)()
    assert again == ensure_certificates(tmp_path / "tls", ["broker.example"])
    assert not again.generated


def test_a_child_process_reports_what_it_refused(certs: CertPaths, tmp_path: Path) -> None:
    certs.ca.write_bytes(b"garbage")
    with pytest.raises(TLSSetupError, match="not a PEM certificate"):
        prepare_certificates(certs.ca.parent, [], in_child=True)()
    assert certs.ca.read_bytes() == b"garbage"
    with pytest.raises(ValueError, match="not a host name or IP address"):
        prepare_certificates(tmp_path / "other", ["a" * 300], in_child=True)()


def test_no_temp_files_left(certs: CertPaths) -> None:
    assert not [p for p in certs.ca.parent.iterdir() if p.name.endswith(".tmp")]


# -- client certificates ---------------------------------------------------------------------


def test_client_certificate_required(certs: CertPaths, tmp_path: Path) -> None:
    server = server_context(certs.cert, certs.key, client_ca=certs.ca, require_client_cert=True)
    assert server.verify_mode == ssl.CERT_REQUIRED
    cert, key = mint_client_cert(certs, tmp_path)

    seen = handshake(server, client_context(certs.ca, cert=cert, key=key), "localhost")
    assert seen.server_error is None
    assert seen.client_cert_seen == x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )

    # Without a certificate the server refuses (under TLS 1.3 the client may only
    # notice on its first read).
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(server, client_context(certs.ca), "localhost")


def test_client_certificate_optional(certs: CertPaths) -> None:
    server = server_context(certs.cert, certs.key, client_ca=certs.ca)
    assert server.verify_mode == ssl.CERT_OPTIONAL
    seen = handshake(server, client_context(certs.ca), "localhost")
    assert seen.server_error is None
    assert seen.client_cert_seen is None


def test_require_client_cert_needs_ca(certs: CertPaths) -> None:
    with pytest.raises(ValueError):
        server_context(certs.cert, certs.key, require_client_cert=True)


def test_bad_files_raise_setup_error(certs: CertPaths, tmp_path: Path) -> None:
    with pytest.raises(TLSSetupError, match="cannot load certificate"):
        server_context(tmp_path / "missing.pem", certs.key)


# -- reload -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reloadable(certs: CertPaths) -> Iterator[ReloadableContext]:
    yield ReloadableContext(certs.cert, certs.key, check_interval=0)


def replace_server_cert(certs: CertPaths) -> x509.Certificate:
    certs.cert.unlink()
    ensure_certificates(certs.ca.parent, ["broker.example"])
    return load(certs.cert)


@pytest.mark.asyncio
async def test_reload_picks_up_new_cert_without_restart(
    certs: CertPaths, reloadable: ReloadableContext
) -> None:
    old = load(certs.cert)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=reloadable.context)
    port = server.sockets[0].getsockname()[1]
    client = strict_client(certs.ca)

    async def serial_seen() -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert await reader.read() == b"ok"
        writer.close()
        await writer.wait_closed()
        return x509.load_der_x509_certificate(der).serial_number

    try:
        assert await serial_seen() == old.serial_number
        assert not reloadable.maybe_reload()  # nothing changed

        new = replace_server_cert(certs)
        assert new.serial_number != old.serial_number
        assert reloadable.maybe_reload()
        assert reloadable.last_error is None
        assert reloadable.reloads == 1
        assert await serial_seen() == new.serial_number
        assert not reloadable.maybe_reload()
    finally:
        server.close()
        await server.wait_closed()


def test_reload_keeps_serving_on_mismatched_pair(
    certs: CertPaths, reloadable: ReloadableContext, tmp_path: Path
) -> None:
    old = load(certs.cert)
    other = ensure_certificates(tmp_path / "other", [])
    certs.key.write_bytes(other.key.read_bytes())  # a key that is not the cert's
    assert not reloadable.maybe_reload()
    assert reloadable.last_error is not None
    assert "not the private key" in reloadable.last_error
    assert served_serial(reloadable.context, certs.ca) == old.serial_number

    # Not retried while the files stay the same; picked up once they are fixed.
    assert not reloadable.maybe_reload()
    new = replace_server_cert(certs)
    assert reloadable.maybe_reload()
    assert served_serial(reloadable.context, certs.ca) == new.serial_number


def test_reload_survives_missing_files(certs: CertPaths, reloadable: ReloadableContext) -> None:
    os.rename(certs.cert, certs.cert.with_suffix(".moved"))
    assert not reloadable.maybe_reload()
    assert reloadable.last_error is not None
    assert (
        served_serial(reloadable.context, certs.ca)
        == load(certs.cert.with_suffix(".moved")).serial_number
    )


def test_maybe_reload_checks_at_most_every_interval(certs: CertPaths) -> None:
    clock = FakeClock()
    reloadable = ReloadableContext(certs.cert, certs.key, check_interval=5, clock=clock)
    replace_server_cert(certs)
    assert not reloadable.maybe_reload()  # too soon
    clock.now += 5
    assert reloadable.maybe_reload()


def test_forced_reload_raises_on_bad_files(certs: CertPaths, reloadable: ReloadableContext) -> None:
    certs.cert.write_bytes(b"not pem")
    with pytest.raises(TLSSetupError):
        reloadable.reload()


@pytest.mark.asyncio
async def test_watch_task_reloads(certs: CertPaths) -> None:
    reloadable = ReloadableContext(certs.cert, certs.key, check_interval=0.01)
    task = asyncio.create_task(reloadable.watch())
    try:
        new = replace_server_cert(certs)
        async with asyncio.timeout(TIMEOUT):  # the watch task's next check, bounded
            while not reloadable.reloads:
                await asyncio.sleep(0.01)
        served = await asyncio.to_thread(served_serial, reloadable.context, certs.ca)
        assert served == new.serial_number
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_later_starts_do_not_load_x509(certs: CertPaths) -> None:
    """A start with unchanged certificates skips parsing them (x509 costs MiBs of RSS)."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from sealmq.net.tls import ensure_certificates; "
        f"p = ensure_certificates(Path({str(certs.ca.parent)!r}), ['broker.example', '10.1.2.3']); "
        "print(p.generated, 'cryptography.x509' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    # A changed file is noticed and checked in full again.
    certs.cert.write_bytes(certs.cert.read_bytes() + b"\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
