"""The MQTT codec: golden client bytes, round trips, split feeds, garbage, limits."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmq.wire.mqtt import (
    DEFAULT_MAX_PACKET_SIZE,
    NO_PROPERTIES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MqttCodec,
    MqttError,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    ReasonCode,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from sealmq.wire.mqtt.properties import encode_variable_byte_integer

Error = tuple[int, str]
Outcome = tuple[list[Packet], Error | None]

LEVELS = (3, 4, 5)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers (the spec-chapter tests use these too) ---------------------------


def feed(
    data: bytes,
    pieces: Iterable[int] | None = None,
    *,
    server: bool = True,
    level: int | None = None,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
) -> Outcome:
    """Feed ``data`` in pieces of the given sizes (whole if None), then EOF.

    Returns the packets and the (reason code, message) of the MqttError, if any.
    ``level`` presets ``protocol_level`` (a client codec needs it).
    """
    codec = MqttCodec(server=server, max_packet_size=max_packet_size)
    codec.protocol_level = level
    events: list[Packet] = []
    chunks = [data] if pieces is None else list(_split(data, pieces))
    try:
        for chunk in chunks:
            codec.receive_data(chunk)
            events += codec.events_received()
        codec.receive_eof()
    except MqttError as exc:
        events += codec.events_received()
        return events, (exc.reason_code, exc.message)
    return events, None


def _split(data: bytes, sizes: Iterable[int]) -> Iterable[bytes]:
    pos = 0
    for size in sizes:
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


def one_by_one(data: bytes) -> list[int]:
    return [1] * len(data)


def encode(packets: Sequence[Packet], *, level: int | None, server: bool = False) -> bytes:
    """Encode ``packets`` with a codec at ``level`` (a client codec by default)."""
    codec = MqttCodec(server=server)
    codec.protocol_level = level
    for packet in packets:
        codec.send(packet)
    return b"".join(codec.data_to_send())


def raw(first: int, body: bytes) -> bytes:
    """A packet from its first byte and body, with a correct Remaining Length."""
    return bytes((first,)) + encode_variable_byte_integer(len(body)) + body


def utf8(text: str | bytes) -> bytes:
    """A UTF-8 Encoded String field: two-byte length, then the bytes."""
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def connect_bytes(level: int, **fields: Any) -> bytes:
    return encode([Connect(protocol_level=level, client_id="c", **fields)], level=None)


def connack_bytes(level: int) -> bytes:
    return encode([Connack()], level=level, server=True)


def from_client(level: int, data: bytes, *, pieces: Iterable[int] | None = None) -> Outcome:
    """What a server codec makes of a CONNECT at ``level`` followed by ``data``."""
    events, error = feed(connect_bytes(level) + data, pieces)
    assert events[:1] and isinstance(events[0], Connect)
    return events[1:], error


def from_server(level: int, data: bytes) -> Outcome:
    """What a client codec at ``level`` makes of a CONNACK followed by ``data``."""
    events, error = feed(connack_bytes(level) + data, server=False, level=level)
    assert events[:1] and isinstance(events[0], Connack)
    return events[1:], error


def parse_client(level: int, data: bytes) -> Packet:
    """The one packet ``data`` holds, sent by a client after CONNECT."""
    events, error = from_client(level, data)
    assert error is None
    (packet,) = events
    return packet


def parse_server(level: int, data: bytes) -> Packet:
    """The one packet ``data`` holds, sent by a server after CONNACK."""
    events, error = from_server(level, data)
    assert error is None
    (packet,) = events
    return packet


def error_of(data: bytes, *, server: bool = True, level: int | None = None, **kw: Any) -> Error:
    """The MqttError of ``data``, checking that a byte-wise feed gives the same."""
    _, error = feed(data, server=server, level=level, **kw)
    _, bytewise = feed(data, one_by_one(data), server=server, level=level, **kw)
    assert error is not None
    assert bytewise == error
    return error


def client_error(level: int, data: bytes) -> Error:
    """The MqttError of ``data`` sent by a client after a good CONNECT."""
    return error_of(connect_bytes(level) + data)


def server_error(level: int, data: bytes) -> Error:
    """The MqttError of ``data`` sent by a server after a good CONNACK."""
    return error_of(connack_bytes(level) + data, server=False, level=level)


# --- golden bytes from paho-mqtt 2.2.0 ------------------------------------------
#
# Captured from a paho-mqtt 2.2.0 client talking to a loopback socket:
# client_id "golden", user "alice"/"s3cret", keepalive 30, a will on
# "will/topic" (b"gone", QoS 1, retained); then subscribe to ("a/+/c", QoS 1)
# and ("d/#", QoS 2), publish b"hello" to "t/x" at QoS 0, 1 and 2 (retained),
# unsubscribe both, disconnect.  For MQTT 5 the CONNECT, will, SUBSCRIBE
# options and the QoS 1 PUBLISH carry the properties in the expected packets.

PAHO_311 = [
    "103300044d51545404ee001e0006676f6c64656e000a77696c6c2f746f7069630004676f6e65"
    "0005616c6963650006733363726574",
    "821000010005612f2b2f63010003642f2302",
    "300a0003742f7868656c6c6f",
    "320c0003742f78000368656c6c6f",
    "350c0003742f78000468656c6c6f",
    "a20e00050005612f2b2f630003642f23",
    "e000",
]
PAHO_31 = [
    "103500064d514973647003ee001e0006676f6c64656e000a77696c6c2f746f7069630004676f"
    "6e650005616c6963650006733363726574",
    *PAHO_311[1:],
]
PAHO_5 = [
    "105d00044d51545405ee001e161100000e1021001426000161000131260001610001320006676f"
    "6c64656e1203000a746578742f706c61696e180000000a000a77696c6c2f746f7069630004676f"
    "6e650005616c6963650006733363726574",
    "82130001020b070005612f2b2f632d0003642f2302",
    "300b0003742f780068656c6c6f",
    "322a0003742f7800031d0101020000003c0800077265706c792f3109000201022600016b00017668656c6c6f",
    "350d0003742f7800040068656c6c6f",
    "a20f0005000005612f2b2f630003642f23",
    "e000",
]
# paho's answers to a server: PUBACK for a QoS 1 PUBLISH (id 9), PUBREC then
# PUBCOMP for a QoS 2 one (id 10), PUBREL for its own QoS 2 PUBLISH, PINGREQ.
# Identical for 3.1.1 and 5: paho leaves out a success reason code.
PAHO_ACKS = ["40020009", "5002000a", "7002000a", "62020001", "c000"]


def _paho_session(level: int) -> list[Packet]:
    will_props = Properties(content_type="text/plain", will_delay_interval=10)
    props = (
        Properties(
            payload_format_indicator=1,
            message_expiry_interval=60,
            response_topic="reply/1",
            correlation_data=b"\x01\x02",
            user_properties=(("k", "v"),),
        )
        if level == 5
        else NO_PROPERTIES
    )
    v5 = level == 5
    return [
        Connect(
            protocol_level=level,
            clean_start=True,
            keep_alive=30,
            client_id="golden",
            will=Will("will/topic", b"gone", 1, True, will_props if v5 else NO_PROPERTIES),
            username="alice",
            password=b"s3cret",
            properties=Properties(
                session_expiry_interval=3600,
                receive_maximum=20,
                user_properties=(("a", "1"), ("a", "2")),
            )
            if v5
            else NO_PROPERTIES,
        ),
        Subscribe(
            1,
            (
                Subscription(
                    "a/+/c", 1, no_local=v5, retain_as_published=v5, retain_handling=2 * v5
                ),
                Subscription("d/#", 2),
            ),
            Properties(subscription_identifiers=(7,)) if v5 else NO_PROPERTIES,
        ),
        Publish("t/x", b"hello"),
        Publish("t/x", b"hello", qos=1, packet_id=3, properties=props),
        Publish("t/x", b"hello", qos=2, retain=True, packet_id=4),
        Unsubscribe(5, ("a/+/c", "d/#")),
        Disconnect(),
    ]


@pytest.mark.parametrize(("level", "golden"), [(3, PAHO_31), (4, PAHO_311), (5, PAHO_5)])
def test_golden_paho_client_session(level: int, golden: list[str]) -> None:
    wire = b"".join(bytes.fromhex(h) for h in golden)
    expected = _paho_session(level)
    assert feed(wire) == (expected, None)
    assert feed(wire, one_by_one(wire)) == (expected, None)
    # What the codec writes is byte for byte what paho writes.
    assert encode(expected, level=None) == wire
    for packet, hex_ in zip(expected, golden, strict=True):
        assert encode([packet], level=level) == bytes.fromhex(hex_)


@pytest.mark.parametrize("level", [4, 5])
def test_golden_paho_acknowledgements(level: int) -> None:
    wire = b"".join(bytes.fromhex(h) for h in PAHO_ACKS)
    expected: list[Packet] = [Puback(9), Pubrec(10), Pubcomp(10), Pubrel(1), Pingreq()]
    assert from_client(level, wire) == (expected, None)
    assert encode(expected, level=level) == wire


PAHO_CONNECT_MINIMAL = {
    4: "100c00044d515454040200050000",
    5: "100d00044d51545405020005000000",
}


@pytest.mark.parametrize("level", [4, 5])
def test_golden_paho_minimal_connect(level: int) -> None:
    """paho's CONNECT with an empty client id, clean start, keep-alive 5."""
    wire = bytes.fromhex(PAHO_CONNECT_MINIMAL[level])
    connect = Connect(protocol_level=level, keep_alive=5)
    assert feed(wire) == ([connect], None)
    assert encode([connect], level=None) == wire


