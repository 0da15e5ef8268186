"""MQTT SUBSCRIBE/UNSUBSCRIBE and retained messages, through paho over TLS.

Wildcards ``+`` and ``#``, ``$``-topics left out of leading wildcards, overlapping
subscriptions, replacing a subscription, and retained messages set, replaced,
cleared and delivered on subscribe with the retain flag. Retained messages across
restarts and on disk are in ``test_mqtt_durability.py``.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import Publish, Suback, Subscribe, Subscription
from tests.support import BrokerThread, MqttClients, PahoClient, mqtt_settings

V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def drain_topics(client: PahoClient, n: int) -> list[str]:
    return sorted(message.topic for message in client.take(n))


@V311_AND_V5
def test_plus_and_hash_wildcards(mqtt: MqttClients, version: int) -> None:
    filters = {
        "sport/tennis/+": ["sport/tennis/player1", "sport/tennis/player2"],
        "sport/+/player1": ["sport/tennis/player1", "sport/golf/player1"],
        "sport/#": [
            "sport",
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/golf/player1",
            "sport/tennis/player1/ranking",
        ],
        "+/+": ["a/b"],
        "+": ["sport"],
        "#": [
            "sport",
            "a/b",
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/golf/player1",
            "sport/tennis/player1/ranking",
        ],
        "sport/tennis/player1": ["sport/tennis/player1"],
    }
    clients = {}
    for i, topic_filter in enumerate(filters):
        client = mqtt.paho(version=version, client_id=f"wild-{i}")
        assert client.subscribe(topic_filter, 1) == [1]
        clients[topic_filter] = client
    publisher = mqtt.paho(version=version)
    topics = [
        "sport",
        "a/b",
        "sport/tennis/player1",
        "sport/tennis/player2",
        "sport/golf/player1",
        "sport/tennis/player1/ranking",
    ]
    for topic in topics:
        publisher.publish(topic, topic, 1)
    for topic_filter, wanted in filters.items():
        client = clients[topic_filter]
        assert drain_topics(client, len(wanted)) == sorted(wanted), topic_filter
        assert client.nothing_more(), topic_filter


@V311_AND_V5
def test_dollar_topics_are_not_matched_by_leading_wildcards(
    mqtt: MqttClients, version: int
) -> None:
    everything = mqtt.paho(version=version, client_id="everything")
    assert everything.subscribe("#", 1) == [1]
    one_level = mqtt.paho(version=version, client_id="one-level")
    assert one_level.subscribe("+/info", 1) == [1]
    exact = mqtt.paho(version=version, client_id="exact")
    assert exact.subscribe("$SYS/info", 1) == [1]
    system = mqtt.paho(version=version, client_id="system")
    assert system.subscribe("$SYS/#", 1) == [1]

    publisher = mqtt.paho(version=version)
    publisher.publish("$SYS/info", b"internal", 1)
    publisher.publish("app/info", b"public", 1)
    assert [m.topic for m in everything.take(1)] == ["app/info"]
    assert [m.topic for m in one_level.take(1)] == ["app/info"]
    assert [m.topic for m in exact.take(1)] == ["$SYS/info"]
    assert [m.topic for m in system.take(1)] == ["$SYS/info"]
    assert all(c.nothing_more() for c in (everything, one_level, exact, system))


@V311_AND_V5
def test_granted_qos_is_what_was_asked(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version)
    assert client.subscribe_many([("g/0", 0), ("g/1", 1), ("g/2", 2)]) == [0, 1, 2]


@V311_AND_V5
def test_overlapping_subscriptions_deliver_at_least_the_highest_qos(
    mqtt: MqttClients, version: int
) -> None:
    client = mqtt.paho(version=version, client_id="overlap")
    assert client.subscribe("ov/#", 0) == [0]
    assert client.subscribe("ov/a", 2) == [2]
    mqtt.paho(version=version).publish("ov/a", b"both match", 2)
    # One copy per matching subscription, each at its own QoS (3.3.5 allows either).
    copies = client.take(2)
    assert sorted(m.qos for m in copies) == [0, 2]
    assert {m.payload for m in copies} == {b"both match"}
    assert client.nothing_more()


@V311_AND_V5
def test_subscribing_again_replaces_the_subscription(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version, client_id="resub")
    assert client.subscribe("re/t", 0) == [0]
    assert client.subscribe("re/t", 2) == [2]
    mqtt.paho(version=version).publish("re/t", b"once", 2)
    message = client.get()
    assert (message.payload, message.qos) == (b"once", 2)
    assert client.nothing_more()


@V311_AND_V5
def test_unsubscribe_stops_delivery(mqtt: MqttClients, version: int) -> None:
    client = mqtt.paho(version=version, client_id="unsub")
    assert client.subscribe_many([("un/a", 1), ("un/b", 1)]) == [1, 1]
    codes = client.unsubscribe("un/a", "un/never")
    if version == 5:
        assert codes == [0x00, 0x11]  # success, no subscription existed
    publisher = mqtt.paho(version=version)
    publisher.publish("un/a", b"gone", 1)
    publisher.publish("un/b", b"kept", 1)
    assert client.get().payload == b"kept"
    assert client.nothing_more()


def test_suback_comes_before_the_retained_messages(mqtt: MqttClients) -> None:
    publisher = mqtt.paho(version=4)
    for i in range(5):
        publisher.publish(f"order/retained/{i}", f"r{i}", 1, retain=True)
    raw = mqtt.raw(4)
    assert raw.connect("orderly").reason_code == 0
    raw.send(Subscribe(1, (Subscription("order/retained/#", 1),)))
    assert raw.expect(Suback).reason_codes == (1,)
    retained = [raw.expect(Publish) for _ in range(5)]
    assert all(p.retain for p in retained)


# ----------------------------------------------------------------- retained


@V311_AND_V5
def test_retained_message_set_replace_and_clear(mqtt: MqttClients, version: int) -> None:
    publisher = mqtt.paho(version=version, client_id="retainer")
    live = mqtt.paho(version=version, client_id="live")
    assert live.subscribe("ret/#", 1) == [1]

    publisher.publish("ret/state", b"first", 1, retain=True)
    publisher.publish("ret/state", b"second", 1, retain=True)  # replaces it
    # Live deliveries never carry the retain flag (3.1.1: MQTT-3.3.1-9).
    assert [(m.payload, m.retain) for m in live.take(2)] == [(b"first", False), (b"second", False)]

    late = mqtt.paho(version=version, client_id="late")
    assert late.subscribe("ret/state", 1) == [1]
    message = late.get()
    assert (message.payload, message.retain, message.qos) == (b"second", True, 1)
    assert late.nothing_more()

    publisher.publish("ret/state", b"", 1, retain=True)  # clears it
    cleared = live.get()
    assert (cleared.payload, cleared.retain) == (b"", False)  # still delivered, as a message
    later = mqtt.paho(version=version, client_id="later")
    assert later.subscribe("ret/state", 1) == [1]
    assert later.nothing_more()


@V311_AND_V5
def test_retained_messages_of_every_matching_topic_come_on_subscribe(
    mqtt: MqttClients, version: int
) -> None:
    publisher = mqtt.paho(version=version)
    publisher.publish("rooms/kitchen/temp", b"21", 0, retain=True)
    publisher.publish("rooms/hall/temp", b"18", 2, retain=True)
    publisher.publish("rooms/hall/light", b"on", 1, retain=True)
    publisher.publish("rooms/hall/noise", b"not retained", 1)

    client = mqtt.paho(version=version, client_id="rooms")
    assert client.subscribe("rooms/+/temp", 2) == [2]
    got = {m.topic: (m.payload, m.qos, m.retain) for m in client.take(2)}
    # Delivered at the lower of the subscription's and the retained message's QoS.
    assert got == {"rooms/kitchen/temp": (b"21", 0, True), "rooms/hall/temp": (b"18", 2, True)}
    assert client.nothing_more()

    low = mqtt.paho(version=version, client_id="low")
    assert low.subscribe("rooms/#", 0) == [0]
    assert {(m.topic, m.qos) for m in low.take(3)} == {
        ("rooms/kitchen/temp", 0),
        ("rooms/hall/temp", 0),
        ("rooms/hall/light", 0),
    }
    assert low.nothing_more()


@V311_AND_V5
def test_retained_messages_survive_a_clean_restart(
    tmp_path_factory: pytest.TempPathFactory, version: int
) -> None:
    settings = mqtt_settings(tmp_path_factory.mktemp("restart") / "data")
    broker = BrokerThread(settings).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        publisher = clients.paho(version=version)
        publisher.publish("kept/gone", b"soon cleared", 0, retain=True)
        publisher.publish("kept/gone", b"", 0, retain=True)
        # Acknowledged, so the QoS 0 ones before it on this connection were handled too.
        publisher.publish("kept/t", b"across restarts", 1, retain=True)
    finally:
        clients.close_all()
        broker.stop()
    broker = BrokerThread(settings).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        client = clients.paho(version=version)
        assert client.subscribe("kept/#", 1) == [1]
        message = client.get()
        assert (message.topic, message.payload, message.retain) == (
            "kept/t",
            b"across restarts",
            True,
        )
        assert client.nothing_more()
    finally:
        clients.close_all()
        broker.stop()
