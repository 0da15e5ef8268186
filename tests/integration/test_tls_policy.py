"""The TLS policy at the real listeners (STOMP, MQTT, WSS): TLS 1.2 and 1.3 only,
Mozilla-intermediate ECDHE+AEAD suites, no compression; old versions and weak ciphers
refused by the server; the policy printed at start."""

from __future__ import annotations

import logging
import socket
import ssl
import warnings
from collections.abc import Iterator

import pytest

from sealmq.net.tls import TLS12_CIPHERS
from tests.support import TIMEOUT, BrokerThread, wss_settings

LISTENERS = ("stomp", "mqtt", "wss")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    thread = BrokerThread(wss_settings(tmp_path_factory.mktemp("tls") / "data")).start()
    yield thread
    thread.stop()


def _client(broker: BrokerThread) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(broker.ca_file)
    return context


def _handshake(broker: BrokerThread, listener: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    port = broker.running.port(listener)  # type: ignore[union-attr]
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _assert_server_refused(error: ssl.SSLError) -> None:
    """The server refused the handshake (its alert, or it hung up on the ClientHello),
    rather than a client that could not even offer it (NO_PROTOCOLS_AVAILABLE, NO_CIPHERS)."""
    text = str(error).upper()
    assert isinstance(error, ssl.SSLEOFError) or "ALERT" in text, error
    assert "NO_PROTOCOLS" not in text and "NO_CIPHER" not in text, error


def _assert_still_served(broker: BrokerThread, listener: str) -> None:
    with _handshake(broker, listener, _client(broker)) as tls:
        assert tls.version() == "TLSv1.3"


@pytest.mark.parametrize("listener", LISTENERS)
def test_tls_13_and_12_with_aead_are_served(broker: BrokerThread, listener: str) -> None:
    with _handshake(broker, listener, _client(broker)) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.compression() is None
    client = _client(broker)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with _handshake(broker, listener, client) as tls:
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None and cipher[0] in TLS12_CIPHERS.split(":")
        assert tls.compression() is None


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_10_and_11_are_refused_by_the_server(
    broker: BrokerThread, listener: str, version: str
) -> None:
    client = _client(broker)
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old versions at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = getattr(ssl.TLSVersion, version)
        client.maximum_version = getattr(ssl.TLSVersion, version)
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(broker, listener, client)
    _assert_server_refused(refused.value)
    _assert_still_served(broker, listener)


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-SHA",  # no forward secrecy, CBC
        "AES256-GCM-SHA384",  # no forward secrecy
        "ECDHE-RSA-AES128-SHA",  # CBC
        "ECDHE-RSA-AES256-SHA384",  # CBC
    ],
)
def test_weak_tls_12_ciphers_are_refused(broker: BrokerThread, listener: str, cipher: str) -> None:
    client = _client(broker)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(cipher + ":@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(broker, listener, client)
    _assert_server_refused(refused.value)
    _assert_still_served(broker, listener)


def test_the_policy_is_printed_at_start(
    tmp_path: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sealmq"):
        thread = BrokerThread(wss_settings(tmp_path / "data")).start()  # type: ignore[operator]
        thread.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TLS policy")]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("TLS policy: TLS 1.2-1.3 only; TLS 1.2 ciphers: ECDHE-")
    for text in ("TLS_AES_256_GCM_SHA384", "compression off", "renegotiation off"):
        assert text in line
    assert "CBC" not in line and "-SHA:" not in line
