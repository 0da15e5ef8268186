"""MQTT and STOMP over WebSocket on the ``wss`` listener, with the clients users use.

paho-mqtt (``transport="websockets"``, MQTT 3.1.1 and 5), stomp.py's WebSocket
transport, Node's ``mqtt`` over ``wss://``, and the websockets library's own client
for what the libraries hide (subprotocol choice, STOMP frames across messages,
close codes). Every message crosses to or from the TCP listeners too: the
adapters are the same, and so are the destinations.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sealmq.config import LimitSettings, WebSocketSettings
from sealmq.net.websocket import CLOSE_TIMEOUT
from sealmq.wire.mqtt import Connack as MqttConnack
from sealmq.wire.mqtt import Connect as MqttConnect
from sealmq.wire.mqtt import MqttCodec, Publish, Suback, Subscribe, Subscription
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    Collector,
    PahoClient,
    ProcessBrokers,
    free_port,
    stomp_connect,
    tls_client_context,
    wait_until,
    wss_settings,
)

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"


@pytest.fixture(scope="module")
def wss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    """A broker serving STOMP, MQTT and WSS over TLS on free ports, shared by this
    module's tests (each uses destinations of its own)."""
    thread = BrokerThread(wss_settings(tmp_path_factory.mktemp("wss") / "data")).start()
    yield thread
    thread.stop()


def _stomp_over_wss(broker: BrokerThread, **kw: Any) -> tuple[stomp.WSConnection, Collector]:
    """stomp.py's WebSocket connection over TLS on ``/stomp``, connected, with a Collector."""
    hosts = [("127.0.0.1", broker.wss_port)]
    conn = stomp.WSConnection(hosts, ws_path="/stomp", **kw)
    conn.set_ssl(for_hosts=hosts, ca_certs=str(broker.ca_file), ssl_version=ssl.PROTOCOL_TLS_CLIENT)
    collector = Collector()
    conn.set_listener("collector", collector)
    conn.connect(USER, PASSWORD, wait=True)
    return conn, collector


def _ws(broker: BrokerThread, path: str = "/", **kw: Any) -> ClientConnection:
    """The websockets library's client over TLS, trusting the broker's CA."""
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", TIMEOUT)
    context = tls_client_context(broker.ca_file)
    # TLS 1.2 for this client only: its reader thread and its writer share one
    # SSLSocket, which OpenSSL does not make safe, and TLS 1.3 has the server's
    # session tickets arrive while the upgrade request is being written. Twice in
    # full runs an upgrade here never got its answer. WSS over TLS 1.3 is what
    # stomp.py's WSConnection (below), Node's clients and the browser test use.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        return connect(
            f"wss://127.0.0.1:{broker.wss_port}{path}",
            ssl=context,
            **kw,
        )
    except TimeoutError:
        # Seen twice in full runs, never alone: say where every thread (the broker's
        # loop among them) was, so the next one can be explained.
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise


def _stomp_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "".join(f"{key}:{value}\n" for key, value in headers.items())
    return f"{command}\n{head}\n".encode() + body + b"\x00"


STOMP_CONNECT = _stomp_frame(
    "CONNECT", {"accept-version": "1.2", "host": "/", "login": USER, "passcode": PASSWORD}
)


def _recv_stomp(ws: ClientConnection, command: str) -> bytes:
    """Read messages until a STOMP frame starting with ``command`` arrives; its bytes."""
    buffer = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        data = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        buffer += data if isinstance(data, bytes) else data.encode()
        while b"\x00" in buffer:
            frame, _, buffer = buffer.partition(b"\x00")
            frame = frame.lstrip(b"\r\n")
            if frame.startswith(command.encode() + b"\n"):
                return frame
    raise AssertionError(f"no {command} frame arrived in time")


