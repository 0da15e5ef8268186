"""The HTTPS server: keep-alive, bounded requests, malformed HTTP, a prompt close."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from sealmq.kms.server import MAX_BODY_BYTES, MAX_HEAD_BYTES, KmsServer
from sealmq.kms.wire import WireHandler
from tests.kms.support import TIMEOUT, Kms, serve, sign, stop


def _tls(kms: Kms) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", kms.port), timeout=TIMEOUT)
    return kms.certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _request(headers: dict[str, str], body: bytes, *, port: int) -> bytes:
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed early after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _closed(sock: ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True


def test_keep_alive_serves_many_requests_on_one_connection(kms: Kms) -> None:
    with _tls(kms) as sock:
        for _ in range(3):
            headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 16})
            sock.sendall(_request(headers, body, port=kms.port))
            status, response_headers, data = _read_response(sock)
            assert status == 200 and response_headers["connection"] == "keep-alive"
            assert response_headers["content-type"] == "application/x-amz-json-1.1"
            assert response_headers["x-amzn-requestid"]
            assert len(json.loads(data)["Plaintext"]) == 24  # base64 of 16 bytes
        headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 1})
        sock.sendall(_request({**headers, "Connection": "close"}, body, port=kms.port))
        status, response_headers, _ = _read_response(sock)
        assert status == 200 and response_headers["connection"] == "close"
        assert _closed(sock)


def test_expect_100_continue(kms: Kms) -> None:
    with _tls(kms) as sock:
        headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 4})
        request = _request({**headers, "Expect": "100-continue"}, b"", port=kms.port)
        head = request.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
        sock.sendall(head)
        status, _, _ = _read_response(sock)
        assert status == 100
        sock.sendall(body)
        status, _, _ = _read_response(sock)
        assert status == 200


def test_oversized_or_chunked_or_malformed_requests(kms: Kms) -> None:
    cases: list[tuple[bytes, int]] = [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(MAX_BODY_BYTES + 1).encode()
            + b"\r\n\r\n",
            413,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nNoColonHere\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),  # no Host
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
    ]
    for request, expected in cases:
        with _tls(kms) as sock:
            sock.sendall(request)
            status, headers, body = _read_response(sock)
            assert status == expected, request[:60]
            assert headers["connection"] == "close"
            assert b"Traceback" not in body
            assert _closed(sock)


def test_close_drops_idle_keep_alive_connections_promptly(
    kms: Kms, loop: asyncio.AbstractEventLoop
) -> None:
    server = serve(loop, WireHandler(kms.service), kms.certs.server_context())
    stopped = False
    try:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with kms.certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 4})
            # Signed for kms.port's Host; the server answers whatever port it is on.
            sock.sendall(_request(headers, body, port=kms.port))
            assert _read_response(sock)[0] == 200
            started = time.monotonic()
            stop(loop, server)
            stopped = True
            assert time.monotonic() - started < 1.5
            assert _closed(sock)
    finally:
        if not stopped:
            stop(loop, server)


def test_plain_http_only_when_asked(kms: Kms, loop: asyncio.AbstractEventLoop) -> None:
    server = serve(loop, WireHandler(kms.service), None)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 4})
            lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{kms.port}"]
            lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
            lines.append(f"Content-Length: {len(body)}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            data = sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        stop(loop, server)


# --- deadlines: a slow or silent peer is answered 408 (or dropped) and closed ----

#: The request deadline of ``quick`` (the broker passes ``[limits] login_timeout``).
REQUEST_TIMEOUT = 0.5


@pytest.fixture
def quick(kms: Kms, loop: asyncio.AbstractEventLoop) -> Iterator[KmsServer]:
    """The key service served with a short request deadline."""
    server = KmsServer(
        WireHandler(kms.service), kms.certs.server_context(), request_timeout=REQUEST_TIMEOUT
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(TIMEOUT)
    yield server
    stop(loop, server)


def _tls_to(kms: Kms, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return kms.certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def _timed_answer(sock: ssl.SSLSocket, started: float) -> tuple[int, bytes, float]:
    status, headers, body = _read_response(sock)
    elapsed = time.monotonic() - started
    assert headers["connection"] == "close"
    assert _closed(sock)
    return status, body, elapsed


def test_a_request_head_not_finished_in_time_gets_408(kms: Kms, quick: KmsServer) -> None:
    with _tls_to(kms, quick.port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.")
        status, body, elapsed = _timed_answer(sock, started)
    assert status == 408
    assert json.loads(body)["message"] == "request head not received in time"
    assert REQUEST_TIMEOUT * 0.8 <= elapsed < TIMEOUT


def test_a_head_dripped_byte_by_byte_is_cut_at_the_deadline(kms: Kms, quick: KmsServer) -> None:
    """Slowloris: every byte arriving in time does not stretch the deadline."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000
    with _tls_to(kms, quick.port) as sock:
        started = time.monotonic()
        sock.settimeout(0.05)
        answer = b""
        for byte in head:
            sock.sendall(bytes([byte]))
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert REQUEST_TIMEOUT * 0.8 <= elapsed < 4 * REQUEST_TIMEOUT + 1


def test_a_body_not_received_in_time_gets_408(kms: Kms, quick: KmsServer) -> None:
    with _tls_to(kms, quick.port) as sock:
        sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"')
        started = time.monotonic()
        status, body, elapsed = _timed_answer(sock, started)
    assert status == 408
    assert json.loads(body)["message"] == "request body not received in time"
    assert REQUEST_TIMEOUT * 0.8 <= elapsed < TIMEOUT


def test_a_connection_that_sends_nothing_is_closed_after_the_deadline(
    kms: Kms, quick: KmsServer
) -> None:
    with _tls_to(kms, quick.port) as sock:
        started = time.monotonic()
        assert _closed(sock)  # no 408: no request was begun
        elapsed = time.monotonic() - started
    assert REQUEST_TIMEOUT * 0.8 <= elapsed < TIMEOUT


def test_no_tls_handshake_is_dropped_after_the_deadline(quick: KmsServer) -> None:
    with socket.create_connection(("127.0.0.1", quick.port), timeout=TIMEOUT) as sock:
        started = time.monotonic()
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - started
    assert data == b""
    assert REQUEST_TIMEOUT * 0.8 <= elapsed < TIMEOUT


def test_a_prompt_request_is_served_and_the_connection_kept(kms: Kms, quick: KmsServer) -> None:
    with _tls_to(kms, quick.port) as sock:
        for _ in range(2):
            headers, body = sign(kms, "GenerateRandom", {"NumberOfBytes": 4})
            sock.sendall(_request(headers, body, port=kms.port))
            status, response_headers, _ = _read_response(sock)
            assert status == 200 and response_headers["connection"] == "keep-alive"
            time.sleep(REQUEST_TIMEOUT * 1.5)  # idle between requests: the idle timeout applies
