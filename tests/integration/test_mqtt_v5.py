"""MQTT 5 over TLS: properties, reason codes, subscription options, shared subscriptions,
topic aliases, flow and size limits, DISCONNECT both ways, AUTH.

paho-mqtt 2.x (MQTTv5) for what an application sees; ``RawMqtt`` where the exact
packet matters (reason codes and strings, aliases on the wire). Most tests share one
broker (``shared_mqtt``), each on topics and client ids of its own.
"""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from sealmq.config import LimitSettings
from sealmq.wire.mqtt import (
    Auth,
    Connect,
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
    Unsuback,
    Unsubscribe,
)
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    MqttClients,
    PahoClient,
    RawMqtt,
    mqtt_settings,
    paho_properties,
)


def publish_props(**values: object) -> object:
    return paho_properties("PUBLISH", **values)


def raw_client(mqtt: MqttClients, client_id: str = "", **props: object) -> RawMqtt:
    raw = mqtt.raw(5)
    assert raw.connect(client_id, properties=Properties(**props)).reason_code == 0  # type: ignore[arg-type]
    return raw


def take_from_any(clients: list[PahoClient], n: int) -> list[list[bytes]]:
    """``n`` messages in all, from whichever client gets them; the payloads per client."""
    got: list[list[bytes]] = [[] for _ in clients]
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, got)) < n:
        assert time.monotonic() < deadline, f"only {got} arrived"
        for i, client in enumerate(clients):
            with contextlib.suppress(queue.Empty):
                got[i].append(client.messages.get(timeout=0.01).payload)
    return got


# ----------------------------------------------------------------- message properties


def test_message_properties_reach_the_subscriber(shared_mqtt: MqttClients) -> None:
    subscriber = shared_mqtt.paho(client_id="props")
    assert subscriber.subscribe("props/t", 1) == [1]
    props = publish_props(
        ContentType="application/json",
        ResponseTopic="props/replies",
        CorrelationData=b"\x00\x01corr",
        UserProperty=[("tenant", "acme"), ("trace", "t-1")],
        PayloadFormatIndicator=1,
        MessageExpiryInterval=3600,
    )
    shared_mqtt.paho().publish("props/t", b'{"a": 1}', 1, properties=props)
    message = subscriber.get()
    got = message.properties
    assert message.payload == b'{"a": 1}'
    assert got.ContentType == "application/json"
    assert got.ResponseTopic == "props/replies"
    assert got.CorrelationData == b"\x00\x01corr"
    assert {("tenant", "acme"), ("trace", "t-1")} <= set(got.UserProperty)
    assert got.PayloadFormatIndicator == 1
    assert 3590 <= got.MessageExpiryInterval <= 3600  # what is left of it


def test_no_properties_in_means_none_out(shared_mqtt: MqttClients) -> None:
    subscriber = raw_client(shared_mqtt, "bare")
    subscriber.send(Subscribe(1, (Subscription("bare/t", 1),)))
    subscriber.expect(Suback)
    shared_mqtt.paho().publish("bare/t", b"plain", 1)
    message = subscriber.expect(Publish)
    assert message.properties == Properties()


def test_an_expired_message_is_not_delivered(shared_mqtt: MqttClients) -> None:
    kept = {
        "client_id": "slow-reader",
        "clean": False,
        "properties": paho_properties("CONNECT", SessionExpiryInterval=300),
    }
    reader = shared_mqtt.paho(**kept)
    assert reader.subscribe("expiry/t", 1) == [1]
    reader.disconnect()
    publisher = shared_mqtt.paho()
    publisher.publish(
        "expiry/t", b"short-lived", 1, properties=publish_props(MessageExpiryInterval=1)
    )
    publisher.publish("expiry/t", b"lasting", 1)
    time.sleep(1.2)  # the expiry interval itself is what is tested
    reader = shared_mqtt.paho(**kept)
    assert reader.get().payload == b"lasting"
    assert reader.nothing_more()


# ----------------------------------------------------------------- subscriptions