def _close_code(ws: ClientConnection) -> int | None:
    """The close code the broker sent, once the connection is closed (bounded wait)."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None, "the broker closed without a close frame"
    return int(ws.protocol.close_rcvd.code)


# ----------------------------------------------------------------- clients users use


@pytest.mark.parametrize("version", [4, 5])
def test_paho_over_wss_reaches_tcp_mqtt_and_back(wss: BrokerThread, version: int) -> None:
    web = PahoClient(wss.wss_port, wss.ca_file, version=version, websocket_path="/mqtt")
    tcp = PahoClient(wss.mqtt_port, wss.ca_file, version=version)
    try:
        assert web.connack is not None and web.connack.reason_code == 0
        assert web.subscribe("sensors/+/temp", 1) == [1]
        assert tcp.subscribe("commands/#", 1) == [1]
        assert tcp.publish("sensors/a/temp", b"21.5", 1) == 0
        got = web.get()
        assert (got.topic, got.payload, got.qos) == ("sensors/a/temp", b"21.5", 1)
        assert web.publish("commands/a", b"\x00\xffbinary", 1) == 0
        got = tcp.get()
        assert (got.topic, got.payload) == ("commands/a", b"\x00\xffbinary")
        web.disconnect()
    finally:
        web.close()
        tcp.close()


def test_paho_5_properties_and_retained_over_wss(wss: BrokerThread) -> None:
    from tests.support import paho_properties

    pub = PahoClient(wss.wss_port, wss.ca_file, version=5, websocket_path="/mqtt")
    props = paho_properties("PUBLISH", UserProperty=[("k", "v")], ContentType="text/plain")
    try:
        # Retained, and nobody subscribed yet: MQTT 5's 0x10 "no matching subscribers".
        assert pub.publish("state/door", b"open", 1, retain=True, properties=props) == 0x10
        sub = PahoClient(wss.wss_port, wss.ca_file, version=5, websocket_path="/mqtt")
        try:
            assert sub.subscribe("state/#", 1) == [1]
            got = sub.get()
            assert (got.topic, got.payload, got.retain) == ("state/door", b"open", True)
            assert got.properties.ContentType == "text/plain"
            assert got.properties.UserProperty == [("k", "v")]
        finally:
            sub.close()
    finally:
        pub.close()


def test_stomp_py_over_wss_to_tcp_mqtt_and_back(wss: BrokerThread) -> None:
    conn, web = _stomp_over_wss(wss)
    mqtt = PahoClient(wss.mqtt_port, wss.ca_file, version=4)
    try:
        assert mqtt.subscribe("orders/#", 1) == [1]
        conn.subscribe("/topic/replies.>", id="1", ack="auto", headers={"receipt": "s1"})
        conn.send("/topic/orders.new", "from the browser side", headers={"receipt": "r1"})
        got = mqtt.get()
        assert (got.topic, got.payload) == ("orders/new", b"from the browser side")
        assert mqtt.publish("replies/42", b"from mqtt", 1) == 0
        frame = web.get()
        assert frame.headers["destination"] == "/topic/replies.42"
        assert frame.body == "from mqtt"
        wait_until(lambda: {"s1", "r1"} <= set(web.receipts), what="receipts")
        conn.disconnect()
    finally:
        mqtt.close()
        if conn.is_connected():
            conn.disconnect()


def test_wss_mqtt_to_tcp_stomp_queue_and_persistent(wss: BrokerThread) -> None:
    web = PahoClient(wss.wss_port, wss.ca_file, version=4, websocket_path="/mqtt")
    conn, tcp = stomp_connect(wss.stomp_port, wss.ca_file)
    try:
        conn.subscribe("/topic/telemetry.>", id="1")
        # A subscription is in place once a receipt for a later frame arrives.
        conn.send("/queue/sync", "x", headers={"receipt": "sync"})
        deadline = time.monotonic() + TIMEOUT
        while "sync" not in tcp.receipts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert web.publish("telemetry/pump/1", b"on", 1) == 0
        frame = tcp.get()
        assert (frame.headers["destination"], frame.body) == ("/topic/telemetry.pump.1", "on")
    finally:
        web.close()
        conn.disconnect()


def test_stomp_from_wss_to_a_tcp_stomp_queue(wss: BrokerThread) -> None:
    conn, web = _stomp_over_wss(wss)
    tcp_conn, tcp = stomp_connect(wss.stomp_port, wss.ca_file)
    try:
        for n in range(3):
            conn.send("/queue/work", f"job {n}", headers={"persistent": "true", "receipt": f"j{n}"})
        tcp_conn.subscribe("/queue/work", id="w", ack="client-individual")
        frames = tcp.take(3)
        assert [f.body for f in frames] == ["job 0", "job 1", "job 2"]
        for frame in frames:
            tcp_conn.ack(frame.headers["message-id"], "w")
        wait_until(lambda: {"j0", "j1", "j2"} <= set(web.receipts), what="receipts")
    finally:
        conn.disconnect()
        tcp_conn.disconnect()


def _node(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    node = shutil.which("node")
    assert node is not None, "node is needed (apt-get install nodejs)"
    assert (NODE_MODULES / "mqtt").is_dir(), "run `make install-test`: it installs node_modules"
    return subprocess.Popen(
        [node, "-e", script],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


NODE_MQTT = """
const fs = require("fs");
const mqtt = require("mqtt");
const client = mqtt.connect(process.env.URL, {
  ca: fs.readFileSync(process.env.CA), username: process.env.USER_NAME,
  password: process.env.PASSWORD, protocolVersion: Number(process.env.VERSION),
  reconnectPeriod: 0, connectTimeout: 10000,
});
client.on("error", (err) => { console.log("error " + err.message); process.exit(2); });
client.on("connect", () => {
  client.subscribe("to/node", { qos: 1 }, (err) => {
    if (err) { console.log("error " + err.message); process.exit(2); }
    console.log("subscribed");
  });
});
client.on("message", (topic, payload) => {
  console.log("got " + topic + " " + payload.toString());
  client.publish("from/node", "hello from node", { qos: 1 }, () => client.end(false, () => {
    console.log("done"); process.exit(0);
  }));
});
setTimeout(() => { console.log("timeout"); process.exit(3); }, 20000);
"""


@pytest.mark.parametrize("version", [4, 5])
def test_node_mqtt_over_wss(wss: BrokerThread, version: int) -> None:
    tcp = PahoClient(wss.mqtt_port, wss.ca_file, version=version)
    proc = _node(
        NODE_MQTT,
        {
            "URL": f"wss://127.0.0.1:{wss.wss_port}/mqtt",
            "CA": str(wss.ca_file),
            "USER_NAME": USER,
            "PASSWORD": PASSWORD,
            "VERSION": str(version),
        },
    )
    try:
        assert tcp.subscribe("from/node", 1) == [1]
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "subscribed", line + proc.stderr.read() if proc.stderr else line
        assert tcp.publish("to/node", b"hello node", 1) == 0
        got = tcp.get()
        assert (got.topic, got.payload) == ("from/node", b"hello from node")
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, out + err
        assert "got to/node hello node" in out.splitlines()
    finally:
        tcp.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)


# ----------------------------------------------------------------- protocol choice


@pytest.mark.parametrize(
    ("path", "offered", "chosen"),
    [
        ("/", ["v12.stomp"], "v12.stomp"),
        ("/any/path", ["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),  # stomp.js offers
        ("/mqtt", ["stomp"], "stomp"),  # the subprotocol wins over the path
        ("/stomp", None, None),
    ],
)
def test_stomp_is_chosen_by_subprotocol_else_path(
    wss: BrokerThread, path: str, offered: list[str] | None, chosen: str | None
) -> None:
    with _ws(wss, path, subprotocols=offered) as ws:
        assert ws.subprotocol == chosen
        ws.send(STOMP_CONNECT)
        assert b"version:1.2" in _recv_stomp(ws, "CONNECTED")


def _mqtt_connect_bytes() -> tuple[MqttCodec, bytes]:
    codec = MqttCodec(server=False)
    codec.protocol_level = 4
    codec.send(MqttConnect(4, True, 60, "ws-raw", None, USER, PASSWORD.encode()))
    return codec, b"".join(codec.data_to_send())


@pytest.mark.parametrize(
    ("path", "offered", "chosen"),
    [("/", ["mqtt"], "mqtt"), ("/x", ["mqttv3.1"], "mqttv3.1"), ("/mqtt", None, None)],
)
def test_mqtt_is_chosen_by_subprotocol_else_path(
    wss: BrokerThread, path: str, offered: list[str] | None, chosen: str | None
) -> None:
    codec, connect_bytes = _mqtt_connect_bytes()
    with _ws(wss, path, subprotocols=offered) as ws:
        assert ws.subprotocol == chosen
        ws.send(connect_bytes)
        codec.receive_data(ws.recv(timeout=TIMEOUT))  # type: ignore[arg-type]
        (connack,) = codec.events_received()
        assert isinstance(connack, MqttConnack) and connack.reason_code == 0


def test_mqtt_packets_split_across_and_sharing_messages(wss: BrokerThread) -> None:
    codec, connect_bytes = _mqtt_connect_bytes()
    codec.send(Subscribe(1, (Subscription("split/t"),)))
    subscribe_bytes = b"".join(codec.data_to_send())
    with _ws(wss, "/mqtt") as ws:
        # CONNECT in three messages, then SUBSCRIBE and PUBLISH in one.
        ws.send(connect_bytes[:3])
        ws.send(connect_bytes[3:7])
        ws.send(connect_bytes[7:])
        codec.send(Publish("split/t", b"whole"))
        ws.send(subscribe_bytes + b"".join(codec.data_to_send()))
        got: list[object] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 3 and time.monotonic() < deadline:
            codec.receive_data(ws.recv(timeout=TIMEOUT))  # type: ignore[arg-type]
            got += codec.events_received()
        assert [type(p) for p in got] == [MqttConnack, Suback, Publish]
        assert isinstance(got[2], Publish) and got[2].payload == b"whole"


def test_stomp_frames_span_and_share_messages_text_or_binary(wss: BrokerThread) -> None:
    conn, tcp = stomp_connect(wss.stomp_port, wss.ca_file)
    try:
        conn.subscribe("/queue/spans", id="1")
        with _ws(wss, "/stomp") as ws:
            ws.send(STOMP_CONNECT.decode())  # a text message, as stomp.js sends
            _recv_stomp(ws, "CONNECTED")
            one = _stomp_frame("SEND", {"destination": "/queue/spans"}, b"first")
            two = _stomp_frame("SEND", {"destination": "/queue/spans"}, b"second")
            three = _stomp_frame("SEND", {"destination": "/queue/spans", "receipt": "r"}, b"3rd")
            ws.send(one[:5])  # one frame over two messages, one text, one binary
            ws.send(one[5:].decode())
            ws.send([two[:9], two[9:] + three[:4], three[4:]])  # one fragmented message
            assert b"receipt-id:r" in _recv_stomp(ws, "RECEIPT")
        assert [f.body for f in tcp.take(3)] == ["first", "second", "3rd"]
    finally:
        conn.disconnect()


def test_compression_is_off_by_default(wss: BrokerThread) -> None:
    with _ws(wss, "/stomp") as ws:  # the websockets client offers permessage-deflate
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


def test_compression_when_configured(tmp_path: Path) -> None:
    settings = wss_settings(tmp_path / "data", websocket=WebSocketSettings(permessage_deflate=True))
    broker = BrokerThread(settings).start()
    try:
        with _ws(broker, "/stomp") as ws:
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            body = b"compressible " * 1000
            ws.send(_stomp_frame("SEND", {"destination": "/queue/z", "receipt": "z"}, body))
            _recv_stomp(ws, "RECEIPT")
            ws.send(_stomp_frame("SUBSCRIBE", {"destination": "/queue/z", "id": "1"}))
            assert _recv_stomp(ws, "MESSAGE").endswith(b"\n\n" + body)
    finally:
        broker.stop()


# ----------------------------------------------------------------- refused upgrades


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _upgrade(
    path: str = "/stomp",
    *,
    key: str | None = KEY,
    version: str = "13",
    protocols: str | None = None,
    origin: str | None = None,
    extra: str = "",
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _http(broker: BrokerThread, request: bytes) -> tuple[int, str, bool]:
    """Send raw bytes over TLS; the status, the whole response, whether the broker closed."""
    raw = socket.create_connection(("127.0.0.1", broker.wss_port), timeout=TIMEOUT)
    with tls_client_context(broker.ca_file).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(request)
        data, closed = b"", False
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ssl.SSLError, ConnectionResetError):
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
                break
    text = data.decode(errors="replace")
    assert text.startswith("HTTP/1.1 "), f"not an HTTP response: {text!r}"
    return int(text.split()[1]), text, closed


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, "You need a WebSocket client"),
        (b"\x16\x03\x01garbage that is not HTTP\r\n\r\n", 400, "valid HTTP request"),
        (_upgrade(key="not a key"), 400, "Sec-WebSocket-Key"),
        (_upgrade(key=None), 400, "Sec-WebSocket-Key"),
        (_upgrade(version="8"), 426, "this server speaks version 13"),
        (_upgrade("/", protocols="amqp"), 400, "unsupported subprotocol amqp"),
        (_upgrade("/", protocols="v13.stomp, chat"), 400, "this endpoint speaks mqtt"),
        (_upgrade("/chat"), 400, "or connect to /mqtt or /stomp"),
        (_upgrade("/" + "p" * 9000), 414, "no more than 8192 bytes"),
        (_upgrade(extra="X-Big: " + "a" * 40000 + "\r\n"), 431, "no more than 8192 bytes"),
        (
            _upgrade(extra="".join(f"X-{n}: 1\r\n" for n in range(130))),
            431,
            "no more than 128 headers",
        ),
        (_upgrade().replace(b"GET ", b"PUT ", 1), 405, "PUT"),
        (_upgrade().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 505, "HTTP/1.0"),
        (_upgrade(extra="".join(f"X-{n}: {'b' * 4000}\r\n" for n in range(9))), 431, "larger"),
    ],
    ids=[
        "plain-get",
        "not-http",
        "bad-key",
        "no-key",
        "bad-version",
        "unknown-subprotocol",
        "unknown-subprotocols",
        "no-subprotocol-unknown-path",
        "request-line-too-long",
        "header-line-too-long",
        "too-many-headers",
        "not-get",
        "not-http-1.1",
        "request-too-large",
    ],
)
def test_refused_upgrades_get_a_status_and_a_reason(
    wss: BrokerThread, request_bytes: bytes, status: int, says: str
) -> None:
    got, text, closed = _http(wss, request_bytes)
    assert got == status, text
    assert says in text, text
    assert closed, "the broker closes after refusing"
    if status == 426 and "version" in says:
        assert "Sec-WebSocket-Version: 13" in text
    # Nothing else disturbed: a good client still connects.
    with _ws(wss, "/stomp") as ws:
        ws.send(STOMP_CONNECT)
        _recv_stomp(ws, "CONNECTED")


def test_origin_allow_list(tmp_path: Path) -> None:
    allowed = "https://app.example.com"
    settings = wss_settings(
        tmp_path / "data", websocket=WebSocketSettings(allowed_origins=(allowed,))
    )
    broker = BrokerThread(settings).start()
    try:
        status, text, closed = _http(broker, _upgrade(origin="https://evil.example"))
        assert (status, closed) == (403, True), text
        assert "Origin" in text or "origin" in text
        with _ws(broker, "/stomp", origin=allowed) as ws:  # type: ignore[arg-type]
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
        with _ws(broker, "/stomp") as ws:  # no Origin: not a browser
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
        with pytest.raises(InvalidStatus) as refused:
            _ws(broker, "/stomp", origin="https://app.example.com.evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
    finally:
        broker.stop()


@pytest.mark.slow
def test_a_client_that_never_completes_the_upgrade_gets_408(tmp_path: Path) -> None:
    settings = wss_settings(tmp_path / "data", websocket=WebSocketSettings(handshake_timeout=0.5))
    broker = BrokerThread(settings).start()
    try:
        started = time.monotonic()
        status, text, closed = _http(broker, b"GET /stomp HTTP/1.1\r\nHost: 127")
        assert (status, closed) == (408, True), text
        assert "did not arrive within 0.5 seconds" in text
        assert time.monotonic() - started < TIMEOUT / 2
        with _ws(broker, "/stomp") as ws:  # connects after 0.5 s too: the clock starts at accept
            time.sleep(0.7)
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
    finally:
        broker.stop()


# ----------------------------------------------------------------- close codes


@pytest.mark.slow
def test_an_oversized_message_closes_with_1009_and_nothing_else(tmp_path: Path) -> None:
    settings = wss_settings(
        tmp_path / "data",
        websocket=WebSocketSettings(max_message_size=4096),
        limits=LimitSettings(max_frame_body=1024),
    )
    broker = BrokerThread(settings).start()
    try:
        with _ws(broker, "/stomp") as ws:  # the STOMP limits of [limits] hold over WebSocket
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            ws.send(_stomp_frame("SEND", {"destination": "/queue/big"}, b"x" * 2000))
            assert b"message:" in _recv_stomp(ws, "ERROR")
            assert _close_code(ws) == 1000
        conn, other = _stomp_over_wss(broker)
        conn.subscribe("/queue/big", id="1")
        with _ws(broker, "/stomp") as ws:
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            ws.send(_stomp_frame("SEND", {"destination": "/queue/big"}, b"x" * 5000))
            assert _close_code(ws) == 1009
        with _ws(broker, "/stomp") as ws:  # fragments count together
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            # The first fragments stay under the STOMP body limit, so that only the
            # WebSocket message limit (on the last fragment's header) can close it.
            ws.send([b"SEND\ndestination:/queue/big\n\n", b"y" * 500, b"y" * 4000 + b"\x00"])
            assert _close_code(ws) == 1009
        conn.send("/queue/big", "small", headers={"receipt": "ok"})
        assert other.get().body == "small"
        assert other.nothing_more()
        conn.disconnect()
    finally:
        broker.stop()


def test_a_close_in_the_middle_of_a_stomp_frame(wss: BrokerThread) -> None:
    conn, tcp = stomp_connect(wss.stomp_port, wss.ca_file)
    try:
        conn.subscribe("/queue/halves", id="1")
        with _ws(wss, "/stomp") as ws:
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            ws.send(b"SEND\ndestination:/queue/halves\ncontent-length:10\n\nhal")
            ws.close(1000, "bye")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
        with _ws(wss, "/stomp") as again:
            again.send(STOMP_CONNECT)
            _recv_stomp(again, "CONNECTED")
            again.send(_stomp_frame("SEND", {"destination": "/queue/halves"}, b"whole"))
        assert tcp.get().body == "whole"
        assert tcp.nothing_more(), "the half frame was never delivered"
    finally:
        conn.disconnect()


def test_a_stomp_error_closes_normally_after_the_error_frame(wss: BrokerThread) -> None:
    with _ws(wss, "/stomp") as ws:
        ws.send(_stomp_frame("SEND", {"destination": "/queue/x"}, b"before connect"))
        assert b"message:" in _recv_stomp(ws, "ERROR")
        assert _close_code(ws) == 1000


def test_bad_credentials_over_wss(wss: BrokerThread) -> None:
    with _ws(wss, "/stomp") as ws:
        bad = _stomp_frame(
            "CONNECT", {"accept-version": "1.2", "host": "/", "login": USER, "passcode": "no"}
        )
        ws.send(bad)
        assert b"message:Authentication failed" in _recv_stomp(ws, "ERROR")
        # The broker reads the answer to its close frame (it once waited for
        # CLOSE_TIMEOUT, having paused reading during the login check).
        started = time.monotonic()
        assert _close_code(ws) == 1000
        ws.close()
        assert time.monotonic() - started < CLOSE_TIMEOUT
    web = PahoClient(wss.wss_port, wss.ca_file, version=5, websocket_path="/mqtt", password="no")
    try:
        assert web.connack is not None and web.connack.reason_code == 0x86
    finally:
        web.close()


def _client_frame(first: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One client frame by hand (RFC 6455 5.2), for what no client library sends."""
    assert len(payload) < 126
    if not masked:
        return bytes([first, len(payload)]) + payload
    mask = b"\x01\x02\x03\x04"
    return (
        bytes([first, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def _raw_exchange(broker: BrokerThread, frames: bytes) -> bytes:
    """Upgrade on /stomp, send ``frames``, return every byte until the broker closes."""
    raw = socket.create_connection(("127.0.0.1", broker.wss_port), timeout=TIMEOUT)
    with tls_client_context(broker.ca_file).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(_upgrade("/stomp"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(frames)
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk


def _close_frame(code: int, reason: bytes = b"") -> bytes:
    return _client_frame(0x88, code.to_bytes(2, "big") + reason)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (_client_frame(0x82, b"hello", masked=False), 1002),  # clients must mask (5.1)
        (_client_frame(0xC2, b"hello"), 1002),  # RSV1 without an extension
        (_client_frame(0x83, b"hello"), 1002),  # a reserved opcode
        (_client_frame(0x80, b"hello"), 1002),  # a continuation of nothing
        (_client_frame(0x02, b"he") + _client_frame(0x82, b"llo"), 1002),  # unfinished message
        (_client_frame(0x09, b"ping"), 1002),  # a fragmented control frame
        (_close_frame(999), 1002),  # not a close code
        (_close_frame(1000, b"\xff\xfe"), 1007),  # a reason that is not UTF-8
        (_close_frame(4001, b"app says bye"), 4001),  # echoed
    ],
    ids=[
        "unmasked",
        "rsv1",
        "reserved-opcode",
        "stray-continuation",
        "interleaved-message",
        "fragmented-ping",
        "bad-close-code",
        "bad-close-reason",
        "application-close",
    ],
)
def test_websocket_protocol_errors_get_their_close_code(
    wss: BrokerThread, frames: bytes, code: int
) -> None:
    data = _raw_exchange(wss, frames)
    assert data[:1] == b"\x88", data  # a close frame, then the broker closes
    assert int.from_bytes(data[2:4], "big") == code
    with _ws(wss, "/stomp") as ws:  # nothing else disturbed
        ws.send(STOMP_CONNECT)
        _recv_stomp(ws, "CONNECTED")


def test_pings_are_answered_with_pongs(wss: BrokerThread) -> None:
    data = _raw_exchange(wss, _client_frame(0x89, b"are you there") + _close_frame(1000))
    pong = b"\x8a" + bytes([len(b"are you there")]) + b"are you there"
    assert data.startswith(pong), data
    assert data[len(pong) : len(pong) + 4] == b"\x88\x02\x03\xe8"  # then the close, 1000


def test_broker_shutdown_tells_clients_and_closes_with_1001(tmp_path: Path) -> None:
    broker = BrokerThread(wss_settings(tmp_path / "data")).start()
    try:
        with _ws(broker, "/stomp") as ws:
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
            broker.stop()
            assert b"shutting down" in _recv_stomp(ws, "ERROR")
            assert _close_code(ws) == 1001
    finally:
        broker.stop()


def test_the_endpoint_is_named_by_its_url(wss: BrokerThread) -> None:
    assert wss.running is not None
    assert wss.running.endpoints["wss"].url == f"wss://127.0.0.1:{wss.wss_port}"


def test_plain_ws_only_when_configured_under_listeners_plain(tmp_path: Path) -> None:
    from sealmq.config import Listener

    settings = wss_settings(tmp_path / "data", listeners=(Listener("wss", 0, tls=False),))
    broker = BrokerThread(settings).start()
    try:
        assert broker.running is not None
        port = broker.running.port("wss", tls=False)
        assert broker.running.endpoints["wss+plain"].url == f"ws://127.0.0.1:{port}"
        with pytest.raises(KeyError):
            broker.running.port("wss")
        with connect(f"ws://127.0.0.1:{port}/stomp", open_timeout=TIMEOUT) as ws:
            ws.send(STOMP_CONNECT)
            _recv_stomp(ws, "CONNECTED")
    finally:
        broker.stop()


@pytest.mark.slow
def test_sealmq_serve_names_and_serves_the_wss_endpoint(processes: ProcessBrokers) -> None:
    broker = processes.new(mqtt=True)
    port = free_port()
    broker.config.write_text(broker.config.read_text().replace("wss = false", f"wss = {port}"))
    broker.start()
    assert f"wss://127.0.0.1:{port}" in broker.run_output().split("ready: ", 1)[1].splitlines()[0]
    web = PahoClient(port, broker.ca_file, version=5, websocket_path="/mqtt")
    tcp = PahoClient(broker.mqtt_port, broker.ca_file, version=5)
    try:
        assert web.subscribe("proc/t", 1) == [1]
        assert tcp.publish("proc/t", b"through the process", 1) == 0
        assert web.get().payload == b"through the process"
    finally:
        web.close()
        tcp.close()
    assert broker.stop() == 0


def test_an_upgrade_under_way_when_the_broker_stops_gets_503(tmp_path: Path) -> None:
    broker = BrokerThread(wss_settings(tmp_path / "data")).start()
    try:
        raw = socket.create_connection(("127.0.0.1", broker.wss_port), timeout=TIMEOUT)
        context = tls_client_context(broker.ca_file)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /stomp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # not finished
            running = broker.running
            assert running is not None
            wait_until(
                lambda: broker.call(lambda: len(running.listeners.websockets)) == 1,
                what="the broker to accept the connection",
            )
            broker.stop()
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    finally:
        broker.stop()
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert b"shutting down" in data
