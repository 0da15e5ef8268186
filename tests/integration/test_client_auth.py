"""Client certificates per listener (``client_auth`` none / optional / required) and
certificate logins (``[[certificate_users]]``): mutual-TLS clients need no password."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import (
    AuthorizationSettings,
    CertificateUserSettings,
    ClientAuth,
    Listener,
    TLSSettings,
)
from sealmq.core.security import Principal
from sealmq.net.tls import CertPaths, ensure_certificates
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    PahoClient,
    make_settings,
    mint_client_cert,
)

CONNECT = b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return ensure_certificates(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def client_certs(
    certs: CertPaths, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("clients")
    other = ensure_certificates(tmp_path_factory.mktemp("other-ca"), ["127.0.0.1"])
    return {
        "orders": mint_client_cert(
            certs, folder, subject=(("O", "Example"), ("CN", "orders-app")), name="orders"
        ),
        "device": mint_client_cert(
            certs,
            folder,
            subject=(("CN", "device-9"),),
            dns_names=["device-9.example"],
            name="device",
        ),
        "unlisted": mint_client_cert(certs, folder, subject=(("CN", "nobody"),), name="unlisted"),
        "foreign": mint_client_cert(
            other, folder, subject=(("CN", "orders-app"), ("O", "Example")), name="foreign"
        ),
    }


@pytest.fixture(scope="module")
def broker(certs: CertPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    tls = TLSSettings(
        cert=certs.cert,
        key=certs.key,
        client_ca=certs.ca,
        listeners=(("stomp", ClientAuth("required")), ("mqtt", ClientAuth("optional"))),
    )
    settings = make_settings(
        tmp_path_factory.mktemp("broker") / "data",
        tls=tls,
        listeners=(Listener("stomp", 0), Listener("mqtt", 0), Listener("wss", 0)),
        certificate_users=(
            CertificateUserSettings(
                "orders", subject="CN=orders-app,O=Example", groups=frozenset({"apps"})
            ),
            CertificateUserSettings(
                "device-9", san="DNS:device-9.example", groups=frozenset({"devices"})
            ),
        ),
        authorization=(
            AuthorizationSettings(
                "topic://devices.>",
                frozenset({"devices"}),
                frozenset({"devices"}),
                frozenset({"devices"}),
            ),
        ),
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


def _context(certs: CertPaths, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def _stomp_connected(
    broker: BrokerThread, context: ssl.SSLContext, frame: bytes = CONNECT
) -> bytes:
    """What the broker answers a CONNECT over a raw TLS socket: its first frame's bytes,
    b"" if it closed, or the SSL error's text (TLS 1.3 reports a refused client
    certificate after the handshake, at the first read)."""
    raw = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=TIMEOUT)
    try:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(frame)
            return tls.recv(4096)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return f"refused: {exc}".encode()
    finally:
        raw.close()


def _principals(broker: BrokerThread) -> list[Principal | None]:
    assert broker.running is not None
    core = broker.running.broker
    return broker.call(lambda: [c.principal for c in core.connections.values()])


def test_required_refuses_a_client_without_a_certificate(
    broker: BrokerThread, certs: CertPaths
) -> None:
    answer = _stomp_connected(broker, _context(certs))
    assert answer.startswith(b"refused: ") or answer == b"", answer
    assert b"CONNECTED" not in answer


def test_required_refuses_a_certificate_of_another_ca(
    broker: BrokerThread, certs: CertPaths, client_certs: dict[str, tuple[Path, Path]]
) -> None:
    answer = _stomp_connected(broker, _context(certs, client_certs["foreign"]))
    assert b"CONNECTED" not in answer


def test_a_listed_certificate_logs_in_without_a_password(
    broker: BrokerThread, certs: CertPaths, client_certs: dict[str, tuple[Path, Path]]
) -> None:
    answer = _stomp_connected(broker, _context(certs, client_certs["orders"]))
    assert answer.startswith(b"CONNECTED\n"), answer


def test_an_unlisted_certificate_still_needs_a_password(
    broker: BrokerThread, certs: CertPaths, client_certs: dict[str, tuple[Path, Path]]
) -> None:
    context = _context(certs, client_certs["unlisted"])
    assert _stomp_connected(broker, context).startswith(b"ERROR\n")
    login = f"CONNECT\naccept-version:1.2\nhost:/\nlogin:{USER}\npasscode:{PASSWORD}\n\n\x00"
    assert _stomp_connected(broker, context, login.encode()).startswith(b"CONNECTED\n")


def test_optional_serves_clients_with_and_without_and_maps_a_san(
    broker: BrokerThread, certs: CertPaths, client_certs: dict[str, tuple[Path, Path]]
) -> None:
    with_password = PahoClient(broker.mqtt_port, certs.ca, version=5)
    try:
        assert with_password.connack is not None and with_password.connack.reason_code == 0
    finally:
        with_password.close()
    device = PahoClient(
        broker.mqtt_port, certs.ca, version=5, username=None, client_cert=client_certs["device"]
    )
    try:
        assert device.connack is not None and device.connack.reason_code == 0
        [principal] = [p for p in _principals(broker) if p and p.username == "device-9"]
        assert principal.groups == {"devices"}
        assert principal.certificate is not None
        assert "DNS:device-9.example" in principal.certificate.subject_alt_names
        # Its groups are the map's: devices.> is theirs, orders.> is not.
        assert device.subscribe("devices/9/#", 1) == [1]
        assert device.subscribe("orders/#", 1) == [0x87]
    finally:
        device.close()
    # Without a certificate nor credentials: refused like a bad password.
    anonymous = PahoClient(broker.mqtt_port, certs.ca, version=5, username=None, connect=False)
    try:
        connack = anonymous.connect()
        assert connack is not None and connack.reason_code == 0x86
    finally:
        anonymous.close()


def test_none_asks_for_no_certificate(broker: BrokerThread, certs: CertPaths) -> None:
    assert broker.running is not None
    port = broker.running.port("wss")
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with _context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1")