def test_subscription_identifiers_name_the_matching_subscriptions(shared_mqtt: MqttClients) -> None:
    client = shared_mqtt.paho(client_id="sub-ids")
    ids = {"ids/#": 7, "ids/a": 300_000}
    for topic_filter, identifier in ids.items():
        props = paho_properties("SUBSCRIBE", SubscriptionIdentifier=identifier)
        assert client.subscribe(topic_filter, 1, properties=props) == [1]
    shared_mqtt.paho().publish("ids/a", b"x", 1)
    shared_mqtt.paho().publish("ids/b", b"y", 1)
    got = sorted((m.payload, tuple(m.properties.SubscriptionIdentifier)) for m in client.take(3))
    assert got == [(b"x", (7,)), (b"x", (300_000,)), (b"y", (7,))]


def test_no_local_skips_the_clients_own_messages(shared_mqtt: MqttClients) -> None:
    chatty = shared_mqtt.paho(client_id="chatty")
    options = SubscribeOptions(qos=1, noLocal=True)
    assert chatty.subscribe("chat/room", options=options) == [1]
    chatty.publish("chat/room", b"from me", 1)
    shared_mqtt.paho().publish("chat/room", b"from someone else", 1)
    assert chatty.get().payload == b"from someone else"
    assert chatty.nothing_more()


def test_retain_as_published_keeps_the_flag_on_live_messages(shared_mqtt: MqttClients) -> None:
    keeps = shared_mqtt.paho(client_id="keeps")
    assert keeps.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True)) == [1]
    clears = shared_mqtt.paho(client_id="clears")
    assert clears.subscribe("rap/t", options=SubscribeOptions(qos=1)) == [1]
    shared_mqtt.paho().publish("rap/t", b"state", 1, retain=True)
    assert keeps.get().retain is True
    assert clears.get().retain is False


@pytest.mark.parametrize(
    ("handling", "on_first", "on_again"),
    [
        (SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE, True, True),
        (SubscribeOptions.RETAIN_SEND_IF_NEW_SUB, True, False),
        (SubscribeOptions.RETAIN_DO_NOT_SEND, False, False),
    ],
    ids=["0-always", "1-if-new", "2-never"],
)
def test_retain_handling(
    shared_mqtt: MqttClients, handling: int, on_first: bool, on_again: bool
) -> None:
    shared_mqtt.paho().publish("rh/t", b"retained", 1, retain=True)
    client = shared_mqtt.paho(client_id="rh")
    options = SubscribeOptions(qos=1, retainHandling=handling)
    for wanted in (on_first, on_again):
        assert client.subscribe("rh/t", options=options) == [1]
        if wanted:
            message = client.get()
            assert (message.payload, message.retain) == (b"retained", True)
        assert client.nothing_more()


def test_shared_subscription_spreads_messages_over_its_members(shared_mqtt: MqttClients) -> None:
    members = [shared_mqtt.paho(client_id=f"worker-{i}") for i in range(2)]
    for member in members:
        assert member.subscribe("$share/workers/jobs/#", 1) == [1]
    other_group = shared_mqtt.paho(client_id="auditor")
    assert other_group.subscribe("$share/audit/jobs/#", 1) == [1]
    everyone = shared_mqtt.paho(client_id="everyone")
    assert everyone.subscribe("jobs/#", 1) == [1]

    publisher = shared_mqtt.paho()
    jobs = [f"job-{i}".encode() for i in range(10)]
    for job in jobs:
        publisher.publish("jobs/new", job, 1)
    assert sorted(m.payload for m in everyone.take(10)) == sorted(jobs)
    assert sorted(m.payload for m in other_group.take(10)) == sorted(jobs)
    per_member = take_from_any(members, len(jobs))
    # Every job to exactly one member of the group, and both members got work.
    assert sorted(job for got in per_member for job in got) == sorted(jobs)
    assert all(per_member), per_member
    assert all(member.nothing_more() for member in members)


def test_shared_subscription_gets_no_retained_messages(shared_mqtt: MqttClients) -> None:
    shared_mqtt.paho().publish("sr/t", b"retained", 1, retain=True)
    member = shared_mqtt.paho(client_id="member")
    assert member.subscribe("$share/g/sr/t", 1) == [1]
    assert member.nothing_more()


def test_shared_subscription_filter_without_a_group_is_refused(shared_mqtt: MqttClients) -> None:
    raw = raw_client(shared_mqtt)
    raw.send(Subscribe(1, (Subscription("$share/g", 1),)))
    closing = raw.read_until_closed()
    assert [p.reason_code for p in closing if isinstance(p, Disconnect)] == [0x81]


