"""The TCP listeners' time and flow limits hold over WebSocket too.

A logged-in client that sends part of a frame, whether part of a WebSocket frame or part
of a STOMP frame spread over WebSocket messages, is cut after ``frame_read_timeout``;
a subscriber that stops reading is paused at ``write_buffer_high_water`` and, with the
``abort`` strategy, closed after ``max_slow_duration_ms``, while everyone else goes on.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from sealmq.config import LimitSettings, PolicySettings
from tests.integration.test_websocket import (
    STOMP_CONNECT,
    _client_frame,
    _recv_stomp,
    _upgrade,
    _ws,
)
from tests.support import (
    TIMEOUT,
    BrokerThread,
    stomp_connect,
    tls_client_context,
    wait_until,
    wss_settings,
)

#: ``frame_read_timeout`` of this module's broker.
DEADLINE = 0.5
BODY = b"x" * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    settings = wss_settings(
        tmp_path_factory.mktemp("wss-limits") / "data",
        limits=LimitSettings(frame_read_timeout=DEADLINE),
        policy=PolicySettings(
            slow_consumer_strategy="abort",
            max_slow_duration_ms=500,
            write_buffer_high_water=64 * 1024,
        ),
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


def _websockets(broker: BrokerThread) -> int:
    assert broker.running is not None
    listeners = broker.running.listeners
    return int(broker.call(lambda: len(listeners.websockets)))


def test_a_stomp_frame_half_sent_over_websocket_messages_is_cut(limited: BrokerThread) -> None:
    with _ws(limited, "/stomp") as ws:
        ws.send(STOMP_CONNECT)
        _recv_stomp(ws, "CONNECTED")
        started = time.monotonic()
        ws.send(b"SEND\ndestination:/queue/ws-half\n\nhal")  # whole message, half a frame
        error = _recv_stomp(ws, "ERROR")
        waited = time.monotonic() - started
    assert f"Frame not completed within {DEADLINE:g} s".encode() in error
    assert DEADLINE * 0.9 <= waited < TIMEOUT


def test_a_websocket_frame_half_sent_is_cut(limited: BrokerThread) -> None:
    raw = socket.create_connection(("127.0.0.1", limited.wss_port), timeout=TIMEOUT)
    with tls_client_context(limited.ca_file).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(_upgrade("/stomp"))
        data = b""
        while b"CONNECTED" not in data:
            if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 101 "):
                raise AssertionError(data)
            if data.endswith(b"\r\n\r\n"):
                sock.sendall(_client_frame(0x82, STOMP_CONNECT))
            chunk = sock.recv(4096)
            assert chunk, "closed before CONNECTED"
            data += chunk
        started = time.monotonic()
        sock.sendall(b"\x82\xfe\x01")  # a binary frame's header, cut in its length
        rest = b""
        while b"Frame not completed" not in rest:
            chunk = sock.recv(4096)
            assert chunk, f"closed without an ERROR frame: {rest!r}"
            rest += chunk
        waited = time.monotonic() - started
    assert b"Frame not completed within" in rest
    assert DEADLINE * 0.9 <= waited < TIMEOUT


def test_whole_frames_over_websocket_are_not_timed(limited: BrokerThread) -> None:
    with _ws(limited, "/stomp") as ws:
        ws.send(STOMP_CONNECT)
        _recv_stomp(ws, "CONNECTED")
        ws.send(b"SEND\ndestination:/queue/ws-whole\nreceipt:r0\n\nbody\x00")
        assert b"receipt-id:r0" in _recv_stomp(ws, "RECEIPT")
        # Idle for longer than the deadline, between whole frames: nothing is timed.
        time.sleep(DEADLINE * 2)
        ws.send(b"SEND\ndestination:/queue/ws-whole\nreceipt:r1\n\nbody\x00")
        assert b"receipt-id:r1" in _recv_stomp(ws, "RECEIPT")


class _StuckWebSocket:
    """A STOMP-over-WebSocket subscriber that stops reading once subscribed."""

    def __init__(self, broker: BrokerThread, destination: str) -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", broker.wss_port))
        self.sock = tls_client_context(broker.ca_file).wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.sendall(_upgrade("/stomp"))
        self._read_until(b"\r\n\r\n")
        self.sock.sendall(_client_frame(0x82, STOMP_CONNECT))
        self._read_until(b"CONNECTED")
        subscribe = f"SUBSCRIBE\nid:stuck\ndestination:{destination}\nreceipt:s\n\n\x00"
        self.sock.sendall(_client_frame(0x82, subscribe.encode()))
        self._read_until(b"RECEIPT")

    def _read_until(self, marker: bytes) -> None:
        data = b""
        while marker not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed before {marker!r}"
            data += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_a_stuck_websocket_subscriber_is_aborted_and_the_rest_go_on(
    limited: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sealmq.net")
    healthy_conn, healthy = stomp_connect(limited.stomp_port, limited.ca_file)
    healthy_conn.subscribe("/topic/ws-flood", id="healthy", ack="auto")
    producer, _ = stomp_connect(limited.stomp_port, limited.ca_file)
    before = _websockets(limited)
    stuck = _StuckWebSocket(limited, "/topic/ws-flood")
    try:
        wait_until(lambda: _websockets(limited) == before + 1, what="the stuck client served")
        sent = 0
        while _websockets(limited) > before and sent < 20_000:
            for _ in range(500):
                producer.send("/topic/ws-flood", BODY, headers={"n": str(sent)})
                sent += 1
            wait_until(
                lambda count=sent: healthy.messages.qsize() >= count, what=f"{sent} delivered"
            )
        wait_until(lambda: _websockets(limited) == before, what="the stuck client cut")
        assert any("slow consumer" in r.getMessage() for r in caplog.records)
        producer.send("/topic/ws-flood", b"after", headers={"n": "last"})
        wait_until(lambda: healthy.messages.qsize() >= sent + 1, what="the last message")
    finally:
        stuck.close()
        healthy_conn.disconnect()
        producer.disconnect()
