"""Raw bytes at the broker's STOMP port: every bad input gets an ERROR naming the problem.

Each malformed frame is sent over a raw TLS socket trusting the broker's CA; the answer
must be an ``ERROR`` frame whose ``message`` header names the problem, then the broker
closes the connection (``docs/stomp.md``, Errors) when the framing is lost or the client
is not logged in; a well-formed request it refuses gets the ERROR and the connection goes
on, as in ActiveMQ. After each, a well-behaved stomp.py client must still be served.
Then slow, silent, non-TLS and garbage peers, and memory staying bounded under them (as
mosquitto's ``01-bad-initial-packets``).
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealmq.config import LimitSettings
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerProcess,
    BrokerThread,
    ProcessBrokers,
    make_settings,
    stomp_connect,
    tls_client_context,
    wait_until,
)

#: Small limits so that oversize input is cheap to produce.
MAX_BODY = 1024
MAX_HEADERS = 2048


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    """One broker for the whole module: each case also checks it is unaffected by the others."""
    limits = LimitSettings(max_frame_body=MAX_BODY, max_frame_headers=MAX_HEADERS)
    data_dir = tmp_path_factory.mktemp("blackbox") / "data"
    thread = BrokerThread(make_settings(data_dir, limits=limits)).start()
    yield thread
    thread.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


def frame(command: str, *headers: str, body: bytes = b"") -> bytes:
    return "\n".join((command, *headers, "", "")).encode() + body + b"\0"


def connect_frame(*headers: str) -> bytes:
    return frame("CONNECT", "accept-version:1.2", "host:localhost", *headers)


CONNECT = connect_frame(f"login:{USER}", f"passcode:{PASSWORD}")


@dataclass
class Frame:
    command: str
    headers: dict[str, str]
    body: bytes


def _unescape(text: str) -> str:
    escapes = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}
    out, chars = [], iter(text)
    for char in chars:
        out.append(escapes.get(next(chars, ""), "?") if char == "\\" else char)
    return "".join(out)


def parse(data: bytes) -> list[Frame]:
    """The frames a server sent (heart-beats skipped; header escapes undone)."""
    frames = []
    data = data.lstrip(b"\r\n")
    while data:
        head, sep, rest = data.partition(b"\n\n")
        assert sep, f"incomplete frame: {data[:200]!r}"
        command, *lines = head.decode().split("\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(_unescape(name), _unescape(value))
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, data = rest[:length], rest[length + 1 :]
        else:
            body, _, data = rest.partition(b"\0")
        frames.append(Frame(command, headers, body))
        data = data.lstrip(b"\r\n")
    return frames


class Raw:
    """A raw client socket at the broker: TLS trusting its CA, or plain TCP."""

    def __init__(self, port: int, ca_file: Path, *, tls: bool = True) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            sock = tls_client_context(ca_file).wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self, *, reset_ok: bool = False) -> bytes:
        """Everything the broker sends until it closes; fails if it stays open past TIMEOUT.

        A reset (which can destroy the ERROR frame in flight) fails too, unless ``reset_ok``.
        """
        deadline = time.monotonic() + TIMEOUT
        chunks = []
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"connection still open; got {b''.join(chunks)!r}") from None
            except (ConnectionResetError, ssl.SSLError):
                if not reset_ok:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def read_frame(self) -> bytes:
        """Bytes up to and including the first NUL (one whole frame from the broker)."""
        data = b""
        while b"\0" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed before a whole frame: {data!r}"
            data += chunk
        return data

    def still_open(self, wait: float = 0.05) -> bool:
        """True if the broker neither sent anything nor closed within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b"never"  # any data or EOF: not idle-open
        except TimeoutError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


def assert_serves(port: int, ca_file: Path) -> None:
    """A well-behaved client can still log in, subscribe, send and receive."""
    conn, got = stomp_connect(port, ca_file)
    queue = f"/queue/health-{time.monotonic_ns()}"
    conn.subscribe(queue, id="h", ack="auto", headers={"receipt": "sub"})
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    conn.send(queue, "still here")
    assert got.get().body == "still here"
    conn.disconnect()


def refused(broker: BrokerThread, data: bytes, *, login: bool = False) -> list[Frame]:
    """Send ``data`` (after logging in and reading CONNECTED if ``login``); the frames back."""
    raw = Raw(broker.stomp_port, broker.ca_file)
    try:
        answer = b""
        if login:
            raw.send(CONNECT)
            answer = raw.read_frame()
        raw.send(data)
        return parse(answer + raw.read_until_closed())
    finally:
        raw.close()


_SEND = "SEND\ndestination:/queue/bad\n"

