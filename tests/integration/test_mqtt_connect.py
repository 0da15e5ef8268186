"""MQTT CONNECT over TLS: login, client ids, keep-alive, session takeover, CONNACK.

paho-mqtt 2.x at 3.1, 3.1.1 and 5.0 against a broker on free ports; where a library
hides what is on the wire (return codes, DISCONNECT before the close, timing of a
silent peer) a raw TLS socket with the codec in client mode (``RawMqtt``) checks it.
"""

from __future__ import annotations

import time

import pytest

import sealmq.adapters.mqtt
from sealmq.wire.mqtt import (
    Connack,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    Suback,
    Subscribe,
    Subscription,
)
from tests.support import (
    TIMEOUT,
    USER,
    MqttClients,
    paho_properties,
)

V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
ALL_VERSIONS = pytest.mark.parametrize("version", [3, 4, 5], ids=["v31", "v311", "v5"])


def reasons(packets: list[Packet]) -> list[int]:
    """The reason codes of what came before the close, which must all be DISCONNECTs."""
    assert all(isinstance(p, Disconnect) for p in packets), packets
    return [p.reason_code for p in packets if isinstance(p, Disconnect)]


def session_expiry(seconds: int) -> object:
    return paho_properties("CONNECT", SessionExpiryInterval=seconds)


# ----------------------------------------------------------------- login


@ALL_VERSIONS
def test_each_version_logs_in_and_round_trips(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version, client_id=f"login-{version}")
    assert client.connack is not None
    assert (client.connack.reason_code, client.connack.session_present) == (0, False)
    assert client.subscribe("login/+", 1) == [1]
    assert client.publish("login/x", b"hello", 1) == 0
    message = client.get()
    assert (message.topic, message.payload, message.qos) == ("login/x", b"hello", 1)
    client.disconnect()


@pytest.mark.parametrize(
    ("username", "password"),
    [(USER, "wrong"), ("nobody", "x"), (None, None)],
    ids=["wrong password", "unknown user", "no credentials"],
)
@ALL_VERSIONS
def test_bad_credentials_get_the_versions_refusal_then_close(
    mqtt: MqttClients, version: int, username: str | None, password: str | None
) -> None:
    raw = mqtt.raw(version)
    connack = raw.connect("bad-login", username=username, password=password)
    # 3.1/3.1.1: return code 4 "bad user name or password"; 5: reason code 0x86.
    assert connack.reason_code == (0x86 if version == 5 else 4)
    assert connack.session_present is False
    if version == 5:
        assert connack.properties.reason_string
    assert raw.read_until_closed() == []


@V311_AND_V5
def test_paho_sees_the_refusal(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version, password="wrong")
    assert client.connack is not None
    assert client.connack.reason_code == 134  # paho names both versions' code as 0x86
    client.wait_disconnected()


# ----------------------------------------------------------------- client ids


@V311_AND_V5
def test_empty_client_id_with_clean_session_gets_an_id(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version, client_id="")
    assert client.connack is not None and client.connack.reason_code == 0
    if version == 5:
        assigned = client.connack.properties.AssignedClientIdentifier  # type: ignore[union-attr]
        assert assigned
        other = mqtt.paho(version=5, client_id="")
        assert other.connack.properties.AssignedClientIdentifier != assigned  # type: ignore[union-attr]
    assert client.subscribe("ids/t", 1) == [1]
    client.publish("ids/t", b"x", 1)
    assert client.get().payload == b"x"


def test_v5_empty_client_id_may_keep_a_session(mqtt: MqttClients) -> None:
    raw = mqtt.raw(5)
    props = Properties(session_expiry_interval=60)
    connack = raw.connect("", clean=False, properties=props)
    assert connack.reason_code == 0
    assigned = connack.properties.assigned_client_identifier
    assert assigned
    raw.send(Subscribe(1, (Subscription("ids/kept", 1),)))
    assert raw.expect(Suback).reason_codes == (1,)
    raw.send(Disconnect())
    raw.read_until_closed()
    again = mqtt.raw(5).connect(assigned, clean=False, properties=props)
    assert again.session_present is True


@pytest.mark.parametrize(
    ("version", "clean"), [(4, False), (3, True), (3, False)], ids=["v311 kept", "v31", "v31 kept"]
)
def test_empty_client_id_is_refused_where_the_version_requires_one(
    mqtt: MqttClients, version: int, clean: bool
) -> None:
    raw = mqtt.raw(version)
    connack = raw.connect("", clean=clean)
    assert connack.reason_code == 2  # identifier rejected
    assert raw.read_until_closed() == []


# ----------------------------------------------------------------- keep-alive