class _PahoPeer:
    """A paho-mqtt client on one side of a loopback socket, this codec on the other."""

    def __init__(self, level: int) -> None:
        import paho.mqtt.client as mqtt  # a test dependency (pyproject's test extras)

        protocol = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[level]
        self.seen: dict[str, Any] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="sealmq-test", protocol=protocol
        )
        self.client.on_connect = lambda c, u, flags, rc, props: self.seen.update(connack=rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.seen.update(suback=rcs)
        self.client.on_publish = lambda c, u, mid, rc, props: self.seen.update(puback=mid)
        self.client.on_message = lambda c, u, msg: self.seen.update(message=msg)
        self.client.connect("127.0.0.1", self.listener.getsockname()[1], keepalive=30)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(0.01)
        self.codec = MqttCodec()

    def close(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.conn.close()
        self.listener.close()

    def receive(self) -> Packet:
        """The next packet paho sends (paho's loop runs meanwhile)."""
        deadline = time.monotonic() + 5
        while True:
            events = self.codec.events_received()
            if events:
                (packet,) = events
                return packet
            assert time.monotonic() < deadline, "paho sent nothing"
            self.client.loop(0.01)
            try:
                data = self.conn.recv(65536)
            except TimeoutError:
                continue
            assert data, "paho closed the connection"
            self.codec.receive_data(data)

    def reply(self, packet: Packet) -> None:
        self.codec.send(packet)
        self.conn.sendall(b"".join(self.codec.data_to_send()))

    def run_until(self, key: str) -> Any:
        deadline = time.monotonic() + 5
        while key not in self.seen:
            assert time.monotonic() < deadline, f"paho never reported {key}"
            self.client.loop(0.02)
        return self.seen[key]


@pytest.mark.parametrize("level", LEVELS)
def test_paho_client_talks_to_the_codec(level: int) -> None:
    """A live paho-mqtt client (if installed) understands what the codec sends."""
    peer = _PahoPeer(level)
    try:
        connect = peer.receive()
        assert isinstance(connect, Connect)
        assert connect.protocol_level == level
        assert connect.client_id == "sealmq-test"
        peer.reply(Connack(reason_code=0))
        assert peer.run_until("connack") == 0

        peer.client.subscribe([("a/#", 1), ("b/+", 2)])
        subscribe = peer.receive()
        assert isinstance(subscribe, Subscribe)
        assert [s.topic_filter for s in subscribe.subscriptions] == ["a/#", "b/+"]
        peer.reply(Suback(subscribe.packet_id, (1, ReasonCode.NOT_AUTHORIZED)))
        granted = peer.run_until("suback")
        assert len(granted) == 2
        assert granted[0] == 1
        assert granted[1] == (0x87 if level == 5 else 0x80)

        info = peer.client.publish("t/x", b"hello", qos=1)
        publish = peer.receive()
        assert publish == Publish("t/x", b"hello", qos=1, packet_id=info.mid)
        peer.reply(Puback(info.mid))
        assert peer.run_until("puback") == info.mid

        props = Properties(user_properties=(("k", "v"), ("k", "w")), content_type="text/plain")
        peer.reply(Publish("a/b", b"data", qos=2, packet_id=7, properties=props))
        assert peer.receive() == Pubrec(7)
        peer.reply(Pubrel(7))
        message = peer.run_until("message")
        assert (message.topic, message.payload, message.qos) == ("a/b", b"data", 2)
        if level == 5:
            assert message.properties.UserProperty == [("k", "v"), ("k", "w")]
            assert message.properties.ContentType == "text/plain"
        assert peer.receive() == Pubcomp(7)

        peer.client.disconnect()
        assert peer.receive() == Disconnect()
    finally:
        peer.close()


# --- the codec object -------------------------------------------------------------


def test_max_packet_size_must_be_at_least_two() -> None:
    with pytest.raises(ValueError):
        MqttCodec(max_packet_size=1)
    assert MqttCodec(max_packet_size=2).max_packet_size == 2
    assert DEFAULT_MAX_PACKET_SIZE == 268_435_455 + 5


def test_events_and_output_are_drained() -> None:
    codec = MqttCodec()
    codec.receive_data(connect_bytes(4) + b"\xc0\x00")
    assert codec.events_received() == [Connect(client_id="c"), Pingreq()]
    assert codec.events_received() == []
    codec.send(Pingresp())
    assert codec.data_to_send() == [b"\xd0\x00"]
    assert codec.data_to_send() == []


def test_the_codec_is_dead_after_an_error_but_can_still_send() -> None:
    codec = MqttCodec()
    codec.receive_data(connect_bytes(5))
    with pytest.raises(MqttError) as first:
        codec.receive_data(b"\x00")
    with pytest.raises(MqttError) as again:
        codec.receive_data(b"\xc0\x00")
    assert (again.value.reason_code, again.value.message) == (
        first.value.reason_code,
        first.value.message,
    )
    with pytest.raises(MqttError):
        codec.receive_eof()
    codec.send(Disconnect(first.value.reason_code))
    assert codec.data_to_send() == [b"\xe0\x01\x81"]


def test_packets_before_an_error_stay_queued() -> None:
    codec = MqttCodec()
    with pytest.raises(MqttError):
        codec.receive_data(connect_bytes(4) + b"\xc0\x00\xc0\x01\x00")
    assert codec.events_received() == [Connect(client_id="c"), Pingreq()]


def test_eof_between_packets_is_clean_and_mid_packet_is_an_error() -> None:
    assert feed(connect_bytes(4))[1] is None
    for cut in (1, 2, 5):
        assert feed(connect_bytes(4)[:-cut])[1] == (
            0x81,
            "connection closed in the middle of a packet",
        )
    codec = MqttCodec()
    codec.receive_eof()
    with pytest.raises(MqttError, match="after end of stream"):
        codec.receive_data(b"\x10")


def test_error_str_and_repr() -> None:
    exc = MqttError(ReasonCode.PROTOCOL_ERROR, "second CONNECT")
    assert str(exc) == "second CONNECT"
    assert repr(exc) == "MqttError(0x82, 'second CONNECT')"


def test_reprs_hide_secrets_and_cap_payloads() -> None:
    connect = Connect(
        password=b"hunter2", properties=Properties(authentication_data=b"secret-token")
    )
    text = repr(connect)
    assert "hunter2" not in text and "secret-token" not in text
    assert "authentication_data=<12 bytes>" in text
    text = repr(Publish("t", b"x" * 10_000))
    assert len(text) < 300 and "10000 bytes" in text
    assert repr(Properties(topic_alias=3)) == "Properties(topic_alias=3)"


def test_properties_are_truthy_when_any_is_present() -> None:
    assert not NO_PROPERTIES
    assert not Properties()
    assert Properties(topic_alias=1)
    assert Properties(user_properties=(("a", "b"),))


def test_large_payloads_are_queued_without_copying() -> None:
    payload = b"p" * (256 * 1024)
    codec = MqttCodec()
    codec.protocol_level = 4
    codec.send_publish("t", payload, 1, packet_id=1)
    head, body = codec.data_to_send()
    assert body is payload
    assert head == b"\x32" + encode_variable_byte_integer(5 + len(payload)) + b"\x00\x01t\x00\x01"
    codec.send_publish("t", b"small")
    assert codec.data_to_send() == [b"\x30\x08\x00\x01tsmall"]


def test_send_publish_is_send_of_a_publish() -> None:
    props = Properties(topic_alias=2, user_properties=(("a", "b"),))
    for level in LEVELS:
        codec = MqttCodec()
        codec.protocol_level = level
        codec.send_publish("a/b", b"x", 2, packet_id=9, retain=True, dup=True, properties=props)
        fast = b"".join(codec.data_to_send())
        slow = encode([Publish("a/b", b"x", 2, True, True, 9, props)], level=level, server=True)
        assert fast == slow


def test_send_refuses_what_cannot_be_encoded() -> None:
    def refused(packet: Packet, level: int = 5) -> str:
        codec = MqttCodec()
        codec.protocol_level = level
        with pytest.raises(MqttError) as exc:
            codec.send(packet)
        assert codec.data_to_send() == []
        assert exc.value.reason_code == ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
        return exc.value.message

    assert refused(Publish("t", qos=3, packet_id=1)) == "QoS must be 0, 1 or 2"
    assert refused(Publish("t", qos=1)) == "PUBLISH packet identifier must be 1-65535"
    assert refused(Publish("t", qos=0, packet_id=4)).startswith("QoS 0 PUBLISH")
    assert refused(Publish("a/+")) == "wildcard in topic name"
    assert refused(Publish("")) == "empty topic name without topic alias"
    assert refused(Publish("", properties=Properties(topic_alias=1)), 4) == "empty topic name"
    assert refused(Publish("t\x00")) == "string contains U+0000"
    assert refused(Publish("\ud800")) == "string is not valid UTF-8"
    assert refused(Publish("x" * 65536)) == "string longer than 65535 bytes"
    assert refused(Puback(0)) == "packet identifier must be 1-65535"
    assert refused(Puback(70000)) == "packet identifier must be 1-65535"
    assert refused(Puback(1, 256)) == "packet field out of range"
    assert refused(Publish("t", properties=Properties(topic_alias=70000))) == (
        "property value out of range"
    )
    assert refused(Publish("t", properties=Properties(session_expiry_interval=1))) == (
        "Session Expiry Interval cannot be sent in PUBLISH"
    )
    assert refused(Subscribe(1, (Subscription("a"),), Properties(subscription_identifiers=(1, 2))))
    assert refused(Subscribe(1, ())) == "SUBSCRIBE needs at least one topic filter"
    assert refused(Unsubscribe(1, ())) == "UNSUBSCRIBE needs at least one topic filter"
    assert refused(Auth(), 4) == "AUTH needs MQTT 5"
    assert refused(Connect(protocol_level=6)) == "protocol level must be 3, 4 or 5"
    assert refused(Connect(password=b"pw")) == "password without user name before MQTT 5"
    assert refused(Connack(reason_code=0x81), 4) == (
        "reason code 0x81 has no MQTT 3 CONNACK return code"
    )


def test_send_refuses_packets_over_the_peers_maximum_packet_size() -> None:
    codec = MqttCodec()
    codec.protocol_level = 5
    codec.peer_max_packet_size = 11
    codec.send_publish("t", b"12345")  # fixed header 2, topic 3, properties 1, payload 5
    assert codec.data_to_send() == [b"\x30\x09\x00\x01t\x0012345"]
    with pytest.raises(MqttError) as exc:
        codec.send_publish("t", b"123456")
    assert exc.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert codec.data_to_send() == []


def test_send_rejects_non_packets() -> None:
    with pytest.raises(TypeError):
        MqttCodec().send("CONNECT")  # type: ignore[arg-type]


def test_client_codec_takes_its_level_from_the_connect_it_sends() -> None:
    codec = MqttCodec(server=False)
    assert codec.protocol_level is None
    codec.send(Connect(protocol_level=5))
    assert codec.protocol_level == 5
    codec.receive_data(b"\x20\x03\x01\x00\x00")
    assert codec.events_received() == [Connack(session_present=True)]


# --- round trips ------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)
TOPIC_LEVEL = TEXT.filter(lambda s: "/" not in s and "+" not in s and "#" not in s)
TOPIC = st.lists(TOPIC_LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
FILTER = st.builds(
    lambda levels, tail: "/".join(levels + tail),
    st.lists(st.one_of(st.just("+"), TOPIC_LEVEL), min_size=1, max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(lambda s: s and not s.startswith("$share/"))
PAYLOAD = st.one_of(st.binary(max_size=48), st.sampled_from([b"", b"\x00", b"\xff" * 300]))
PACKET_ID = st.integers(min_value=1, max_value=0xFFFF)
U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
BIT = st.integers(0, 1)
VBI_POSITIVE = st.integers(1, 268_435_455)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple)

WILL = 0
# field: (strategy, packet types (WILL for will properties) it may appear in)
PROPERTY_FIELDS: dict[str, tuple[st.SearchStrategy[Any], tuple[int, ...]]] = {
    "payload_format_indicator": (BIT, (3, WILL)),
    "message_expiry_interval": (U32, (3, WILL)),
    "content_type": (TEXT, (3, WILL)),
    "response_topic": (TOPIC, (3, WILL)),
    "correlation_data": (st.binary(max_size=8), (3, WILL)),
    "session_expiry_interval": (U32, (1, 2, 14)),
    "assigned_client_identifier": (TEXT, (2,)),
    "server_keep_alive": (U16, (2,)),
    "authentication_method": (TEXT, (1, 2, 15)),
    "authentication_data": (st.binary(max_size=8), (1, 2, 15)),
    "request_problem_information": (BIT, (1,)),
    "will_delay_interval": (U32, (WILL,)),
    "request_response_information": (BIT, (1,)),
    "response_information": (TEXT, (2,)),
    "server_reference": (TEXT, (2, 14)),
    "reason_string": (TEXT, (2, 4, 5, 6, 7, 9, 11, 14, 15)),
    "receive_maximum": (st.integers(1, 0xFFFF), (1, 2)),
    "topic_alias_maximum": (U16, (1, 2)),
    "topic_alias": (st.integers(1, 0xFFFF), (3,)),
    "maximum_qos": (BIT, (2,)),
    "retain_available": (BIT, (2,)),
    "user_properties": (PAIRS, (WILL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15)),
    "maximum_packet_size": (st.integers(1, 0xFFFFFFFF), (1, 2)),
    "wildcard_subscription_available": (BIT, (2,)),
    "subscription_identifier_available": (BIT, (2,)),
    "shared_subscription_available": (BIT, (2,)),
}


def properties(where: int, *, sub_ids: int = 0) -> st.SearchStrategy[Properties]:
    """Valid properties for packet type ``where``, with up to ``sub_ids`` identifiers."""
    optional = {name: s for name, (s, places) in PROPERTY_FIELDS.items() if where in places}
    if sub_ids:
        optional["subscription_identifiers"] = st.lists(
            VBI_POSITIVE, min_size=1, max_size=sub_ids
        ).map(tuple)
    strategy = st.fixed_dictionaries({}, optional=optional)
    if where == 1:  # Authentication Data needs Authentication Method
        strategy = strategy.filter(
            lambda d: "authentication_data" not in d or "authentication_method" in d
        )
    return strategy.map(lambda d: Properties(**d))


def props(level: int, where: int, *, sub_ids: int = 0) -> st.SearchStrategy[Properties]:
    return properties(where, sub_ids=sub_ids) if level == 5 else st.just(NO_PROPERTIES)


def hex_codes(text: str) -> list[int]:
    return [int(code, 16) for code in text.split()]


# MQTT 5.0 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1
V5_REASONS = {
    2: hex_codes("00 80 81 82 83 84 85 86 87 88 89 8A 8C 90 95 97 99 9A 9B 9C 9D 9F"),
    4: hex_codes("00 10 80 83 87 90 91 97 99"),
    5: hex_codes("00 10 80 83 87 90 91 97 99"),
    6: hex_codes("00 92"),
    7: hex_codes("00 92"),
    9: hex_codes("00 01 02 80 83 87 8F 91 97 9E A1 A2"),
    11: hex_codes("00 11 80 83 87 8F 91"),
    14: hex_codes(
        "00 04 80 81 82 83 87 89 8B 8C 8D 8E 8F 90 93 94 95 96 97 98 99 9A 9B 9C 9D 9E 9F A0 A1 A2"
    ),
    15: hex_codes("00 18 19"),
}


def reason(level: int, ptype: int) -> st.SearchStrategy[int]:
    return st.sampled_from(V5_REASONS[ptype]) if level == 5 else st.just(0)


@st.composite
def publishes(draw: st.DrawFn, level: int, *, from_server: bool) -> Publish:
    qos = draw(st.integers(0, 2))
    properties = draw(props(level, 3, sub_ids=3 if from_server else 0))
    topic = draw(TOPIC)
    if properties.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic,
        draw(PAYLOAD),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(PACKET_ID) if qos else 0,
        properties,
    )


def acks(level: int) -> st.SearchStrategy[Packet]:
    return st.one_of(
        *(
            st.builds(cls, PACKET_ID, reason(level, ptype), props(level, ptype))
            for cls, ptype in ((Puback, 4), (Pubrec, 5), (Pubrel, 6), (Pubcomp, 7))
        )
    )


@st.composite
def subscriptions(draw: st.DrawFn, level: int) -> Subscription:
    if level < 5:
        return Subscription(draw(FILTER), draw(st.integers(0, 2)))
    return Subscription(
        draw(FILTER),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(TOPIC),
            draw(PAYLOAD),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(props(level, WILL)),
        )
    username = draw(st.one_of(st.none(), TEXT))
    password = draw(st.one_of(st.none(), st.binary(max_size=12)))
    if level < 5 and username is None:
        password = None
    return Connect(
        level,
        draw(st.booleans()),
        draw(U16),
        draw(TEXT),
        will,
        username,
        password,
        draw(props(level, 1)),
    )


def connacks(level: int) -> st.SearchStrategy[Connack]:
    return st.builds(
        Connack,
        st.just(False) if level == 3 else st.booleans(),
        st.sampled_from(V5_REASONS[2]) if level == 5 else st.integers(0, 5),
        props(level, 2),
    )


def client_packets(level: int) -> st.SearchStrategy[Packet]:
    """Any packet a client sends after CONNECT."""
    options: list[st.SearchStrategy[Packet]] = [
        publishes(level, from_server=False),
        acks(level),
        st.builds(
            Subscribe,
            PACKET_ID,
            st.lists(subscriptions(level), min_size=1, max_size=3).map(tuple),
            props(level, 8, sub_ids=1),
        ),
        st.builds(
            Unsubscribe,
            PACKET_ID,
            st.lists(FILTER, min_size=1, max_size=3).map(tuple),
            props(level, 10),
        ),
        st.just(Pingreq()),
        st.builds(Disconnect, reason(level, 14), props(level, 14)),
    ]
    if level == 5:
        options.append(st.builds(Auth, reason(5, 15), properties(15)))
    return st.one_of(options)


def server_packets(level: int) -> st.SearchStrategy[Packet]:
    """Any packet a server sends after CONNACK."""
    codes = st.sampled_from(V5_REASONS[9] if level == 5 else [0, 1, 2, 0x80])
    options: list[st.SearchStrategy[Packet]] = [
        publishes(level, from_server=True),
        acks(level),
        st.builds(
            Suback,
            PACKET_ID,
            st.lists(codes, min_size=1, max_size=4).map(tuple),
            props(level, 9),
        ),
        st.builds(
            Unsuback,
            PACKET_ID,
            st.lists(st.sampled_from(V5_REASONS[11]), min_size=1, max_size=4).map(tuple)
            if level == 5
            else st.just(()),
            props(level, 11),
        ),
        st.just(Pingresp()),
    ]
    if level == 5:
        options.append(st.builds(Disconnect, reason(5, 14), properties(14)))
        options.append(st.builds(Auth, reason(5, 15), properties(15)))
    return st.one_of(options)


@FAST
@given(data=st.data(), level=st.sampled_from(LEVELS))
def test_roundtrip_client_packets(data: st.DataObject, level: int) -> None:
    connect = data.draw(connects(level))
    packets = data.draw(st.lists(client_packets(level), max_size=5))
    wire = encode([connect, *packets], level=None)
    assert feed(wire) == ([connect, *packets], None)


@FAST
@given(data=st.data(), level=st.sampled_from(LEVELS))
def test_roundtrip_server_packets(data: st.DataObject, level: int) -> None:
    connack = data.draw(connacks(level))
    packets = data.draw(st.lists(server_packets(level), max_size=5))
    wire = encode([connack, *packets], level=level, server=True)
    assert feed(wire, server=False, level=level) == ([connack, *packets], None)


@FAST
@given(
    data=st.data(),
    level=st.sampled_from(LEVELS),
    server=st.booleans(),
    sizes=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_split_feeds_yield_the_same_events(
    data: st.DataObject, level: int, server: bool, sizes: list[int]
) -> None:
    if server:
        first: Packet = data.draw(connects(level))
        packets = data.draw(st.lists(client_packets(level), max_size=5))
    else:
        first = data.draw(connacks(level))
        packets = data.draw(st.lists(server_packets(level), max_size=5))
    wire = encode([first, *packets], level=level, server=not server)
    peer_level = None if server else level
    whole = feed(wire, server=server, level=peer_level)
    assert whole == ([first, *packets], None)
    assert feed(wire, one_by_one(wire), server=server, level=peer_level) == whole
    assert feed(wire, sizes, server=server, level=peer_level) == whole


def test_older_levels_drop_what_they_cannot_carry() -> None:
    props = Properties(reason_string="why", user_properties=(("a", "b"),))
    for level in (3, 4):
        assert encode([Puback(1, 0x87, props)], level=level) == b"\x40\x02\x00\x01"
        assert encode([Publish("t", b"", properties=props)], level=level) == b"\x30\x03\x00\x01t"
        assert encode([Suback(1, (0, 0x87, 0xA2))], level=level) == b"\x90\x05\x00\x01\x00\x80\x80"
        assert encode([Unsuback(1, (0x11,), props)], level=level) == b"\xb0\x02\x00\x01"
        assert encode([Disconnect(0x8B, props)], level=level) == b"\xe0\x00"
        assert encode([Disconnect(0x8B)], level=level, server=True) == b""
        sub = Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=2)
        assert encode([Subscribe(1, (sub,))], level=level) == b"\x82\x06\x00\x01\x00\x01a\x01"


# --- garbage in: packets or MqttError, never anything else ------------------------

PIECES = st.sampled_from(
    [
        bytes.fromhex(PAHO_311[0])[:12],
        bytes.fromhex(PAHO_5[0])[:12],
        b"\x10",
        b"\x30",
        b"\x32",
        b"\x62",
        b"\x82",
        b"\xe0",
        b"\xf0",
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\xff\xff\xff\x7f",
        b"\x80\x80\x80\x80\x01",
        b"\x00\x04MQTT",
        b"\x00\x06MQIsdp",
        b"\x26\x00\x01a\x00\x01b",
        b"\x0b\x00",
        b"\x23\x00\x00",
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"+",
        b"#",
        b"/",
    ]
)
MQTTISH = st.lists(PIECES, max_size=30).map(b"".join)


def _valid_streams() -> list[bytes]:
    streams = [b"".join(bytes.fromhex(h) for h in g) for g in (PAHO_31, PAHO_311, PAHO_5)]
    props = Properties(topic_alias=3, user_properties=(("k", "v"),))
    for level in LEVELS:
        streams.append(
            connect_bytes(level)
            + encode(
                [
                    Publish("a/b", b"xyz", 1, packet_id=4, properties=props),
                    Pubrel(4, 0x92 if level == 5 else 0),
                    Subscribe(2, (Subscription("$share/g/a/#", 2),)),
                    Unsubscribe(3, ("a/+",)),
                    Auth(0x18) if level == 5 else Pingreq(),
                ],
                level=level,
            )
        )
    return streams


VALID_STREAMS = _valid_streams()


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid packets with a few bytes inserted, deleted or replaced: deep garbage."""
    data = bytearray(draw(st.sampled_from(VALID_STREAMS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "flip"]))
        piece = draw(PIECES)
        if action == "insert":
            data[pos:pos] = piece
        elif action == "delete":
            del data[pos : pos + len(piece)]
        elif action == "replace":
            data[pos : pos + len(piece)] = piece
        elif pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


ERROR_CODES = {0x81, 0x82, 0x84, 0x94, 0x95}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.binary(max_size=200), MQTTISH, mutated_streams()),
    prefix=st.sampled_from([None, 3, 4, 5]),
    server=st.booleans(),
    max_packet_size=st.sampled_from([DEFAULT_MAX_PACKET_SIZE, 2, 16, 64]),
    sizes=st.lists(st.integers(min_value=1, max_value=16), max_size=20),
)
def test_garbage_gives_packets_or_mqtt_error_the_same_whichever_way_it_is_split(
    data: bytes, prefix: int | None, server: bool, max_packet_size: int, sizes: list[int]
) -> None:
    level = None
    if prefix is not None:
        # Get past CONNECT/CONNACK so garbage reaches every packet's parser.
        data = (connect_bytes(prefix) if server else connack_bytes(prefix)) + data
        level = None if server else prefix
    kw: dict[str, Any] = {"server": server, "level": level, "max_packet_size": max_packet_size}
    whole = feed(data, **kw)
    assert feed(data, one_by_one(data), **kw) == whole
    assert feed(data, sizes, **kw) == whole
    events, error = whole
    assert all(isinstance(e, Packet) for e in events)
    if error is not None:
        code, message = error
        assert code in ERROR_CODES
        assert 0 < len(message) < 80
        assert message.isprintable() and message.isascii()


# --- limits and cost ----------------------------------------------------------------


def test_oversize_packet_is_refused_as_soon_as_its_length_is_known() -> None:
    codec = MqttCodec(max_packet_size=100)
    codec.receive_data(connect_bytes(4))
    # A 1 MiB PUBLISH: refused on its fourth byte, before any body is buffered.
    header = raw(0x30, b"\x00" * (1 << 20))[:4]
    codec.receive_data(header[:3])
    with pytest.raises(MqttError) as exc:
        codec.receive_data(header[3:])
    assert (exc.value.reason_code, exc.value.message) == (0x95, "packet larger than 100 bytes")


def test_max_packet_size_counts_the_fixed_header() -> None:
    publish = encode([Publish("t", b"x" * 100)], level=4)
    assert len(publish) == 2 + 3 + 100
    wire = connect_bytes(4) + publish
    assert feed(wire, max_packet_size=105) == (
        [Connect(client_id="c"), Publish("t", b"x" * 100)],
        None,
    )
    assert feed(wire, max_packet_size=104)[1] == (0x95, "packet larger than 104 bytes")


def test_byte_drip_of_a_large_packet_is_linear() -> None:
    codec = MqttCodec()
    codec.receive_data(connect_bytes(4))
    codec.events_received()
    wire = encode([Publish("t", b"p" * 300_000)], level=4)
    codec.receive_data(wire[:4])
    # Once the fixed header is known nothing is re-read: every further byte is
    # one append and one length comparison (a rescan would make this take minutes).
    for i in range(4, len(wire) - 1):
        codec.receive_data(wire[i : i + 1])
    assert codec._length == len(wire) - 4
    codec.receive_data(wire[-1:])
    assert codec.events_received() == [Publish("t", b"p" * 300_000)]
    assert not codec._buf


def test_many_small_packets_in_one_chunk() -> None:
    packets = [Publish("a/b", bytes([i % 256]) * (i % 7), 1, packet_id=i + 1) for i in range(5000)]
    wire = connect_bytes(4) + encode(packets, level=4)
    events, error = feed(wire)
    assert error is None
    assert events[1:] == packets


# --- CONNECT: the packet limit of an unauthenticated peer -----------------------


@pytest.mark.parametrize("level", LEVELS)
def test_connect_over_max_connect_size_is_refused_knowing_its_level(level: int) -> None:
    data = connect_bytes(level, username="u", password=b"p" * 5000)
    codec = MqttCodec(max_connect_size=1024)
    with pytest.raises(MqttError) as exc:
        codec.receive_data(data[:20])  # the rest of the 5 KB never has to come
    assert exc.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert exc.value.message == "CONNECT larger than 1024 bytes"
    assert codec.protocol_level == level  # so that MQTT 5 gets CONNACK 0x95
    assert len(codec._buf) == 0


@pytest.mark.parametrize("level", LEVELS)
def test_oversize_connect_fed_byte_by_byte_waits_only_for_its_level(level: int) -> None:
    data = connect_bytes(level, username="u", password=b"p" * 5000)
    codec = MqttCodec(max_connect_size=1024)
    fed = 0
    with pytest.raises(MqttError):
        for byte in data:
            codec.receive_data(bytes([byte]))
            fed += 1
    assert fed < 16  # fixed header (3 bytes) + protocol name and level
    assert codec.protocol_level == level


def test_an_oversize_connect_with_an_unknown_name_is_refused_without_a_level() -> None:
    body = utf8("NOPE") + bytes([5, 0x02, 0, 60]) + b"x" * 2000
    codec = MqttCodec(max_connect_size=1024)
    with pytest.raises(MqttError) as exc:
        codec.receive_data(raw(0x10, body))
    assert exc.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert codec.protocol_level is None


def test_connect_at_the_limit_is_accepted_and_later_packets_have_the_full_limit() -> None:
    connect = connect_bytes(5, password=b"p" * 100)
    publish = encode([Publish("t", b"x" * 5000)], level=5)
    codec = MqttCodec(max_connect_size=len(connect))
    codec.receive_data(connect + publish)
    connect_packet, publish_packet = codec.events_received()
    assert isinstance(connect_packet, Connect)
    assert isinstance(publish_packet, Publish) and len(publish_packet.payload) == 5000


def test_default_max_connect_size_is_64_kib() -> None:
    assert feed(connect_bytes(4, username="u" * 2000, password=b"p" * 64000))[1] == (
        ReasonCode.PACKET_TOO_LARGE,
        "CONNECT larger than 65536 bytes",
    )
    with pytest.raises(ValueError, match="max_connect_size"):
        MqttCodec(max_connect_size=1)


def test_pending_frame_offset_names_the_packet_still_arriving() -> None:
    codec = MqttCodec()
    connect = connect_bytes(4)
    codec.receive_data(connect)
    assert codec.pending_frame_offset is None
    publish = encode([Publish("t", b"x" * 100)], level=4)
    codec.receive_data(publish[:10])
    assert codec.pending_frame_offset == len(connect)
    codec.receive_data(publish[10:20])
    assert codec.pending_frame_offset == len(connect)
    codec.receive_data(publish[20:] + publish[:5])
    assert codec.pending_frame_offset == len(connect) + len(publish)
    codec.receive_data(publish[5:])
    assert codec.pending_frame_offset is None
    assert len(codec.events_received()) == 3


def test_an_encoded_publish_is_queued_as_is_by_codecs_of_its_level() -> None:
    props = Properties(user_properties=(("a", "b"),))
    for level in LEVELS:
        maker, first, second = MqttCodec(), MqttCodec(), MqttCodec()
        for codec in (maker, first, second):
            codec.protocol_level = level
        chunks = maker.encode_publish("a/b", b"x", retain=True, properties=props)
        assert maker.data_to_send() == []  # encoding queues nothing
        first.send_encoded(chunks)
        second.send_encoded(chunks)
        out1, out2 = first.data_to_send(), second.data_to_send()
        assert out1[0] is out2[0] is chunks[0]  # the same bytes, not copies
        maker.send_publish("a/b", b"x", retain=True, properties=props)
        assert out1 == maker.data_to_send()


def test_an_encoded_publish_over_the_peers_maximum_is_refused_by_that_codec_only() -> None:
    maker, small, large = MqttCodec(), MqttCodec(), MqttCodec()
    for codec in (maker, small, large):
        codec.protocol_level = 5
    small.peer_max_packet_size = 10
    chunks = maker.encode_publish("t", b"123456")  # 12 bytes
    with pytest.raises(MqttError) as exc:
        small.send_encoded(chunks)
    assert exc.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert small.data_to_send() == []
    large.send_encoded(chunks)
    assert large.data_to_send() == [b"\x30\x0a\x00\x01t\x00123456"]
    with pytest.raises(MqttError):
        maker.encode_publish("a/#", b"")
