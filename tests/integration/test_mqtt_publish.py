"""MQTT PUBLISH at QoS 0, 1 and 2, both ways: the acknowledgement flows, packet ids, DUP.

paho-mqtt checks what applications see; the raw client (``RawMqtt``) checks the flows
packet by packet: PUBACK, PUBREC/PUBREL/PUBCOMP, packet-id reuse, resends with DUP,
exactly-once for inbound QoS 2, and in-flight flows resumed on reconnect.

The tests share one broker (``shared_mqtt``); kept sessions have ``unique`` client ids.
"""

from __future__ import annotations

import pytest

from sealmq.adapters.mqtt import SERVER_RECEIVE_MAXIMUM
from sealmq.wire.mqtt import (
    Disconnect,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
)
from tests.support import MqttClients, RawMqtt

VERSIONS = pytest.mark.parametrize("version", [3, 4, 5], ids=["v31", "v311", "v5"])
V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def subscribed(
    mqtt: MqttClients, topic_filter: str, qos: int, *, level: int = 4, **kw: object
) -> RawMqtt:
    """A raw client that logged in and subscribed ``topic_filter`` at ``qos``."""
    raw = mqtt.raw(level)
    assert raw.connect(**kw).reason_code == 0  # type: ignore[arg-type]
    raw.send(Subscribe(1, (Subscription(topic_filter, qos),)))
    assert raw.expect(Suback).reason_codes == (qos,)
    return raw


def logged_in(mqtt: MqttClients, level: int = 4, **kw: object) -> RawMqtt:
    raw = mqtt.raw(level)
    assert raw.connect(**kw).reason_code == 0  # type: ignore[arg-type]
    return raw


# ----------------------------------------------------------------- through paho


@VERSIONS
def test_every_qos_both_ways_delivers_at_the_lower_of_the_two(
    shared_mqtt: MqttClients, version: int
) -> None:
    subscribers = {}
    for sub_qos in (0, 1, 2):
        client = shared_mqtt.paho(version=version, client_id=f"sub-{sub_qos}")
        assert client.subscribe("qos/+", sub_qos) == [sub_qos]
        subscribers[sub_qos] = client
    publisher = shared_mqtt.paho(version=version, client_id="pub")
    for pub_qos in (0, 1, 2):
        assert publisher.publish(f"qos/{pub_qos}", f"at {pub_qos}", pub_qos) == 0
        for sub_qos, client in subscribers.items():
            message = client.get()
            assert (message.topic, message.payload) == (f"qos/{pub_qos}", f"at {pub_qos}".encode())
            assert message.qos == min(sub_qos, pub_qos), (sub_qos, pub_qos)
            assert message.retain is False
            assert message.dup is False
    assert all(client.nothing_more() for client in subscribers.values())


@V311_AND_V5
def test_messages_of_one_publisher_arrive_in_order(shared_mqtt: MqttClients, version: int) -> None:
    subscriber = shared_mqtt.paho(version=version, client_id="in-order")
    assert subscriber.subscribe("order/#", 2) == [2]
    publisher = shared_mqtt.paho(version=version, client_id="orderer")
    infos = [publisher.client.publish("order/t", f"{i % 3}:{i:03d}", qos=i % 3) for i in range(150)]
    for info in infos:
        info.wait_for_publish(10)
    got = [m.payload.decode() for m in subscriber.take(150)]
    # paho hands a QoS 2 message over at PUBREL, later than QoS 0/1 ones: compare per QoS.
    for qos in "012":
        sent = [f"{qos}:{i:03d}" for i in range(150) if str(i % 3) == qos]
        assert [body for body in got if body.startswith(qos)] == sent


def test_deliveries_leave_in_the_order_published(shared_mqtt: MqttClients) -> None:
    watcher = subscribed(shared_mqtt, "wire/#", 2, client_id="wire-order")
    publisher = logged_in(shared_mqtt)
    for i in range(60):
        qos = i % 3
        publisher.send(Publish("wire/t", f"{i}".encode(), qos, packet_id=i + 1 if qos else 0))
    received = []
    while len(received) < 60:
        packet = watcher.recv()
        if isinstance(packet, Pubrel):
            watcher.send(Pubcomp(packet.packet_id))
            continue
        assert isinstance(packet, Publish), packet
        received.append(packet.payload)
        if packet.qos == 1:
            watcher.send(Puback(packet.packet_id))
        elif packet.qos == 2:
            watcher.send(Pubrec(packet.packet_id))
    assert received == [f"{i}".encode() for i in range(60)]


