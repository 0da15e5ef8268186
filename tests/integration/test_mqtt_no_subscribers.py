"""MQTT 5 PUBACK/PUBREC reason 0x10 No matching subscribers (issue #8; MQTT 5 3.4.2.1).

"The message is accepted but there are no subscribers": sent when a QoS 1/2 PUBLISH
reaches no subscription at all. A retained copy kept for later subscribers does not
count; an offline persistent session's subscription, a STOMP subscriber or a shared
subscription does. MQTT 3.1.1 has no reason codes: its PUBACK stays as it was. paho-mqtt
reports the PUBACK's reason code in ``on_publish`` (CallbackAPIVersion.VERSION2).
"""

from __future__ import annotations

from paho.mqtt.subscribeoptions import SubscribeOptions

from sealmq.wire.mqtt import Pubcomp, Publish, Pubrec, Pubrel
from tests.support import BrokerThread, MqttClients, paho_properties, stomp_connect, wait_until

NO_MATCHING_SUBSCRIBERS = 0x10


def test_qos1_to_a_topic_nobody_subscribes_gets_0x10(mqtt: MqttClients) -> None:
    publisher = mqtt.paho(version=5)
    assert publisher.publish("lonely/t", b"anyone?", 1) == NO_MATCHING_SUBSCRIBERS
    subscriber = mqtt.paho(version=5)
    assert subscriber.subscribe("lonely/#", 1) == [1]
    assert publisher.publish("lonely/t", b"someone", 1) == 0
    assert subscriber.get().payload == b"someone"


def test_qos2_to_a_topic_nobody_subscribes_gets_a_pubrec_with_0x10(mqtt: MqttClients) -> None:
    raw = mqtt.raw(5)
    assert raw.connect("qos2-lonely").reason_code == 0
    raw.send(Publish("lonely/two", b"x", 2, packet_id=7))
    pubrec = raw.expect(Pubrec)
    assert (pubrec.packet_id, pubrec.reason_code) == (7, NO_MATCHING_SUBSCRIBERS)
    raw.send(Pubrel(7))  # 0x10 is a success: the flow completes
    assert raw.expect(Pubcomp) == Pubcomp(7)


def test_a_retained_message_nobody_subscribes_to_yet_gets_0x10_and_is_kept(
    mqtt: MqttClients,
) -> None:
    publisher = mqtt.paho(version=5)
    assert publisher.publish("kept/state", b"on", 1, retain=True) == NO_MATCHING_SUBSCRIBERS
    later = mqtt.paho(version=5)
    assert later.subscribe("kept/state", 1) == [1]
    message = later.get()
    assert (message.payload, message.retain) == (b"on", True)


def test_an_offline_persistent_session_is_a_subscriber(mqtt: MqttClients) -> None:
    session = {
        "version": 5,
        "client_id": "offline-sub",
        "clean": False,
        "properties": paho_properties("CONNECT", SessionExpiryInterval=300),
    }
    away = mqtt.paho(**session)
    assert away.subscribe("offline/t", 1) == [1]
    away.disconnect()
    assert mqtt.paho(version=5).publish("offline/t", b"queued", 1) == 0
    assert mqtt.paho(**session).get().payload == b"queued"


def test_only_a_no_local_subscription_of_the_publisher_itself_gets_0x10(
    mqtt: MqttClients,
) -> None:
    client = mqtt.paho(version=5)
    assert client.subscribe("echo/t", options=SubscribeOptions(qos=1, noLocal=True)) == [1]
    assert client.publish("echo/t", b"to myself", 1) == NO_MATCHING_SUBSCRIBERS
    assert mqtt.paho(version=5).publish("echo/t", b"from another", 1) == 0
    assert client.get().payload == b"from another"


def test_a_stomp_subscriber_counts(mqtt: MqttClients, mqtt_broker: BrokerThread) -> None:
    conn, got = stomp_connect(mqtt_broker.stomp_port, mqtt_broker.ca_file)
    conn.subscribe("/topic/cross.t", id="s", ack="auto", receipt="sub")
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    assert mqtt.paho(version=5).publish("cross/t", b"to stomp", 1) == 0
    assert got.get().body == "to stomp"
    conn.disconnect()


def test_a_shared_subscription_counts(mqtt: MqttClients) -> None:
    member = mqtt.paho(version=5)
    assert member.subscribe("$share/workers/jobs/new", 1) == [1]
    assert mqtt.paho(version=5).publish("jobs/new", b"job", 1) == 0
    assert member.get().payload == b"job"