# (name, bytes sent, words the ERROR message must contain)
BEFORE_CONNECT = [
    ("garbage first packet", bytes(range(0x80, 0xC0)), "unknown command"),
    ("HTTP request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "unknown command"),
    ("frame before CONNECT", frame("SEND", "destination:/queue/a", body=b"hi"), "before CONNECT"),
    ("unknown command", frame("FLY"), "unknown command"),
    ("header line without colon", connect_frame("no-colon-here"), "without ':'"),
    ("wrong password", connect_frame(f"login:{USER}", "passcode:wrong"), "Authentication failed"),
    ("missing login", connect_frame(), "Authentication failed"),
    ("unknown user", connect_frame("login:nobody", "passcode:x"), "Authentication failed"),
    ("server command from a client", frame("MESSAGE"), "not allowed"),
    ("headers over the limit", connect_frame("x-pad:" + "a" * MAX_HEADERS), "headers exceed"),
]
AFTER_CONNECT = [
    ("unknown command", frame("FLY"), "unknown command"),
    ("header line without colon", _SEND.encode() + b"no-colon\n\nx\0", "without ':'"),
    ("bad 1.2 escape", _SEND.encode() + b"x-h:bad\\tescape\n\nx\0", "escape"),
    (
        "content-length not a number",
        _SEND.encode() + b"content-length:abc\n\nx\0",
        "content-length",
    ),
    ("content-length negative", _SEND.encode() + b"content-length:-1\n\nx\0", "content-length"),
    (
        "content-length over the limit",  # refused on the headers alone; no body sent
        _SEND.encode() + f"content-length:{MAX_BODY + 1}\n\n".encode(),
        f"exceeds {MAX_BODY}",
    ),
    (
        "body over the limit without content-length",
        _SEND.encode() + b"\n" + b"b" * (MAX_BODY + 8),
        f"exceeds {MAX_BODY}",
    ),
    ("content-length too small", _SEND.encode() + b"content-length:2\n\nabcdef\0", "NUL"),
    (
        "headers over the limit",
        _SEND.encode() + b"x-pad:" + b"a" * MAX_HEADERS + b"\n\n\0",
        "headers exceed",
    ),
]
# Well-formed requests the broker refuses: an ERROR, and the connection goes on.
REFUSED_AFTER_CONNECT = [
    ("ACK for an unknown id", frame("ACK", "id:7:ID:nowhere-1"), "not awaiting acknowledgement"),
    ("NACK for an unknown id", frame("NACK", "id:7:ID:nowhere-1"), "not awaiting acknowledgement"),
    ("ACK without an id", frame("ACK"), "needs an id"),
    ("SUBSCRIBE without id", frame("SUBSCRIBE", "destination:/queue/a"), "needs an id"),
    ("SEND without destination", frame("SEND", body=b"x"), "needs a destination"),
    ("COMMIT of no transaction", frame("COMMIT", "transaction:tx-9"), "tx-9"),
    ("second CONNECT", CONNECT, "already connected"),
]


@pytest.mark.parametrize(
    ("name", "data", "words"), BEFORE_CONNECT, ids=[c[0] for c in BEFORE_CONNECT]
)
def test_bad_input_before_login_gets_error_then_close(
    broker: BrokerThread, name: str, data: bytes, words: str
) -> None:
    frames = refused(broker, data)
    assert [f.command for f in frames] == ["ERROR"], name
    assert words in frames[0].headers["message"]
    assert_serves(broker.stomp_port, broker.ca_file)


@pytest.mark.parametrize(
    ("name", "data", "words"), AFTER_CONNECT, ids=[c[0] for c in AFTER_CONNECT]
)
def test_bad_frame_after_login_gets_error_then_close(
    broker: BrokerThread, name: str, data: bytes, words: str
) -> None:
    frames = refused(broker, data, login=True)
    assert [f.command for f in frames] == ["CONNECTED", "ERROR"], name
    assert frames[0].headers["version"] == "1.2"
    assert words in frames[1].headers["message"]
    assert_serves(broker.stomp_port, broker.ca_file)


@pytest.mark.parametrize(
    ("name", "data", "words"), REFUSED_AFTER_CONNECT, ids=[c[0] for c in REFUSED_AFTER_CONNECT]
)
def test_refused_request_after_login_gets_error_and_the_connection_goes_on(
    broker: BrokerThread, name: str, data: bytes, words: str
) -> None:
    raw = Raw(broker.stomp_port, broker.ca_file)
    try:
        raw.send(CONNECT)
        connected = parse(raw.read_frame())
        raw.send(data)
        error = parse(raw.read_frame())
        raw.send(frame("SEND", "destination:/queue/after", "receipt:r-after", body=b"x"))
        after = parse(raw.read_frame())
    finally:
        raw.close()
    assert [f.command for f in connected + error] == ["CONNECTED", "ERROR"], name
    assert words in error[0].headers["message"]
    assert [(f.command, f.headers["receipt-id"]) for f in after] == [("RECEIPT", "r-after")]
    assert_serves(broker.stomp_port, broker.ca_file)


def test_unsupported_version_gets_error_with_the_supported_versions(broker: BrokerThread) -> None:
    frames = refused(broker, frame("CONNECT", "accept-version:2.0,3.1", f"login:{USER}"))
    assert [f.command for f in frames] == ["ERROR"]
    assert set(frames[0].headers["version"].split(",")) == {"1.0", "1.1", "1.2"}
    assert "version" in frames[0].headers["message"]
    assert_serves(broker.stomp_port, broker.ca_file)


def test_error_frame_carries_the_receipt_of_the_refused_frame(broker: BrokerThread) -> None:
    raw = Raw(broker.stomp_port, broker.ca_file)
    try:
        raw.send(CONNECT)
        raw.read_frame()
        raw.send(frame("SEND", "receipt:r-77", body=b"x"))
        frames = parse(raw.read_frame())
    finally:
        raw.close()
    assert frames[-1].command == "ERROR"
    assert frames[-1].headers["receipt-id"] == "r-77"


def test_silent_peers_do_not_block_anyone(broker: BrokerThread) -> None:
    silent_tls = [Raw(broker.stomp_port, broker.ca_file) for _ in range(20)]
    silent_tcp = [Raw(broker.stomp_port, broker.ca_file, tls=False) for _ in range(5)]
    try:
        assert_serves(broker.stomp_port, broker.ca_file)
        assert all(raw.still_open() for raw in silent_tls)
        assert_serves(broker.stomp_port, broker.ca_file)
    finally:
        for raw in silent_tls + silent_tcp:
            raw.close()
    assert_serves(broker.stomp_port, broker.ca_file)


def test_headers_dripped_one_byte_at_a_time_are_refused_at_the_limit(broker: BrokerThread) -> None:
    raw = Raw(broker.stomp_port, broker.ca_file)
    head = b"CONNECT\naccept-version:1.2\nx-pad:"
    below_limit = head + b"a" * (MAX_HEADERS - 1 - len(head))
    try:
        for byte in below_limit:
            raw.send(bytes([byte]))  # one TLS record per byte
        assert raw.still_open(wait=0.2), "refused below the limit"
        raw.send(b"a")  # the header block now reaches the limit without its blank line
        frames = parse(raw.read_until_closed())
    finally:
        raw.close()
    assert [f.command for f in frames] == ["ERROR"]
    assert f"headers exceed {MAX_HEADERS}" in frames[0].headers["message"]
    assert_serves(broker.stomp_port, broker.ca_file)


def test_plain_tcp_to_the_tls_port_fails_the_handshake(broker: BrokerThread) -> None:
    raw = Raw(broker.stomp_port, broker.ca_file, tls=False)
    try:
        raw.send(CONNECT)
        answer = raw.read_until_closed(reset_ok=True)
    finally:
        raw.close()
    assert b"CONNECTED" not in answer
    assert_serves(broker.stomp_port, broker.ca_file)


def _abuse(broker: BrokerProcess, kind: int, rng: random.Random) -> Raw:
    """Open one abusive connection; ``kind`` picks the abuse."""
    if kind == 0:  # TLS, then garbage
        raw = Raw(broker.stomp_port, broker.ca_file)
        raw.send(rng.randbytes(4096))
    elif kind == 1:  # garbage where the TLS handshake should be
        raw = Raw(broker.stomp_port, broker.ca_file, tls=False)
        raw.send(rng.randbytes(4096))
    elif kind == 2:  # logged in, a body just under the limit that never ends
        raw = Raw(broker.stomp_port, broker.ca_file)
        raw.send(CONNECT)
        assert raw.read_frame().startswith(b"CONNECTED")
        raw.send(_SEND.encode() + b"\n" + b"b" * 60_000)
    else:  # a header block just under the limit that never ends
        raw = Raw(broker.stomp_port, broker.ca_file)
        raw.send(b"CONNECT\nx-pad:" + b"a" * 3_900)
    return raw


@pytest.mark.slow
def test_memory_stays_bounded_under_garbage_connections(processes: ProcessBrokers) -> None:
    broker = processes.new(
        sections="[limits]\nmax_frame_body = 65536\nmax_frame_headers = 4096\n"
    ).start()
    assert_serves(broker.stomp_port, broker.ca_file)
    rng = random.Random(1)
    conns = [_abuse(broker, i % 4, rng) for i in range(50)]
    try:
        refused_ones = [raw for i, raw in enumerate(conns) if i % 4 < 2]
        for raw in refused_ones:
            raw.read_until_closed(reset_ok=True)  # unread garbage may make the close a reset
        held = [raw for i, raw in enumerate(conns) if i % 4 >= 2]
        assert all(raw.still_open() for raw in held)
        assert broker.rss_bytes() < 200 * 1024 * 1024
        assert_serves(broker.stomp_port, broker.ca_file)
    finally:
        for raw in conns:
            raw.close()
    assert_serves(broker.stomp_port, broker.ca_file)
    assert broker.rss_bytes() < 200 * 1024 * 1024
    assert broker.proc is not None and broker.proc.poll() is None
    assert "session failed" not in broker.output()  # no input reached a bug
    assert broker.stop() == 0
