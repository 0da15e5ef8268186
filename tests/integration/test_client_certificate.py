"""The core knows who a connection is: its user, groups and verified client certificate.

Security (authorization by group, certificate logins) builds on this: every adapter
hands the core the whole principal, not just a user name.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import stomp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion

from sealmq.config import Listener, TLSSettings
from sealmq.core.security import Principal
from sealmq.net.tls import CertPaths, ensure_certificates
from tests.support import (
    PASSWORD,
    USER,
    BrokerThread,
    Collector,
    make_settings,
    mint_client_cert,
    wait_until,
)


@pytest.fixture
def certs(tmp_path: Path) -> CertPaths:
    return ensure_certificates(tmp_path / "tls", ["127.0.0.1"])


@pytest.fixture
def broker(tmp_path: Path, certs: CertPaths) -> Iterator[BrokerThread]:
    tls = TLSSettings(cert=certs.cert, key=certs.key, ca=certs.ca)
    settings = make_settings(
        tmp_path / "data", tls=tls, listeners=(Listener("stomp", 0), Listener("mqtt", 0))
    )
    running = BrokerThread(settings).start()
    yield running
    running.stop()


def principals(broker: BrokerThread) -> list[Principal | None]:
    assert broker.running is not None
    core = broker.running.broker
    return broker.call(lambda: [c.principal for c in core.connections.values()])


def test_a_stomp_client_certificate_reaches_the_core_with_the_user(
    broker: BrokerThread, certs: CertPaths, tmp_path: Path
) -> None:
    cert, key = mint_client_cert(
        certs, tmp_path, subject=(("C", "US"), ("O", "Example, Inc."), ("CN", "orders-app"))
    )
    hosts = [("127.0.0.1", broker.stomp_port)]
    conn = stomp.Connection12(hosts)
    conn.set_ssl(
        for_hosts=hosts,
        ca_certs=str(certs.ca),
        cert_file=str(cert),
        key_file=str(key),
        ssl_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    conn.set_listener("collector", Collector())
    conn.connect(USER, PASSWORD, wait=True)
    try:
        [principal] = principals(broker)
        assert principal is not None
        assert principal.username == USER
        assert principal.groups == frozenset({"admins"})
        assert principal.certificate is not None
        # Most specific first, as ActiveMQ's (Java's) distinguished names are written.
        assert principal.certificate.subject == r"CN=orders-app,O=Example\, Inc.,C=US"
        ca_subject = x509.load_pem_x509_certificate(certs.ca.read_bytes()).subject
        assert principal.certificate.issuer == ca_subject.rfc4514_string()
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
        der = leaf.public_bytes(serialization.Encoding.DER)
        assert principal.certificate.fingerprint == hashlib.sha256(der).hexdigest()
        assert int(principal.certificate.serial_number, 16) == leaf.serial_number
    finally:
        conn.disconnect()


def test_an_mqtt_client_without_a_certificate_has_none(
    broker: BrokerThread, certs: CertPaths
) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="no-cert")
    client.tls_set(ca_certs=str(certs.ca))
    client.username_pw_set(USER, PASSWORD)
    client.connect("127.0.0.1", broker.mqtt_port)
    client.loop_start()
    try:
        wait_until(client.is_connected, what="MQTT connected")
        wait_until(lambda: len(principals(broker)) == 1, what="core connection")
        [principal] = principals(broker)
        assert principal is not None and principal.username == USER
        assert principal.certificate is None
    finally:
        client.disconnect()
        client.loop_stop()
