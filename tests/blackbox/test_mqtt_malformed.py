"""Raw bytes at the broker's MQTT port: malformed input closes that connection only.

Each malformed packet goes over a raw TLS socket trusting the broker's CA. The broker
answers as MQTT says, then closes: with MQTT 5 a DISCONNECT (or, before CONNECT is
accepted, a CONNACK) carrying the reason code first; before MQTT 5 there is nothing to
say but an unsupported protocol level (CONNACK return code 1). After every case a
bystander connected all along still gets its messages and a new client still logs in.
Then silent, dripping, non-TLS and garbage peers, and memory staying bounded under them
(as mosquitto's ``01-bad-initial-packets``).
"""

from __future__ import annotations

import contextlib
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import LimitSettings
from sealmq.wire.mqtt import (
    Connack,
    Connect,
    Disconnect,
    MqttCodec,
    MqttError,
    Packet,
    Pingreq,
    Pingresp,
)
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    MqttClients,
    PahoClient,
    ProcessBrokers,
    RawMqtt,
    mqtt_settings,
)

#: Small, so that oversize input is cheap to produce.
MAX_PACKET = 4096


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    """One broker for the whole module: each case also checks it is unaffected by the others."""
    data_dir = tmp_path_factory.mktemp("mqtt-blackbox") / "data"
    limits = LimitSettings(mqtt_max_packet_size=MAX_PACKET)
    thread = BrokerThread(mqtt_settings(data_dir, limits=limits)).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def bystander(broker: BrokerThread) -> Iterator[PahoClient]:
    """A client connected through every case, subscribed to ``health/#``."""
    client = PahoClient(broker.mqtt_port, broker.ca_file, version=5, client_id="bystander")
    assert client.subscribe("health/#", 1) == [1]
    yield client
    client.close()


@pytest.fixture
def mqtt(broker: BrokerThread) -> Iterator[MqttClients]:
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    yield clients
    clients.close_all()


def assert_serves(mqtt: MqttClients, bystander: PahoClient) -> None:
    """The bystander is still served, and a new client can log in and publish."""
    assert not bystander.disconnected.is_set()
    body = f"still here {time.monotonic_ns()}".encode()
    client = mqtt.paho(version=4)
    assert client.publish("health/check", body, 1) == 0
    assert bystander.get().payload == body
    client.disconnect()


# ----------------------------------------------------------------- hand-made bytes