@V311_AND_V5
def test_payload_bytes_are_unchanged(shared_mqtt: MqttClients, version: int) -> None:
    subscriber = shared_mqtt.paho(version=version, client_id="bytes")
    assert subscriber.subscribe("bytes/t", 1) == [1]
    publisher = shared_mqtt.paho(version=version)
    payloads = [b"", bytes(range(256)), b"\x00\xff" * 5000, "unicode ✓ ü".encode()]
    for payload in payloads:
        publisher.publish("bytes/t", payload, 1)
    assert [m.payload for m in subscriber.take(len(payloads))] == payloads


# ----------------------------------------------------------------- inbound flows, raw


@pytest.mark.parametrize("level", [4, 5])
def test_inbound_qos1_and_qos2_flows(shared_mqtt: MqttClients, level: int) -> None:
    watcher = subscribed(shared_mqtt, "in/#", 2, level=level, client_id="watcher")
    publisher = logged_in(shared_mqtt, level, client_id="publisher")

    publisher.send(Publish("in/one", b"q1", 1, packet_id=10))
    assert publisher.expect(Puback) == Puback(10)
    assert watcher.expect(Publish).payload == b"q1"

    publisher.send(Publish("in/two", b"q2", 2, packet_id=11))
    assert publisher.expect(Pubrec) == Pubrec(11)
    publisher.send(Pubrel(11))
    assert publisher.expect(Pubcomp) == Pubcomp(11)
    delivered = watcher.expect(Publish)
    assert (delivered.payload, delivered.qos) == (b"q2", 2)
    watcher.send(Pubrec(delivered.packet_id))
    assert watcher.expect(Pubrel) == Pubrel(delivered.packet_id)
    watcher.send(Pubcomp(delivered.packet_id))
    assert watcher.nothing_more()


@pytest.mark.parametrize("level", [4, 5])
def test_a_qos2_resend_before_pubrel_is_delivered_once(
    shared_mqtt: MqttClients, level: int
) -> None:
    watcher = subscribed(shared_mqtt, "once/#", 1, level=level, client_id="watcher")
    publisher = logged_in(shared_mqtt, level, client_id="publisher")
    publisher.send(Publish("once/t", b"exactly once", 2, packet_id=7))
    assert publisher.expect(Pubrec) == Pubrec(7)
    for _ in range(3):
        publisher.send(Publish("once/t", b"exactly once", 2, dup=True, packet_id=7))
        assert publisher.expect(Pubrec) == Pubrec(7)
    publisher.send(Pubrel(7))
    assert publisher.expect(Pubcomp) == Pubcomp(7)
    message = watcher.expect(Publish)
    watcher.send(Puback(message.packet_id))
    assert message.payload == b"exactly once"
    assert watcher.nothing_more()

    # Once completed, the packet id is free again: the same id is a new message.
    publisher.send(Publish("once/t", b"a new one", 2, packet_id=7))
    assert publisher.expect(Pubrec) == Pubrec(7)
    publisher.send(Pubrel(7))
    assert publisher.expect(Pubcomp) == Pubcomp(7)
    assert watcher.expect(Publish).payload == b"a new one"


@pytest.mark.parametrize("level", [4, 5])
def test_pubrel_for_an_unknown_packet_id_is_completed(shared_mqtt: MqttClients, level: int) -> None:
    publisher = logged_in(shared_mqtt, level)
    publisher.send(Pubrel(99))
    pubcomp = publisher.expect(Pubcomp)
    assert pubcomp.packet_id == 99
    if level == 5:
        assert pubcomp.reason_code == 0x92  # packet identifier not found
        assert pubcomp.properties.reason_string
    assert publisher.nothing_more()