# ----------------------------------------------------------------- topic aliases


def test_topic_aliases_from_the_client(shared_mqtt: MqttClients) -> None:
    subscriber = shared_mqtt.paho(client_id="alias-in")
    assert subscriber.subscribe("alias/#", 1) == [1]
    publisher = shared_mqtt.paho(client_id="aliaser")
    publisher.publish("alias/long/topic/name", b"1", 1, properties=publish_props(TopicAlias=3))
    publisher.publish("", b"2", 1, properties=publish_props(TopicAlias=3))
    publisher.publish("alias/other", b"3", 1, properties=publish_props(TopicAlias=3))  # remapped
    publisher.publish("", b"4", 1, properties=publish_props(TopicAlias=3))
    assert [(m.topic, m.payload) for m in subscriber.take(4)] == [
        ("alias/long/topic/name", b"1"),
        ("alias/long/topic/name", b"2"),
        ("alias/other", b"3"),
        ("alias/other", b"4"),
    ]


@pytest.mark.parametrize(
    ("topic", "alias", "code"),
    [("", 5, 0x82), ("alias/t", 0, 0x94), ("alias/t", 65, 0x94)],
    ids=["unknown alias", "alias 0", "above the maximum"],
)
def test_bad_topic_alias_is_refused(
    shared_mqtt: MqttClients, topic: str, alias: int, code: int
) -> None:
    raw = raw_client(shared_mqtt)
    raw.send(Publish(topic, b"x", 1, packet_id=1, properties=Properties(topic_alias=alias)))
    closing = raw.read_until_closed()
    assert [p.reason_code for p in closing if isinstance(p, Disconnect)] == [code]


def test_topic_aliases_to_the_client(shared_mqtt: MqttClients) -> None:
    subscriber = shared_mqtt.paho(
        client_id="alias-out", properties=paho_properties("CONNECT", TopicAliasMaximum=1)
    )
    assert subscriber.subscribe("out/#", 1) == [1]
    publisher = shared_mqtt.paho()
    for topic in ("out/a", "out/a", "out/b", "out/a"):
        publisher.publish(topic, topic, 1)
    got = [
        (m.topic, m.payload, getattr(m.properties, "TopicAlias", None)) for m in subscriber.take(4)
    ]
    # paho does not resolve aliases itself: the first use carries the topic, later ones
    # only the alias; with one alias allowed, "out/b" goes with its name.
    assert got == [
        ("out/a", b"out/a", 1),
        ("", b"out/a", 1),
        ("out/b", b"out/b", None),
        ("", b"out/a", 1),
    ]


def test_no_topic_aliases_to_a_client_that_allows_none(shared_mqtt: MqttClients) -> None:
    subscriber = raw_client(shared_mqtt, "no-alias")
    subscriber.send(Subscribe(1, (Subscription("na/#", 0),)))
    subscriber.expect(Suback)
    for _ in range(3):
        shared_mqtt.paho().publish("na/t", b"x", 0)
    assert all(subscriber.expect(Publish).topic == "na/t" for _ in range(3))


# ----------------------------------------------------------------- sizes


def test_messages_over_the_clients_maximum_packet_size_are_dropped(
    shared_mqtt: MqttClients,
) -> None:
    small = shared_mqtt.paho(
        client_id="small", properties=paho_properties("CONNECT", MaximumPacketSize=256)
    )
    assert small.subscribe("size/#", 1) == [1]
    publisher = shared_mqtt.paho()
    publisher.publish("size/t", b"b" * 1000, 1)
    publisher.publish("size/t", b"fits", 1)
    assert small.get().payload == b"fits"
    assert small.nothing_more()


def test_packets_over_the_configured_maximum_are_refused(tmp_path: Path) -> None:
    limits = LimitSettings(mqtt_max_packet_size=2048)
    broker = BrokerThread(mqtt_settings(tmp_path / "data", limits=limits)).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        raw = clients.raw(5)
        connack = raw.connect("big")
        assert connack.properties.maximum_packet_size == 2048
        raw.send(Publish("size/t", b"x" * 1900, 1, packet_id=1))
        assert raw.expect(Puback).packet_id == 1
        raw.send(Publish("size/t", b"x" * 4096, 1, packet_id=2))
        closing = raw.read_until_closed()
        assert [p.reason_code for p in closing if isinstance(p, Disconnect)] == [0x95]

        v311 = clients.raw(4)
        assert v311.connect("big-v311").reason_code == 0
        v311.send(Publish("size/t", b"x" * 4096, 1, packet_id=1))
        assert v311.read_until_closed() == []

        fine = clients.paho(client_id="fine")
        assert fine.subscribe("size/t", 1) == [1]
        clients.paho().publish("size/t", b"small", 1)
        assert fine.get().payload == b"small"
    finally:
        clients.close_all()
        broker.stop()


