"""Topic fan-out: one message, many subscribers, each getting the frame meant for it.

A QoS 0 PUBLISH and the shared part of a STOMP MESSAGE are encoded once per message
and reused for every subscriber that gets the same bytes (``sealmq.adapters.shared``).
These tests check, with the clients users use, that what differs per subscriber still
does: the STOMP ``subscription`` and ``ack`` headers and each version's escaping, the
MQTT subscription identifier, retain flag and protocol level, and that one message's
bytes never leak into the next one's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from sealmq.wire.mqtt import MqttCodec
from sealmq.wire.stomp import StompCodec
from tests.support import BrokerThread, MqttClients, paho_properties, stomp_connect, wait_until


def test_stomp_topic_subscribers_of_every_version_get_their_own_headers(
    mqtt_broker: BrokerThread,
) -> None:
    port, ca = mqtt_broker.stomp_port, mqtt_broker.ca_file
    subscribers = []
    for version, sub_id, ack in [
        ("1.0", "ten", "auto"),
        ("1.1", "eleven", "client-individual"),
        ("1.2", "twelve-a", "auto"),
        ("1.2", "twelve-b", "client-individual"),
    ]:
        conn, got = stomp_connect(port, ca, version=version)
        conn.subscribe("/topic/fan.out", id=sub_id, ack=ack)
        subscribers.append((version, sub_id, ack, conn, got))
    # Frames are handled in order: a receipt for a later SEND means the SUBSCRIBE is in place.
    for _, _, _, conn, _got in subscribers:
        conn.send("/queue/ready", "x", receipt="ready")
    for _, _, _, _, got in subscribers:
        wait_until(lambda got=got: "ready" in got.receipts, what="subscribed")
    producer, _ = stomp_connect(port, ca)
    # A property with a ':' is escaped as '\c' in 1.1 and 1.2 but sent raw in 1.0.
    for i in range(3):
        producer.send(
            "/topic/fan.out", f"message {i}", headers={"colour": f"blue:{i}", "n": str(i)}
        )
    for version, sub_id, ack, conn, got in subscribers:
        frames = got.take(3)
        assert [f.body for f in frames] == ["message 0", "message 1", "message 2"]
        ids = set()
        for i, frame in enumerate(frames):
            headers = frame.headers
            assert headers["subscription"] == sub_id, version
            assert headers["destination"] == "/topic/fan.out"
            assert headers["colour"] == f"blue:{i}", version
            assert headers["n"] == str(i)
            assert headers["persistent"] == "false"
            ids.add(headers["message-id"])
            if version == "1.2" and ack == "client-individual":
                assert headers["ack"].endswith(headers["message-id"])
                conn.ack(headers["ack"])
            elif ack == "client-individual":
                conn.ack(headers["message-id"], sub_id)
            else:
                assert "ack" not in headers
        assert len(ids) == 3
    # Every ack was accepted: each connection still answers with a receipt, no ERROR.
    for _, _, _, conn, _got in subscribers:
        conn.send("/queue/done", "x", receipt="done")
    for version, _, _, conn, got in subscribers:
        wait_until(lambda got=got: "done" in got.receipts, what=f"receipt ({version})")
        assert got.errors.empty(), version
        assert got.nothing_more(0.1), version
        conn.disconnect()
    producer.disconnect()


def test_stomp_two_subscriptions_of_one_connection_each_get_the_message(
    mqtt_broker: BrokerThread,
) -> None:
    """Two subscriptions of one connection to the same topic each get it, under their id."""
    conn, got = stomp_connect(mqtt_broker.stomp_port, mqtt_broker.ca_file)
    conn.subscribe("/topic/twice", id="one", ack="auto")
    conn.subscribe("/topic/twice", id="two", ack="client-individual")
    conn.send("/topic/twice", "hello")
    by_sub = {f.headers["subscription"]: f for f in got.take(2)}
    assert sorted(by_sub) == ["one", "two"]
    assert by_sub["one"].headers["message-id"] == by_sub["two"].headers["message-id"]
    assert "ack" not in by_sub["one"].headers
    conn.ack(by_sub["two"].headers["ack"], receipt="acked")
    wait_until(lambda: "acked" in got.receipts, what="ack receipt")
    assert got.errors.empty()
    conn.disconnect()


def test_mqtt_qos0_subscribers_of_every_kind_get_their_own_publish(mqtt: MqttClients) -> None:
    plain_v311 = mqtt.paho(version=4, client_id="v311")
    plain_v31 = mqtt.paho(version=3, client_id="v31")
    plain_v5 = mqtt.paho(version=5, client_id="v5")
    with_id = mqtt.paho(version=5, client_id="v5-id")
    keeps_retain = mqtt.paho(version=5, client_id="v5-rap")
    at_qos1 = mqtt.paho(version=5, client_id="v5-qos1")
    assert plain_v311.subscribe("fan/+", 0) == [0]
    assert plain_v31.subscribe("fan/+", 0) == [0]
    assert plain_v5.subscribe("fan/+", 0) == [0]
    sub_id = paho_properties("SUBSCRIBE", SubscriptionIdentifier=7)
    assert with_id.subscribe("fan/+", 0, properties=sub_id) == [0]
    options = SubscribeOptions(qos=0, retainAsPublished=True)
    assert keeps_retain.subscribe("fan/+", options=options) == [0]
    assert at_qos1.subscribe("fan/+", 1) == [1]
    publisher = mqtt.paho(version=5, client_id="pub")
    props = paho_properties("PUBLISH", UserProperty=[("k", "v")], ContentType="text/plain")
    publisher.publish("fan/a", b"first", 0, properties=props)
    publisher.publish("fan/b", b"second", 0, retain=True)
    publisher.publish("fan/a", b"third", 0)
    everyone = [plain_v311, plain_v31, plain_v5, with_id, keeps_retain, at_qos1]
    for client in everyone:
        got = client.take(3)
        assert [(m.topic, m.payload) for m in got] == [
            ("fan/a", b"first"),
            ("fan/b", b"second"),
            ("fan/a", b"third"),
        ], client.client._client_id
        assert all(m.qos == 0 for m in got)
        # Only a retain-as-published subscription sees the retain flag of a live message.
        assert [m.retain for m in got] == [False, client is keeps_retain, False]
        if client.version == 5:
            first = got[0].properties
            assert first.UserProperty == [("k", "v")]
            assert first.ContentType == "text/plain"
            ids = [getattr(m.properties, "SubscriptionIdentifier", None) for m in got]
            assert ids == ([[7]] * 3 if client is with_id else [None] * 3)
    publisher.publish("fan/b", b"", 0, retain=True)  # clear the retained message


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> Counter[str]:
    """Count calls of ``cls.name`` (the broker runs in this process), by protocol level."""
    calls: Counter[str] = Counter()
    original: Callable[..., Any] = getattr(cls, name)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        level = getattr(self, "protocol_level", None) or getattr(self, "version", None)
        calls[str(level)] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_a_qos0_publish_is_encoded_once_per_message_and_protocol_level(
    mqtt: MqttClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = _count_calls(monkeypatch, MqttCodec, "encode_publish")
    v311 = [mqtt.paho(version=4, client_id=f"v311-{i}") for i in range(5)]
    v5 = [mqtt.paho(version=5, client_id=f"v5-{i}") for i in range(3)]
    for client in v311 + v5:
        assert client.subscribe("once/#", 0) == [0]
    publisher = mqtt.paho(version=4, client_id="pub")
    for i in range(4):
        publisher.publish("once/x", b"m%d" % i, 0)
    for client in v311 + v5:
        assert [m.payload for m in client.take(4)] == [b"m0", b"m1", b"m2", b"m3"]
    # Eight subscribers, four messages: one encoding per message for each level.
    assert encoded == Counter({"4": 4, "5": 4})


def test_a_stomp_message_is_encoded_once_per_message_and_version(
    mqtt_broker: BrokerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = _count_calls(monkeypatch, StompCodec, "encode_message_tail")
    port, ca = mqtt_broker.stomp_port, mqtt_broker.ca_file
    subscribers = []
    for i, version in enumerate(["1.2"] * 5 + ["1.0"] * 2):
        conn, got = stomp_connect(port, ca, version=version)
        conn.subscribe("/topic/once", id=f"s{i}", ack="auto", receipt="subscribed")
        wait_until(lambda got=got: "subscribed" in got.receipts, what="subscribed")
        subscribers.append((conn, got))
    producer, _ = stomp_connect(port, ca)
    for i in range(4):
        producer.send("/topic/once", f"m{i}")
    for conn, got in subscribers:
        assert [f.body for f in got.take(4)] == ["m0", "m1", "m2", "m3"]
        conn.disconnect()
    producer.disconnect()
    assert encoded == Counter({"1.2": 4, "1.0": 4})