@pytest.mark.parametrize("level", [4, 5])
def test_inbound_qos2_exactly_once_across_a_reconnect(
    shared_mqtt: MqttClients, level: int, unique: str
) -> None:
    watcher = subscribed(shared_mqtt, "again/#", 1, level=level, client_id="watcher")
    kept = {"client_id": f"{unique}-resender", "clean": False}
    if level == 5:
        kept["properties"] = Properties(session_expiry_interval=300)
    publisher = logged_in(shared_mqtt, level, **kept)
    publisher.send(Publish("again/t", b"only one", 2, packet_id=3))
    assert publisher.expect(Pubrec) == Pubrec(3)
    publisher.close()  # lost before PUBREL

    publisher = shared_mqtt.raw(level)
    assert publisher.connect(**kept).session_present is True  # type: ignore[arg-type]
    publisher.send(Publish("again/t", b"only one", 2, dup=True, packet_id=3))
    assert publisher.expect(Pubrec) == Pubrec(3)
    publisher.send(Pubrel(3))
    assert publisher.expect(Pubcomp) == Pubcomp(3)
    message = watcher.expect(Publish)
    watcher.send(Puback(message.packet_id))
    assert message.payload == b"only one"
    assert watcher.nothing_more()


def test_more_inbound_qos2_in_flight_than_receive_maximum_is_refused(
    shared_mqtt: MqttClients,
) -> None:
    publisher = logged_in(shared_mqtt, 5)
    for pid in range(1, SERVER_RECEIVE_MAXIMUM + 1):
        publisher.send(Publish("flood/t", b"x", 2, packet_id=pid))
    for pid in range(1, SERVER_RECEIVE_MAXIMUM + 1):
        assert publisher.expect(Pubrec).packet_id == pid
    publisher.send(Publish("flood/t", b"one too many", 2, packet_id=SERVER_RECEIVE_MAXIMUM + 1))
    closing = publisher.read_until_closed()
    assert [(type(p), p.reason_code) for p in closing] == [(Disconnect, 0x93)]  # type: ignore[union-attr]

    # Completing flows frees the window.
    other = logged_in(shared_mqtt, 5)
    for pid in range(1, SERVER_RECEIVE_MAXIMUM + 1):
        other.send(Publish("flood/t", b"x", 2, packet_id=pid))
        other.send(Pubrel(pid))
    other.send(Publish("flood/t", b"fine", 2, packet_id=SERVER_RECEIVE_MAXIMUM + 1))
    last = None
    for _ in range(2 * SERVER_RECEIVE_MAXIMUM + 1):
        last = other.recv()
    # Accepted (0x10: nobody subscribes to flood/t).
    assert last == Pubrec(SERVER_RECEIVE_MAXIMUM + 1, 0x10)


# ----------------------------------------------------------------- outbound flows, raw


@pytest.mark.parametrize("level", [4, 5])
def test_unacknowledged_deliveries_use_distinct_packet_ids(
    shared_mqtt: MqttClients, level: int
) -> None:
    watcher = subscribed(shared_mqtt, "ids/#", 1, level=level, client_id="watcher")
    publisher = logged_in(shared_mqtt, level)
    for i in range(20):
        publisher.send(Publish("ids/t", f"{i}".encode(), 1, packet_id=i + 1))
    deliveries = [watcher.expect(Publish) for _ in range(20)]
    assert [d.payload for d in deliveries] == [f"{i}".encode() for i in range(20)]
    assert len({d.packet_id for d in deliveries}) == 20
    assert all(d.packet_id != 0 for d in deliveries)


@pytest.mark.parametrize("level", [4, 5])
def test_a_kept_session_resends_unacknowledged_qos1_with_dup_and_the_same_id(
    shared_mqtt: MqttClients, level: int, unique: str
) -> None:
    kept = {"client_id": f"{unique}-forgets-acks", "clean": False}
    if level == 5:
        kept["properties"] = Properties(session_expiry_interval=300)
    watcher = subscribed(shared_mqtt, "dup/#", 1, level=level, **kept)
    publisher = logged_in(shared_mqtt, level)
    publisher.send(Publish("dup/t", b"ack me", 1, packet_id=1))
    first = watcher.expect(Publish)
    assert first.dup is False
    watcher.close()  # never acked

    watcher = shared_mqtt.raw(level)
    assert watcher.connect(**kept).session_present is True  # type: ignore[arg-type]
    again = watcher.expect(Publish)
    assert (again.payload, again.dup, again.packet_id) == (b"ack me", True, first.packet_id)
    watcher.send(Puback(again.packet_id))
    assert watcher.nothing_more()
    watcher.send(Disconnect())
    watcher.read_until_closed()

    # Acknowledged: not sent again.
    watcher = shared_mqtt.raw(level)
    assert watcher.connect(**kept).session_present is True  # type: ignore[arg-type]
    assert watcher.nothing_more()


