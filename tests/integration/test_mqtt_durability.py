"""MQTT durability with the broker as a real process, killed with SIGKILL and restarted.

A QoS 1/2 PUBLISH is acknowledged (PUBACK, PUBREC) only once it is stored, so every
acknowledged message reaches a persistent session after a ``kill -9``; QoS 2 exactly
once, in both directions. Retained messages and sessions survive too, and none of it
is on disk in clear.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sealmq.wire.mqtt import (
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from tests.integration.test_at_rest import encodings, protected_files
from tests.support import (
    TIMEOUT,
    BrokerProcess,
    MqttClients,
    ProcessBrokers,
    RawMqtt,
    paho_properties,
)

N = 100
V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


@pytest.fixture
def clients() -> Iterator[list[MqttClients]]:
    """Every MqttClients a test makes (one per broker run) is closed at teardown."""
    made: list[MqttClients] = []
    yield made
    for each in made:
        each.close_all()


def mqtt_of(broker: BrokerProcess, made: list[MqttClients]) -> MqttClients:
    each = MqttClients(broker.mqtt_port, broker.ca_file)
    made.append(each)
    return each


def kept_session(version: int, client_id: str) -> dict[str, object]:
    kept: dict[str, object] = {"version": version, "client_id": client_id, "clean": False}
    if version == 5:
        kept["properties"] = paho_properties("CONNECT", SessionExpiryInterval=3600)
    return kept


def raw_kept(mqtt: MqttClients, client_id: str, *, present: bool) -> RawMqtt:
    raw = mqtt.raw(4)
    connack = raw.connect(client_id, clean=False)
    assert (connack.reason_code, connack.session_present) == (0, present)
    return raw


def publish_acknowledged(mqtt: MqttClients, version: int, topic: str, qos: int) -> list[bytes]:
    """Publish N messages and wait until each is acknowledged (PUBACK, or PUBCOMP)."""
    publisher = mqtt.paho(version=version, client_id="producer")
    bodies = [f"{topic}-{i:04d}".encode() for i in range(N)]
    infos = [publisher.client.publish(topic, body, qos) for body in bodies]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
    return bodies


@pytest.mark.slow
@pytest.mark.parametrize("qos", [1, 2])
@V311_AND_V5
def test_acknowledged_messages_reach_a_persistent_session_after_kill9(
    processes: ProcessBrokers, clients: list[MqttClients], version: int, qos: int
) -> None:
    broker = processes.new(mqtt=True).start()
    mqtt = mqtt_of(broker, clients)
    kept = kept_session(version, "survivor")
    subscriber = mqtt.paho(**kept)
    assert subscriber.subscribe("durable/#", qos) == [qos]
    subscriber.disconnect()
    bodies = publish_acknowledged(mqtt, version, "durable/t", qos)

    broker.kill9()  # the producer is still connected
    broker.start()

    mqtt = mqtt_of(broker, clients)
    subscriber = mqtt.paho(**kept)
    assert subscriber.connack is not None and subscriber.connack.session_present is True
    got = subscriber.take(N)
    assert [m.payload for m in got] == bodies  # all, once each, in order
    assert {m.qos for m in got} == {qos}
    assert subscriber.nothing_more()


@pytest.mark.slow
def test_outbound_qos2_is_exactly_once_across_kill9(
    processes: ProcessBrokers, clients: list[MqttClients]
) -> None:
    broker = processes.new(mqtt=True).start()
    mqtt = mqtt_of(broker, clients)
    receiver = raw_kept(mqtt, "receiver", present=False)
    receiver.send(Subscribe(1, (Subscription("eo/#", 2),)))
    assert receiver.expect(Suback).reason_codes == (2,)
    bodies = publish_acknowledged(mqtt, 4, "eo/t", 2)

    # A receiver keeping QoS 2 state as the spec's method B: the message is handed on
    # at PUBREL, and a packet id waiting for PUBREL holds the message.
    waiting: dict[int, bytes] = {}
    delivered: list[bytes] = []

    def handle(packet: object, *, complete: bool = True) -> None:
        if isinstance(packet, Publish):
            waiting[packet.packet_id] = packet.payload
            receiver.send(Pubrec(packet.packet_id))
        elif isinstance(packet, Pubrel):
            if packet.packet_id in waiting:
                delivered.append(waiting.pop(packet.packet_id))
            if complete:
                receiver.send(Pubcomp(packet.packet_id))
        else:
            raise AssertionError(f"unexpected {packet!r}")

    # Before the crash: every PUBLISH in; 20 answered with PUBREC, 10 of them completed.
    publishes = [receiver.expect(Publish) for _ in range(N)]
    for packet in publishes:
        waiting[packet.packet_id] = packet.payload
    for packet in publishes[:20]:
        receiver.send(Pubrec(packet.packet_id))
    for i in range(20):
        handle(receiver.expect(Pubrel), complete=i < 10)
    assert len(delivered) == 20
    broker.kill9()
    broker.start()

    mqtt = mqtt_of(broker, clients)
    receiver = raw_kept(mqtt, "receiver", present=True)
    while len(delivered) < N:
        handle(receiver.recv())
    assert sorted(delivered) == bodies
    assert receiver.nothing_more()


@pytest.mark.slow
def test_unacknowledged_qos1_is_delivered_again_after_kill9(
    processes: ProcessBrokers, clients: list[MqttClients]
) -> None:
    broker = processes.new(mqtt=True).start()
    mqtt = mqtt_of(broker, clients)
    receiver = raw_kept(mqtt, "forgetful", present=False)
    receiver.send(Subscribe(1, (Subscription("al/#", 1),)))
    assert receiver.expect(Suback).reason_codes == (1,)
    bodies = publish_acknowledged(mqtt, 4, "al/t", 1)
    first = [receiver.expect(Publish) for _ in range(N)]
    for packet in first[: N // 2]:
        receiver.send(Puback(packet.packet_id))
    broker.kill9()
    broker.start()

    mqtt = mqtt_of(broker, clients)
    receiver = raw_kept(mqtt, "forgetful", present=True)
    unacked = set(bodies[N // 2 :])
    again: list[bytes] = []
    while not unacked <= set(again):
        packet = receiver.expect(Publish)
        again.append(packet.payload)
        receiver.send(Puback(packet.packet_id))
    # At least once: every message not acknowledged comes again (acknowledged ones may,
    # if the crash came before their PUBACK was stored), and nothing else.
    while not receiver.nothing_more():
        packet = receiver.expect(Publish)
        again.append(packet.payload)
        receiver.send(Puback(packet.packet_id))
    assert set(again) <= set(bodies)
    assert len(again) == len(set(again))
    assert [body for body in again if body in unacked] == bodies[N // 2 :]  # in order


@pytest.mark.slow
def test_inbound_qos2_is_exactly_once_across_kill9(
    processes: ProcessBrokers, clients: list[MqttClients]
) -> None:
    broker = processes.new(mqtt=True).start()
    mqtt = mqtt_of(broker, clients)
    subscriber = mqtt.paho(**kept_session(4, "listener"))
    assert subscriber.subscribe("in2/#", 2) == [2]
    subscriber.disconnect()

    publisher = raw_kept(mqtt, "sender", present=False)
    publisher.send(Publish("in2/t", b"completed before", 2, packet_id=10))
    assert publisher.expect(Pubrec) == Pubrec(10)
    publisher.send(Pubrel(10))
    assert publisher.expect(Pubcomp) == Pubcomp(10)
    publisher.send(Publish("in2/t", b"awaiting pubrel", 2, packet_id=9))
    assert publisher.expect(Pubrec) == Pubrec(9)  # stored: the broker owns it now
    broker.kill9()
    broker.start()

    mqtt = mqtt_of(broker, clients)
    publisher = raw_kept(mqtt, "sender", present=True)
    # The sender did not see PUBREC(9)'s effect survive: it resends, then releases.
    publisher.send(Publish("in2/t", b"awaiting pubrel", 2, dup=True, packet_id=9))
    assert publisher.expect(Pubrec) == Pubrec(9)
    publisher.send(Pubrel(9))
    assert publisher.expect(Pubcomp) == Pubcomp(9)
    # Packet id 10 was completed before the crash: using it again is a new message.
    publisher.send(Publish("in2/t", b"new with an old id", 2, packet_id=10))
    assert publisher.expect(Pubrec) == Pubrec(10)
    publisher.send(Pubrel(10))
    assert publisher.expect(Pubcomp) == Pubcomp(10)

    subscriber = mqtt.paho(**kept_session(4, "listener"))
    got = [m.payload for m in subscriber.take(3)]
    assert got == [b"completed before", b"awaiting pubrel", b"new with an old id"]
    assert subscriber.nothing_more()


@pytest.mark.slow
def test_retained_messages_and_sessions_survive_kill9(
    processes: ProcessBrokers, clients: list[MqttClients]
) -> None:
    broker = processes.new(mqtt=True).start()
    mqtt = mqtt_of(broker, clients)
    publisher = mqtt.paho(version=5, client_id="retainer")
    publisher.publish("r/zero", b"qos 0 retained", 0, retain=True)
    publisher.publish("r/cleared", b"soon gone", 1, retain=True)
    publisher.publish("r/cleared", b"", 1, retain=True)
    publisher.publish("r/kept", b"v1", 1, retain=True)
    # Acknowledged once stored, after everything before it (the journal keeps order).
    publisher.publish("r/kept", b"v2", 1, retain=True)  # replaces v1
    kept = kept_session(5, "sleeper")
    sleeper = mqtt.paho(**kept)
    assert sleeper.subscribe(
        "s/+", 1, properties=paho_properties("SUBSCRIBE", SubscriptionIdentifier=4)
    ) == [1]
    broker.kill9()
    broker.start()

    mqtt = mqtt_of(broker, clients)
    reader = mqtt.paho(version=5, client_id="reader")
    assert reader.subscribe("r/#", 1) == [1]
    got = {m.topic: (m.payload, m.retain) for m in reader.take(2)}
    assert got == {"r/kept": (b"v2", True), "r/zero": (b"qos 0 retained", True)}
    assert reader.nothing_more()

    sleeper = mqtt.paho(**kept)
    assert sleeper.connack is not None and sleeper.connack.session_present is True
    mqtt.paho(version=5).publish("s/x", b"after the crash", 1)
    message = sleeper.get()
    assert message.payload == b"after the crash"
    assert message.properties.SubscriptionIdentifier == [4]  # the options were kept too


# ----------------------------------------------------------------- at rest


TOKEN = "mq" + "7e3a9c"
MARKERS = {
    "topic": f"TopicMarker{TOKEN}",
    "payload": f"PayloadMarker{TOKEN}",
    "client id": f"ClientIdMarker{TOKEN}",
    "retained topic": f"RetainedTopicMarker{TOKEN}",
    "retained payload": f"RetainedPayloadMarker{TOKEN}",
    "user property name": f"userpropname{TOKEN}",
    "user property value": f"UserPropValue{TOKEN}",
    "content type": f"ContentTypeMarker{TOKEN}",
    "correlation data": f"CorrelationMarker{TOKEN}",
    "response topic": f"ResponseMarker{TOKEN}",
    "will topic": f"WillTopicMarker{TOKEN}",
    "will payload": f"WillPayloadMarker{TOKEN}",
    "filter": f"FilterMarker{TOKEN}",
}
#: What the log must not show (topics and client ids may appear in log lines).
SECRET_IN_LOGS = ("payload", "retained payload", "user property value", "will payload")


def leaks(broker: BrokerProcess) -> list[str]:
    files = {path: path.read_bytes() for path in protected_files(broker.data_dir)}
    return [
        f"{where} ({form}) in {path.relative_to(broker.data_dir)}"
        for where, marker in MARKERS.items()
        for form, needle in encodings(marker).items()
        for path, data in files.items()
        if needle in data
    ]


@pytest.mark.slow
def test_nothing_mqtt_clients_send_is_stored_or_logged_in_clear(
    processes: ProcessBrokers, clients: list[MqttClients]
) -> None:
    m = MARKERS
    broker = processes.new(mqtt=True, log_level='"debug"').start()
    mqtt = mqtt_of(broker, clients)
    topic = f"{m['topic']}/events"
    subscriber = mqtt.paho(**kept_session(5, m["client id"]))
    assert subscriber.subscribe(f"{m['topic']}/#", 2) == [2]
    assert subscriber.subscribe(f"{m['filter']}/+", 1) == [1]
    subscriber.disconnect()  # its messages wait, stored

    publisher = mqtt.paho(version=5, client_id="plain-publisher")
    props = paho_properties(
        "PUBLISH",
        UserProperty=[(m["user property name"], m["user property value"])],
        ContentType=m["content type"],
        CorrelationData=m["correlation data"].encode(),
        ResponseTopic=f"{m['response topic']}/r",
    )
    publisher.publish(topic, m["payload"] * 50, 2, properties=props)
    publisher.publish(topic, m["payload"], 1, properties=props)
    publisher.publish(f"{m['retained topic']}/x", m["retained payload"], 1, retain=True)
    # A will with QoS 1 to a durable subscriber is stored as a message too.
    raw = mqtt.raw(4)
    will = Will(f"{m['topic']}/{m['will topic']}", m["will payload"].encode(), 1)
    assert raw.connect("will-client", will=will).reason_code == 0
    raw.close()
    inbound = raw_kept(mqtt, "half-way", present=False)
    inbound.send(Publish(topic, m["payload"].encode(), 2, packet_id=5))
    assert inbound.expect(Pubrec) == Pubrec(5)
    publisher.publish("barrier/t", b"", 1)
    assert broker.stop() == 0

    assert leaks(broker) == []
    log = broker.output()
    assert [name for name in SECRET_IN_LOGS if m[name] in log] == []

    # Control: the scanned files really hold all of it.
    broker.start()
    mqtt = mqtt_of(broker, clients)
    subscriber = mqtt.paho(**kept_session(5, m["client id"]))
    got = subscriber.take(4)
    assert sorted(msg.payload for msg in got) == sorted(
        [
            m["payload"].encode() * 50,
            m["payload"].encode(),
            m["will payload"].encode(),
            m["payload"].encode(),
        ]
    )
    first = next(msg for msg in got if msg.qos == 2 and len(msg.payload) > 100)
    assert (m["user property name"], m["user property value"]) in first.properties.UserProperty
    reader = mqtt.paho(version=5)
    assert reader.subscribe(f"{m['retained topic']}/#", 1) == [1]
    assert reader.get().payload == m["retained payload"].encode()
    mqtt.close_all()
    assert broker.stop() == 0
    assert leaks(broker) == []