@pytest.mark.slow
@V311_AND_V5
def test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives(
    mqtt: MqttClients, version: int
) -> None:
    raw = mqtt.raw(version)
    started = time.monotonic()
    assert raw.connect("sleepy", keep_alive=1).reason_code == 0
    packets = raw.read_until_closed()
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 1.5 + TIMEOUT / 2
    if version == 5:
        assert reasons(packets) == [0x8D]  # keep alive timeout
    else:
        assert packets == []


@pytest.mark.slow
@V311_AND_V5
def test_pings_keep_a_client_connected(mqtt: MqttClients, version: int) -> None:
    # paho pings by itself, between one and two keep-alives after its last packet.
    client = mqtt.paho(version=version, client_id="paho-pinger", keepalive=4)
    connected = time.monotonic()
    raw = mqtt.raw(version)
    assert raw.connect("pinger", keep_alive=1).reason_code == 0
    deadline = time.monotonic() + 2.5  # well past 1.5 keep-alives
    while time.monotonic() < deadline:
        raw.send(Pingreq())
        assert raw.expect(Pingresp) == Pingresp()
        assert raw.nothing_more(0.5)
    # Past 1.5 of paho's keep-alives: had it not pinged, it would be gone.
    assert not client.disconnected.wait(max(0.0, connected + 6.5 - time.monotonic()))


@pytest.mark.slow
def test_v5_server_keep_alive_caps_what_the_client_asks(
    mqtt: MqttClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealmq.adapters.mqtt, "MAX_KEEP_ALIVE", 1)
    client = mqtt.paho(version=5, client_id="capped", keepalive=60)
    assert client.connack is not None
    assert client.connack.properties.ServerKeepAlive == 1  # type: ignore[union-attr]

    for asked in (60, 0):  # too long, and none at all
        raw = mqtt.raw(5)
        connack = raw.connect(f"capped-{asked}", keep_alive=asked)
        assert connack.properties.server_keep_alive == 1
        assert reasons(raw.read_until_closed()) == [0x8D]

    # 3.1.1 has no way to say so: a longer keep-alive is refused.
    raw = mqtt.raw(4)
    assert raw.connect("capped-v311", keep_alive=60).reason_code == 2
    raw.read_until_closed()
    within = mqtt.raw(4)
    assert within.connect("within", keep_alive=1).reason_code == 0


# ----------------------------------------------------------------- takeover


@V311_AND_V5
def test_a_second_connection_with_the_same_client_id_takes_over(
    mqtt: MqttClients, version: int
) -> None:
    first = mqtt.paho(version=version, client_id="twin")
    second = mqtt.paho(version=version, client_id="twin")
    assert second.connack is not None and second.connack.reason_code == 0
    reason = first.wait_disconnected()
    if version == 5:
        assert reason == 0x8E  # session taken over
    assert second.subscribe("twin/t", 1) == [1]
    second.publish("twin/t", b"still here", 1)
    assert second.get().payload == b"still here"
    assert not second.disconnected.is_set()


def test_takeover_is_announced_with_disconnect_before_the_close(mqtt: MqttClients) -> None:
    first = mqtt.raw(5)
    assert first.connect("twin-raw").reason_code == 0
    second = mqtt.raw(5)
    assert second.connect("twin-raw").reason_code == 0
    assert reasons(first.read_until_closed()) == [0x8E]


@V311_AND_V5
def test_takeover_of_a_kept_session_keeps_its_subscriptions(
    mqtt: MqttClients, version: int
) -> None:
    kept = {"clean": False}
    if version == 5:
        kept["properties"] = session_expiry(300)
    first = mqtt.paho(version=version, client_id="heir", **kept)
    assert first.subscribe("heir/+", 1) == [1]
    second = mqtt.paho(version=version, client_id="heir", **kept)
    assert second.connack is not None and second.connack.session_present is True
    first.wait_disconnected()
    mqtt.paho(version=version).publish("heir/x", b"for the heir", 1)
    assert second.get().payload == b"for the heir"


def test_connack_reports_what_the_broker_supports(mqtt: MqttClients) -> None:
    raw = mqtt.raw(5)
    connack = raw.connect("features")
    assert isinstance(connack, Connack)
    props = connack.properties
    assert props.receive_maximum == sealmq.adapters.mqtt.SERVER_RECEIVE_MAXIMUM
    assert props.topic_alias_maximum == sealmq.adapters.mqtt.SERVER_TOPIC_ALIAS_MAXIMUM
    assert props.maximum_packet_size is not None
    assert props.assigned_client_identifier is None  # it chose its own
    assert props.maximum_qos is None  # QoS 2 is supported
    assert props.retain_available in (None, 1)
    assert props.wildcard_subscription_available in (None, 1)
    assert props.shared_subscription_available in (None, 1)
    assert props.subscription_identifier_available in (None, 1)
