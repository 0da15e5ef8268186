"""Certificate reload: replaced files (or SIGHUP) give new connections the new
certificate within seconds, connected clients stay; a broken file is refused with a
logged error and the current certificate stays in use."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.net.tls import CertPaths, ensure_certificates
from tests.support import TIMEOUT, BrokerProcess, ProcessBrokers, stomp_connect, wait_until


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


def _fingerprint(path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(
        path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    return hashlib.sha256(der).hexdigest()


def _served(broker: BrokerProcess, trust: Path) -> str:
    """The SHA-256 of the certificate a new connection is served."""
    context = ssl.create_default_context(cafile=str(trust))
    raw = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=TIMEOUT)
    with raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _install(source: CertPaths, live: Path) -> None:
    """Replace the live pair atomically, as a certificate manager does."""
    for name, path in (("server.pem", source.cert), ("server.key", source.key)):
        tmp = live / f".{name}.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, live / name)


@pytest.fixture
def setup(
    tmp_path: Path, processes: ProcessBrokers
) -> tuple[BrokerProcess, CertPaths, CertPaths, Path, Path]:
    first = ensure_certificates(tmp_path / "first", ["localhost", "127.0.0.1"])
    second = ensure_certificates(tmp_path / "second", ["localhost", "127.0.0.1"])
    trust = tmp_path / "trust.pem"
    trust.write_text(first.ca.read_text() + second.ca.read_text())
    live = tmp_path / "live"
    live.mkdir()
    _install(first, live)
    broker = processes.new(
        sections=f'[tls]\ncert = "{live / "server.pem"}"\nkey = "{live / "server.key"}"\n'
    )
    return broker, first, second, trust, live


def test_replaced_files_reach_new_connections_and_connected_clients_stay(
    setup: tuple[BrokerProcess, CertPaths, CertPaths, Path, Path],
) -> None:
    broker, first, second, trust, live = setup
    broker.start()
    assert _served(broker, trust) == _fingerprint(first.cert)
    conn, got = stomp_connect(broker.stomp_port, trust)
    try:
        conn.subscribe("/queue/r", id="1")
        _install(second, live)
        wait_until(
            lambda: _served(broker, trust) == _fingerprint(second.cert),
            what="new connections served the new certificate",
        )
        # The connection made under the old certificate goes on.
        conn.send("/queue/r", "still here", headers={"receipt": "r"})
        assert got.get().body == "still here"
        # A broken file: refused, logged, the new-but-current certificate stays.
        (live / "server.pem").write_text("not a certificate")
        wait_until(
            lambda: "keeping the current TLS certificate" in broker.run_output(),
            what="the broken file refused in the log",
        )
        assert _served(broker, trust) == _fingerprint(second.cert)
        assert conn.is_connected()
    finally:
        conn.disconnect()
    assert broker.stop() == 0


def test_sighup_reloads_now_and_refuses_a_mismatched_pair(
    setup: tuple[BrokerProcess, CertPaths, CertPaths, Path, Path],
) -> None:
    broker, first, second, trust, live = setup
    broker.start()
    assert broker.proc is not None
    # A mismatched pair (the second's certificate, the first's key).
    shutil.copyfile(second.cert, live / ".c")
    os.replace(live / ".c", live / "server.pem")
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "ERROR sealmq: keeping the current TLS certificate" in broker.run_output(),
        what="SIGHUP's refusal logged as an error",
    )
    assert "SIGHUP: reloading the TLS certificate" in broker.run_output()
    assert _served(broker, trust) == _fingerprint(first.cert)
    _install(second, live)
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: _served(broker, trust) == _fingerprint(second.cert),
        what="the certificate after SIGHUP",
    )
    assert broker.proc.poll() is None
    assert broker.stop() == 0