def vbi(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def packet(first: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes((first,)) + vbi(len(body)) + body


def text(raw: bytes | str) -> bytes:
    data = raw.encode() if isinstance(raw, str) else raw
    return struct.pack(">H", len(data)) + data


def pid(value: int) -> bytes:
    return struct.pack(">H", value)


def connect_bytes(level: int, client_id: str = "") -> bytes:
    codec = MqttCodec(server=False)
    codec.send(Connect(level, True, 60, client_id, None, USER, PASSWORD.encode()))
    return b"".join(codec.data_to_send())


NO_PROPS = b"\x00"


def props(level: int) -> bytes:
    """An empty property block where the level has one."""
    return NO_PROPS if level == 5 else b""


def publish(level: int, topic: bytes | str, *, first: int = 0x30, packet_id: bytes = b"") -> bytes:
    return packet(first, text(topic), packet_id, props(level), b"payload")


def subscribe(level: int, *filters: tuple[bytes | str, int], packet_id: int = 1) -> bytes:
    return packet(0x82, pid(packet_id), props(level), *(text(f) + bytes((o,)) for f, o in filters))


# (name, bytes after a successful CONNECT, MQTT 5 reason code of the DISCONNECT)
AFTER_CONNECT: list[tuple[str, object, int]] = [
    ("remaining length over 4 bytes", lambda v: b"\x30\xff\xff\xff\xff\x01", 0x81),
    ("remaining length not minimal", lambda v: b"\xc0\x80\x00", 0x81),
    ("reserved packet type 0", lambda v: b"\x00\x00", 0x81),
    ("server packet from a client", lambda v: packet(0x20, b"\x00\x00", props(v)), 0x82),
    ("second CONNECT", lambda v: connect_bytes(v, "again"), 0x82),
    ("reserved flags on SUBSCRIBE", lambda v: b"\x80" + subscribe(v, ("a", 0))[1:], 0x81),
    ("reserved flags on PUBREL", lambda v: packet(0x60, pid(1)), 0x81),
    ("reserved flags on PINGREQ", lambda v: b"\xc1\x00", 0x81),
    ("PINGREQ with a body", lambda v: b"\xc0\x01\x00", 0x81),
    ("QoS 3 PUBLISH", lambda v: publish(v, "a/b", first=0x36, packet_id=pid(1)), 0x81),
    ("DUP on a QoS 0 PUBLISH", lambda v: publish(v, "a/b", first=0x38), 0x81),
    ("invalid UTF-8 in a topic", lambda v: publish(v, b"a/\xff\xfe"), 0x81),
    ("surrogate in a topic", lambda v: publish(v, b"a/\xed\xa0\x80"), 0x81),
    ("U+0000 in a topic", lambda v: publish(v, b"a/\x00b"), 0x81),
    ("+ in a PUBLISH topic", lambda v: publish(v, "a/+/c"), 0x82),
    ("# in a PUBLISH topic", lambda v: publish(v, "a/#"), 0x82),
    ("empty PUBLISH topic", lambda v: publish(v, ""), 0x82),
    (
        "packet id 0 on a QoS 1 PUBLISH",
        lambda v: publish(v, "a", first=0x32, packet_id=pid(0)),
        0x82,
    ),
    (
        "packet id 0 on a QoS 2 PUBLISH",
        lambda v: publish(v, "a", first=0x34, packet_id=pid(0)),
        0x82,
    ),
    ("packet id 0 on SUBSCRIBE", lambda v: subscribe(v, ("a", 0), packet_id=0), 0x82),
    ("packet id 0 on PUBACK", lambda v: packet(0x40, pid(0)), 0x82),
    ("topic length past the packet", lambda v: packet(0x30, b"\x00\x40abc"), 0x81),
    ("SUBSCRIBE without filters", lambda v: packet(0x82, pid(1), props(v)), 0x82),
    ("# not last in a filter", lambda v: subscribe(v, ("a/#/b", 0)), 0x81),
    ("+ inside a filter level", lambda v: subscribe(v, ("a/b+", 0)), 0x81),
    ("subscription QoS 3", lambda v: subscribe(v, ("a", 3)), 0x81),
    ("UNSUBSCRIBE without filters", lambda v: packet(0xA2, pid(1), props(v)), 0x82),
    ("packet over the maximum size", lambda v: b"\x30" + vbi(MAX_PACKET + 1), 0x95),
]
V5_ONLY: list[tuple[str, object, int]] = [
    (
        "subscription identifier in a PUBLISH",
        lambda v: packet(0x30, text("a"), b"\x02\x0b\x01", b"x"),
        0x82,
    ),
    ("topic alias 0", lambda v: packet(0x30, text("a"), b"\x03\x23\x00\x00", b"x"), 0x94),
    ("unknown property", lambda v: packet(0x30, text("a"), b"\x02\x7f\x00", b"x"), 0x81),
    (
        "property not allowed in PUBLISH",
        lambda v: packet(0x30, text("a"), b"\x05\x11\x00\x00\x00\x01", b"x"),
        0x81,  # 2.2.2.2: an identifier not valid for the packet type is malformed
    ),
    (
        "property given twice",
        lambda v: packet(0x30, text("a"), b"\x04\x01\x00\x01\x00", b"x"),
        0x82,
    ),
    ("property length past the packet", lambda v: packet(0x30, text("a"), b"\x09\x01"), 0x81),
    ("reserved subscription option bits", lambda v: subscribe(v, ("a", 0xC0)), 0x81),
    ("retain handling 3", lambda v: subscribe(v, ("a", 0x30)), 0x82),
    ("no local on a shared subscription", lambda v: subscribe(v, ("$share/g/a", 0x04)), 0x82),
    ("DISCONNECT with a bad reason code", lambda v: packet(0xE0, b"\x03"), 0x82),
]
CASES = [(name, make, code, level) for name, make, code in AFTER_CONNECT for level in (4, 5)]
CASES += [(name, make, code, 5) for name, make, code in V5_ONLY]


@pytest.mark.parametrize(
    ("name", "make", "code", "level"),
    CASES,
    ids=[f"{c[0]} v{'5' if c[3] == 5 else '311'}" for c in CASES],
)
def test_malformed_packet_after_connect_closes_only_that_connection(
    mqtt: MqttClients, bystander: PahoClient, name: str, make: object, code: int, level: int
) -> None:
    raw = mqtt.raw(level)
    assert raw.connect(f"bad-{level}").reason_code == 0
    raw.send_bytes(make(level))  # type: ignore[operator]
    answer = raw.read_until_closed()
    if level == 5:
        assert [(type(p), p.reason_code) for p in answer] == [(Disconnect, code)], name  # type: ignore[union-attr]
        assert answer[0].properties.reason_string  # type: ignore[union-attr]
    else:
        assert answer == [], name
    assert_serves(mqtt, bystander)


def _connect(name: bytes, level: int, flags: int, payload: bytes, properties: bytes = b"") -> bytes:
    return packet(0x10, text(name), bytes((level, flags)), b"\x00\x3c", properties, payload)


LOGIN = text("c") + text(USER) + text(PASSWORD)
#: (name, bytes as the first packet, level the answer is encoded at, what comes back)
BEFORE_CONNECT: list[tuple[str, bytes, int, list[Packet]]] = [
    ("garbage", bytes(range(0x80, 0xC0)), 4, []),
    ("HTTP request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 4, []),
    ("PUBLISH before CONNECT", packet(0x30, text("a"), b"x"), 4, []),
    ("PINGREQ before CONNECT", b"\xc0\x00", 4, []),
    ("unknown protocol name", _connect(b"MQTX", 4, 0xC2, LOGIN), 4, [Connack(False, 1)]),
    ("unknown protocol level", _connect(b"MQTT", 6, 0xC2, LOGIN), 4, [Connack(False, 1)]),
    ("protocol level 0", _connect(b"MQTT", 0, 0xC2, LOGIN), 4, [Connack(False, 1)]),
    ("3.1 name with level 4", _connect(b"MQIsdp", 4, 0xC2, LOGIN), 4, [Connack(False, 1)]),
    ("reserved CONNECT flag", _connect(b"MQTT", 4, 0xC3, LOGIN), 4, []),
    ("will QoS 3", _connect(b"MQTT", 4, 0xDE, LOGIN), 4, []),
    ("will retain without a will", _connect(b"MQTT", 4, 0xE2, LOGIN), 4, []),
    ("password without user name", _connect(b"MQTT", 4, 0x42, text("c") + text("pw")), 4, []),
    ("client id not UTF-8", _connect(b"MQTT", 4, 0x02, text(b"\xc3\x28")), 4, []),
    ("CONNECT longer than its fields", _connect(b"MQTT", 4, 0xC2, LOGIN + b"!"), 4, []),
    ("CONNECT over the maximum size", b"\x10" + vbi(MAX_PACKET + 1), 4, []),
    (
        "v5 reserved CONNECT flag",
        _connect(b"MQTT", 5, 0xC3, LOGIN, NO_PROPS),
        5,
        [Connack(False, 0x81)],
    ),
    (
        "v5 unknown CONNECT property",
        _connect(b"MQTT", 5, 0xC2, LOGIN, b"\x02\x7f\x00"),
        5,
        [Connack(False, 0x81)],
    ),
    (
        "v5 receive maximum 0",
        _connect(b"MQTT", 5, 0xC2, LOGIN, b"\x03\x21\x00\x00"),
        5,
        [Connack(False, 0x82)],
    ),
    (
        "v5 client id not UTF-8",
        _connect(b"MQTT", 5, 0x02, text(b"\xc3\x28"), NO_PROPS),
        5,
        [Connack(False, 0x81)],
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "level", "answer"), BEFORE_CONNECT, ids=[c[0] for c in BEFORE_CONNECT]
)
def test_malformed_first_packet_is_refused_then_closed(
    mqtt: MqttClients,
    bystander: PahoClient,
    name: str,
    data: bytes,
    level: int,
    answer: list[Packet],
) -> None:
    raw = mqtt.raw(level)
    raw.send_bytes(data)
    got = raw.read_until_closed()
    assert [(type(p), p.session_present, p.reason_code) for p in got] == [  # type: ignore[union-attr]
        (type(p), p.session_present, p.reason_code)  # type: ignore[union-attr]
        for p in answer
    ], name
    assert_serves(mqtt, bystander)


def test_a_connect_cut_short_by_the_peer_is_dropped(
    mqtt: MqttClients, bystander: PahoClient
) -> None:
    raw = mqtt.raw(4)
    raw.send_bytes(connect_bytes(4, "cut")[:12])
    # TLS close_notify: the end of the stream, mid-packet. unwrap() returns once the
    # broker answered with its own close_notify, so it did close the connection.
    plain = raw.sock.unwrap()  # type: ignore[attr-defined]
    plain.settimeout(TIMEOUT)
    assert plain.recv(1) == b""
    assert_serves(mqtt, bystander)


def test_a_connect_dripped_one_byte_at_a_time_is_served(
    mqtt: MqttClients, bystander: PahoClient
) -> None:
    raw = mqtt.raw(5)
    data = connect_bytes(5, "dripper")
    for byte in data[:-1]:
        raw.send_bytes(bytes([byte]))  # one TLS record per byte
    assert raw.nothing_more(0.2)
    raw.send_bytes(data[-1:])
    assert raw.expect(Connack).reason_code == 0
    raw.send(Pingreq())
    assert raw.expect(Pingresp) == Pingresp()
    assert_serves(mqtt, bystander)


def test_silent_peers_do_not_block_anyone(mqtt: MqttClients, bystander: PahoClient) -> None:
    silent_tls = [mqtt.raw(4) for _ in range(20)]
    silent_tcp = [mqtt.raw(4, tls=False) for _ in range(5)]
    assert_serves(mqtt, bystander)
    assert all(raw.nothing_more(0.05) for raw in silent_tls)
    assert_serves(mqtt, bystander)
    for raw in silent_tls + silent_tcp:
        raw.close()
    assert_serves(mqtt, bystander)


def test_plain_tcp_to_the_tls_port_fails_the_handshake(
    mqtt: MqttClients, bystander: PahoClient
) -> None:
    raw = mqtt.raw(4, tls=False)
    raw.send_bytes(connect_bytes(4, "plain"))
    try:
        answer = raw.read_until_closed()
    except MqttError:
        answer = []  # a TLS alert, which is no MQTT packet
    assert not any(isinstance(packet, Connack) for packet in answer)
    assert_serves(mqtt, bystander)


# ----------------------------------------------------------------- the real process


def _abuse(port: int, ca_file: Path, kind: int, rng: random.Random) -> RawMqtt:
    """Open one abusive connection; ``kind`` picks the abuse."""
    if kind == 0:  # TLS, then garbage
        raw = RawMqtt(port, ca_file)
        raw.send_bytes(rng.randbytes(4096))
    elif kind == 1:  # garbage where the TLS handshake should be
        raw = RawMqtt(port, ca_file, tls=False)
        raw.send_bytes(rng.randbytes(4096))
    elif kind == 2:  # logged in, a PUBLISH just under the limit that never ends
        raw = RawMqtt(port, ca_file)
        raw.send_bytes(connect_bytes(4, f"abuser-{rng.random()}"))
        assert raw.expect(Connack).reason_code == 0
        raw.send_bytes(b"\x30" + vbi(60_000) + text("a") + b"p" * 50_000)
    else:  # a CONNECT that announces its whole length and never sends it
        raw = RawMqtt(port, ca_file)
        raw.send_bytes(b"\x10" + vbi(60_000) + b"\x00\x04MQTT\x04\x02")
    return raw


@pytest.mark.slow
def test_memory_stays_bounded_under_garbage_connections(processes: ProcessBrokers) -> None:
    broker = processes.new(mqtt=True, sections="[limits]\nmqtt_max_packet_size = 65536\n").start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        watcher = clients.paho(version=4, client_id="watcher")
        assert watcher.subscribe("health/#", 1) == [1]
        rng = random.Random(1)
        conns = [_abuse(broker.mqtt_port, broker.ca_file, i % 4, rng) for i in range(60)]
        for i, raw in enumerate(conns):
            if i % 4 < 2:
                # A reset (after unread garbage) or a TLS alert is a close too.
                with contextlib.suppress(MqttError, OSError):
                    raw.read_until_closed()
        held = [raw for i, raw in enumerate(conns) if i % 4 >= 2]
        assert all(raw.nothing_more(0.05) for raw in held)
        assert broker.rss_bytes() < 200 * 1024 * 1024
        assert_serves(clients, watcher)
        for raw in conns:
            raw.close()
        assert_serves(clients, watcher)
        assert broker.rss_bytes() < 200 * 1024 * 1024
        assert broker.proc is not None and broker.proc.poll() is None
        assert "session failed" not in broker.output()  # no input reached a bug
        assert "Traceback" not in broker.output()
    finally:
        clients.close_all()
    assert broker.stop() == 0


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()