@pytest.mark.parametrize("level", [4, 5])
def test_a_kept_session_resumes_outbound_qos2_where_it_stopped(
    shared_mqtt: MqttClients, level: int, unique: str
) -> None:
    kept = {"client_id": f"{unique}-half-done", "clean": False}
    if level == 5:
        kept["properties"] = Properties(session_expiry_interval=300)
    watcher = subscribed(shared_mqtt, "half/#", 2, level=level, **kept)
    publisher = logged_in(shared_mqtt, level)
    publisher.send(Publish("half/before-pubrec", b"one", 2, packet_id=1))
    publisher.send(Publish("half/after-pubrec", b"two", 2, packet_id=2))
    one = watcher.expect(Publish)
    two = watcher.expect(Publish)
    watcher.send(Pubrec(two.packet_id))
    assert watcher.expect(Pubrel) == Pubrel(two.packet_id)
    watcher.close()  # "one" not received as far as the broker knows; "two" awaits PUBCOMP

    watcher = shared_mqtt.raw(level)
    assert watcher.connect(**kept).session_present is True  # type: ignore[arg-type]
    packets = [watcher.recv(), watcher.recv()]
    assert Pubrel(two.packet_id) in packets
    resent = next(p for p in packets if isinstance(p, Publish))
    assert (resent.payload, resent.dup, resent.packet_id) == (b"one", True, one.packet_id)
    watcher.send(Pubcomp(two.packet_id))
    watcher.send(Pubrec(resent.packet_id))
    assert watcher.expect(Pubrel) == Pubrel(resent.packet_id)
    watcher.send(Pubcomp(resent.packet_id))
    assert watcher.nothing_more()


def test_v5_client_receive_maximum_bounds_unacknowledged_deliveries(
    shared_mqtt: MqttClients,
) -> None:
    watcher = logged_in(
        shared_mqtt, 5, client_id="narrow", properties=Properties(receive_maximum=2)
    )
    # The window is the connection's, across its subscriptions and QoS 1 and 2.
    watcher.send(Subscribe(1, (Subscription("window/a", 1), Subscription("window/b", 2))))
    assert watcher.expect(Suback).reason_codes == (1, 2)
    publisher = logged_in(shared_mqtt, 5)
    for i in range(6):
        topic, qos = ("window/a", 1) if i % 2 == 0 else ("window/b", 2)
        publisher.send(Publish(topic, f"{i}".encode(), qos, packet_id=i + 1))
    received = [watcher.expect(Publish), watcher.expect(Publish)]
    assert watcher.nothing_more()  # the window is full
    while len(received) < 6:
        # Completing one delivery lets exactly one more out.
        oldest = received[len(received) - 2]
        if oldest.qos == 1:
            watcher.send(Puback(oldest.packet_id))
        else:
            watcher.send(Pubrec(oldest.packet_id))
            assert watcher.expect(Pubrel) == Pubrel(oldest.packet_id)
            assert watcher.nothing_more(0.1)  # still in flight until PUBCOMP
            watcher.send(Pubcomp(oldest.packet_id))
        received.append(watcher.expect(Publish))
        assert watcher.nothing_more(0.1)
    # Each topic keeps its order (4.6: topics are ordered, not the connection).
    for topic, first in (("window/a", 0), ("window/b", 1)):
        wanted = [f"{i}".encode() for i in range(first, 6, 2)]
        assert [p.payload for p in received if p.topic == topic] == wanted


@pytest.mark.parametrize("level", [4, 5])
def test_puback_for_a_qos2_delivery_does_not_complete_it(
    shared_mqtt: MqttClients, level: int
) -> None:
    watcher = subscribed(shared_mqtt, "wrongack/#", 2, level=level, client_id="confused")
    publisher = logged_in(shared_mqtt, level)
    publisher.send(Publish("wrongack/t", b"two", 2, packet_id=1))
    delivered = watcher.expect(Publish)
    watcher.send(Puback(delivered.packet_id))  # wrong acknowledgement: ignored
    watcher.send(Pubrec(delivered.packet_id))
    assert watcher.expect(Pubrel) == Pubrel(delivered.packet_id)
    watcher.send(Pubcomp(delivered.packet_id))
    assert watcher.nothing_more()
