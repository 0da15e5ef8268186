"""Bad AMQP input over a raw TLS socket: each is answered as the spec says and closes
only that connection; the broker goes on serving (a Proton client works after)."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from proton import Data, Message

from tests.amqp.clients import AmqpClients
from tests.support import PASSWORD, TIMEOUT, USER, BrokerThread, tls_client_context

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"


@contextmanager
def raw(broker: BrokerThread) -> Iterator[ssl.SSLSocket]:
    assert broker.running is not None
    context = tls_client_context(broker.ca_file)
    sock = socket.create_connection(("127.0.0.1", broker.running.port("amqp")), TIMEOUT)
    tls = context.wrap_socket(sock, server_hostname="localhost")
    try:
        yield tls
    finally:
        tls.close()


def read_all(sock: ssl.SSLSocket) -> bytes:
    """Everything the broker sends until it closes the connection (bounded)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def frame(body: bytes, frame_type: int = 0) -> bytes:
    return struct.pack(">IBBH", 8 + len(body), 2, frame_type, 0) + body


def described(code: int, *fields: object) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(code)
    data.put_list()
    data.enter()
    for value in fields:
        data.put_object(value)
    data.exit()
    data.exit()
    return bytes(data.encode())


def sasl_plain() -> bytes:
    from proton import symbol

    init = described(0x41, symbol("PLAIN"), f"\0{USER}\0{PASSWORD}".encode())
    return SASL_HEADER + frame(init, 1)


def sasl_outcome_code(answer: bytes) -> int:
    """The code of the sasl-outcome frame in what the broker sent (after its header
    and mechanisms frame)."""
    assert answer.startswith(SASL_HEADER)
    pos = len(SASL_HEADER)
    (size,) = struct.unpack_from(">I", answer, pos)
    pos += size  # the mechanisms frame
    (size,) = struct.unpack_from(">I", answer, pos)
    data = Data()
    data.decode(answer[pos + 8 : pos + size])
    data.rewind()
    data.next()
    outcome = data.get_object()
    assert outcome.descriptor == 0x44
    return int(outcome.value[0])


def still_serving(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    conn.create_sender("queue://after").send(Message(body="fine"))
    conn.close()


def test_a_wrong_protocol_header_gets_the_sasl_header_and_a_close(
    amqp_broker: BrokerThread, amqp: AmqpClients
) -> None:
    with raw(amqp_broker) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert read_all(sock) == SASL_HEADER
    still_serving(amqp)


def test_skipping_sasl_is_refused_without_anonymous_access(
    amqp_broker: BrokerThread, amqp: AmqpClients
) -> None:
    with raw(amqp_broker) as sock:
        sock.sendall(AMQP_HEADER)
        assert read_all(sock) == SASL_HEADER
    still_serving(amqp)


def test_sasl_garbage_and_a_bad_password_get_a_failing_outcome(
    amqp_broker: BrokerThread, amqp: AmqpClients
) -> None:
    with raw(amqp_broker) as sock:
        sock.sendall(SASL_HEADER + frame(b"\xffnot a performative", 1))
        assert sasl_outcome_code(read_all(sock)) == 3  # sys-perm
    with raw(amqp_broker) as sock:
        from proton import symbol

        init = described(0x41, symbol("PLAIN"), f"\0{USER}\0wrong-password".encode())
        sock.sendall(SASL_HEADER + frame(init, 1))
        assert sasl_outcome_code(read_all(sock)) == 1  # auth
    with raw(amqp_broker) as sock:
        sock.sendall(SASL_HEADER + struct.pack(">IBBH", 10_000_000, 2, 1, 0))
        assert sasl_outcome_code(read_all(sock)) == 3
    still_serving(amqp)


def test_a_frame_larger_than_negotiated_closes_with_a_framing_error(
    amqp_broker: BrokerThread, amqp: AmqpClients
) -> None:
    with raw(amqp_broker) as sock:
        sock.sendall(sasl_plain() + AMQP_HEADER)
        # open, then a frame claiming 8 MiB (the broker announces 1 MiB).
        sock.sendall(frame(described(0x10, "raw-client")))
        sock.sendall(struct.pack(">IBBH", 8 * 1024 * 1024, 2, 0, 0) + bytes(1000))
        answer = read_all(sock)
    assert sasl_outcome_code(answer) == 0
    assert b"amqp:connection:framing-error" in answer
    still_serving(amqp)


def test_an_unknown_performative_closes_with_a_decode_error(
    amqp_broker: BrokerThread, amqp: AmqpClients
) -> None:
    with raw(amqp_broker) as sock:
        sock.sendall(sasl_plain() + AMQP_HEADER)
        sock.sendall(frame(described(0x10, "raw-client")))
        sock.sendall(frame(described(0x77, 1, 2)))
        answer = read_all(sock)
    assert sasl_outcome_code(answer) == 0
    assert b"amqp:decode-error" in answer
    assert answer.count(b"\x00\x53\x18") == 1, "one close, with the condition"
    still_serving(amqp)
