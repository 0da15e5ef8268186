"""A real browser: headless Chromium talks STOMP and MQTT over WebSocket to sealmq.

The test serves a page over HTTPS (``browser/wss.html`` and its script
``browser/wss.js``, with stomp.js and mqtt.js from ``node_modules``), starts
Chromium with an empty profile of its own that ignores certificate errors only
for the broker's key (``--ignore-certificate-errors-spki-list``), and exchanges
messages across protocols with Python clients on the TCP listeners:

- TCP MQTT publishes -> the browser's STOMP subscription -> the browser's STOMP
  SEND -> a TCP MQTT subscriber;
- TCP STOMP sends -> the browser's MQTT subscription -> the browser's MQTT
  PUBLISH -> a TCP STOMP subscriber.

The broker accepts WebSocket upgrades only from the page's origin, so the
browser's ``Origin`` header goes through the allow-list too. The page reports
each step with a POST to the server that served it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealmq.config import WebSocketSettings
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    PahoClient,
    free_port,
    stomp_connect,
    wait_until,
    wss_settings,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE = Path(__file__).resolve().parent / "browser"
#: URL path -> file the page server serves.
FILES = {
    "/wss.html": PAGE / "wss.html",
    "/wss.js": PAGE / "wss.js",
    "/lib/stomp.umd.min.js": ROOT / "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js",
    "/lib/mqtt.min.js": ROOT / "node_modules/mqtt/dist/mqtt.min.js",
}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class _PageServer(http.server.ThreadingHTTPServer):
    reports: queue.Queue[dict[str, str]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        path = FILES.get(self.path.partition("?")[0])
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", TYPES[path.suffix])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.reports.put(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _spki_hash(cert_file: Path) -> str:
    """What ``--ignore-certificate-errors-spki-list`` names: base64(SHA-256(SPKI))."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def page_port() -> int:
    return free_port()


@pytest.fixture
def broker(tmp_path: Path, page_port: int) -> Iterator[BrokerThread]:
    origin = f"https://127.0.0.1:{page_port}"
    settings = wss_settings(
        tmp_path / "data", websocket=WebSocketSettings(allowed_origins=(origin,))
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture
def page_server(broker: BrokerThread, page_port: int) -> Iterator[_PageServer]:
    for path in FILES.values():
        assert path.is_file(), f"{path} is missing: `make install-test` installs node_modules"
    server = _PageServer(("127.0.0.1", page_port), _Handler)
    server.reports = queue.Queue()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls = broker.settings.tls_dir
    context.load_cert_chain(tls / "server.pem", tls / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is needed: `make install-test` installs Debian's chromium")


def _expect(reports: queue.Queue[dict[str, str]], wanted: set[str], seen: dict[str, str]) -> None:
    """Wait until ``seen`` holds every report in ``wanted``; fail at once on an error report."""
    deadline = time.monotonic() + 3 * TIMEOUT
    while not wanted <= seen.keys():
        try:
            report = reports.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the page reported only {sorted(seen)}") from None
        assert report["what"] != "error", report["detail"]
        seen[report["what"]] = report["detail"]


def test_browser_stomp_and_mqtt_over_wss_cross_protocol(
    broker: BrokerThread, page_server: _PageServer, page_port: int, tmp_path: Path
) -> None:
    query = urlencode(
        {"host": "127.0.0.1", "port": broker.wss_port, "user": USER, "password": PASSWORD}
    )
    spki = _spki_hash(broker.settings.tls_dir / "server.pem")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    mqtt = PahoClient(broker.mqtt_port, broker.ca_file, version=4)
    stomp_conn, stomp = stomp_connect(broker.stomp_port, broker.ca_file)
    proc = subprocess.Popen(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",  # the tests may run as root, where the sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            f"--ignore-certificate-errors-spki-list={spki}",
            f"https://127.0.0.1:{page_port}/wss.html?{query}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helper processes share its group: all end with it
    )
    try:
        seen: dict[str, str] = {}
        _expect(page_server.reports, {"stomp-ready", "mqtt-ready"}, seen)
        assert mqtt.subscribe("browser/out", 1) == [1]
        stomp_conn.subscribe("/topic/browser.mqtt-out", id="1", headers={"receipt": "sub"})
        wait_until(lambda: "sub" in stomp.receipts, what="the STOMP subscription's receipt")
        # TCP MQTT -> browser STOMP -> TCP MQTT.
        assert mqtt.publish("browser/in", b"hello browser", 1) == 0
        got = mqtt.get(3 * TIMEOUT)
        assert (got.topic, got.payload) == ("browser/out", b"stomp got hello browser")
        # TCP STOMP -> browser MQTT -> TCP STOMP.
        stomp_conn.send("/topic/browser.mqtt-in", "hello mqtt.js")
        frame = stomp.get(3 * TIMEOUT)
        assert frame.body == "mqtt got hello mqtt.js"
        _expect(page_server.reports, {"stomp-received", "mqtt-received"}, seen)
        assert seen == {
            "stomp-ready": "",
            "mqtt-ready": "",
            "stomp-received": "hello browser",
            "mqtt-received": "hello mqtt.js",
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
        mqtt.close()
        stomp_conn.disconnect()