# ----------------------------------------------------------------- reason codes


def test_acks_carry_reason_codes_and_reason_strings(shared_mqtt: MqttClients) -> None:
    raw = raw_client(shared_mqtt, "reasons")
    raw.send(Subscribe(1, (Subscription("ok/#", 1), Subscription("bad/*/level", 1))))
    suback = raw.expect(Suback)
    assert suback.reason_codes == (1, 0x8F)  # topic filter invalid: "*" is a core wildcard
    assert suback.properties.reason_string

    raw.send(Unsubscribe(2, ("ok/#", "never/subscribed")))
    assert raw.expect(Unsuback).reason_codes == (0x00, 0x11)

    raw.send(Publish("bad/*", b"x", 1, packet_id=3))
    puback = raw.expect(Puback)
    assert (puback.packet_id, puback.reason_code) == (3, 0x90)  # topic name invalid
    assert puback.properties.reason_string
    raw.send(Publish("bad/>", b"x", 2, packet_id=4))
    pubrec = raw.expect(Pubrec)
    assert (pubrec.packet_id, pubrec.reason_code) == (4, 0x90)

    raw.send(Publish("ok/t", b"x", 1, packet_id=5))
    assert raw.expect(Puback) == Puback(5, 0x10)  # accepted; ok/# was unsubscribed
    assert raw.nothing_more()


def test_no_reason_strings_when_the_client_asks_for_no_problem_information(
    shared_mqtt: MqttClients,
) -> None:
    raw = raw_client(shared_mqtt, "quiet", request_problem_information=0)
    raw.send(Subscribe(1, (Subscription("bad/*", 1),)))
    suback = raw.expect(Suback)
    assert (suback.reason_codes, suback.properties) == ((0x8F,), Properties())
    raw.send(Publish("bad/*", b"x", 1, packet_id=2))
    puback = raw.expect(Puback)
    assert (puback.reason_code, puback.properties) == (0x90, Properties())
    raw.send(Pubrel(3))
    pubcomp = raw.expect(Pubcomp)
    assert (pubcomp.reason_code, pubcomp.properties) == (0x92, Properties())


def test_server_shutdown_is_announced_with_its_reason(tmp_path: Path) -> None:
    broker = BrokerThread(mqtt_settings(tmp_path / "data")).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        client = clients.paho(client_id="told")
        raw = clients.raw(5)
        assert raw.connect("told-raw").reason_code == 0
        broker.stop()
        assert client.wait_disconnected() == 0x8B  # server shutting down
        closing = raw.read_until_closed()
        assert [p.reason_code for p in closing if isinstance(p, Disconnect)] == [0x8B]
    finally:
        clients.close_all()
        broker.stop()


# ----------------------------------------------------------------- AUTH


def test_an_authentication_method_is_refused_with_a_reason_code(shared_mqtt: MqttClients) -> None:
    raw = shared_mqtt.raw(5)
    props = Properties(authentication_method="SCRAM-SHA-256", authentication_data=b"client-first")
    raw.send(Connect(5, True, 60, "scram", None, USER, PASSWORD.encode(), props))
    connack = raw.recv()
    assert connack.reason_code == 0x8C  # type: ignore[union-attr]  # bad authentication method
    assert raw.read_until_closed() == []


def test_auth_packet_without_an_exchange_is_a_protocol_error(shared_mqtt: MqttClients) -> None:
    raw = raw_client(shared_mqtt, "auth")
    raw.send(Auth(0x19, Properties(authentication_method="SCRAM-SHA-256")))
    closing = raw.read_until_closed()
    assert [p.reason_code for p in closing if isinstance(p, Disconnect)] == [0x82]
    # Others are unaffected.
    assert raw_client(shared_mqtt, "after-auth").nothing_more()
