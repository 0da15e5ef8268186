"""MQTT sessions and wills over TLS: what a session keeps while the client is away,
clean sessions, the MQTT 5 Session Expiry Interval, and when wills are (not) sent.

paho-mqtt 2.x (3.1.1 and 5.0) against a broker on free ports, ``RawMqtt`` where the
wire matters. In-flight flows resumed on reconnect are in ``test_mqtt_publish.py``;
sessions across a crash in ``test_mqtt_durability.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sealmq.wire.mqtt import (
    Disconnect,
    Properties,
)
from sealmq.wire.mqtt import Will as RawWill
from tests.support import (
    TIMEOUT,
    BrokerThread,
    MqttClients,
    mqtt_settings,
    paho_properties,
    wait_until,
)

V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def session_expiry(seconds: int) -> object:
    return paho_properties("CONNECT", SessionExpiryInterval=seconds)


# ----------------------------------------------------------------- wills


@V311_AND_V5
def test_will_is_sent_on_abnormal_disconnect(mqtt: MqttClients, version: int) -> None:
    watcher = mqtt.paho(version=version, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    doomed = mqtt.paho(
        version=version, client_id="doomed", will=("wills/doomed", b"gone", 1, False)
    )
    doomed.drop()
    will = watcher.get()
    assert (will.topic, will.payload, will.qos, will.retain) == ("wills/doomed", b"gone", 1, False)


@V311_AND_V5
def test_no_will_on_normal_disconnect(mqtt: MqttClients, version: int) -> None:
    watcher = mqtt.paho(version=version, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    polite = mqtt.paho(version=version, client_id="polite", will=("wills/polite", b"x", 1, False))
    polite.disconnect()
    # A message sent after the DISCONNECT arrives; a will would have come before it.
    mqtt.paho(version=version).publish("wills/marker", b"marker", 1)
    assert watcher.get().topic == "wills/marker"
    assert watcher.nothing_more()


@V311_AND_V5
def test_retained_will_is_kept_for_later_subscribers(mqtt: MqttClients, version: int) -> None:
    watcher = mqtt.paho(version=version, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    doomed = mqtt.paho(
        version=version, client_id="doomed", will=("wills/status", b"offline", 1, True)
    )
    doomed.drop()
    assert watcher.get().payload == b"offline"
    late = mqtt.paho(version=version, client_id="late")
    assert late.subscribe("wills/status", 1) == [1]
    will = late.get()
    assert (will.payload, will.retain) == (b"offline", True)


def test_will_on_keep_alive_timeout_and_on_takeover(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=4, client_id="watcher")
    assert watcher.subscribe("wills/#", 0) == [0]
    silent = mqtt.raw(4)
    will = RawWill("wills/silent", b"timed out", 0)
    assert silent.connect("silent", keep_alive=1, will=will).reason_code == 0
    assert watcher.get(timeout=TIMEOUT).payload == b"timed out"

    taken = mqtt.paho(version=4, client_id="taken", will=("wills/taken", b"replaced", 0, False))
    mqtt.paho(version=4, client_id="taken")
    taken.wait_disconnected()
    assert watcher.get().payload == b"replaced"


def test_v5_disconnect_with_will_message_sends_the_will(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=5, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    leaving = mqtt.paho(version=5, client_id="leaving", will=("wills/leaving", b"bye", 1, False))
    leaving.disconnect(reason=0x04)  # disconnect with will message
    assert watcher.get().payload == b"bye"


def test_v5_disconnect_with_an_error_reason_sends_the_will(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=5, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    raw = mqtt.raw(5)
    will = RawWill("wills/failing", b"client error", 1)
    assert raw.connect("failing", will=will).reason_code == 0
    raw.send(Disconnect(0x80))  # unspecified error: only 0x00 deletes the will
    raw.read_until_closed()
    assert watcher.get().payload == b"client error"


def test_v5_will_delay_and_will_properties(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=5, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    will_props = paho_properties(
        "WILLMESSAGE",
        WillDelayInterval=1,
        ContentType="text/plain",
        ResponseTopic="wills/replies",
        CorrelationData=b"\x01\x02",
        UserProperty=[("reason", "crash")],
        PayloadFormatIndicator=1,
    )
    delayed = mqtt.paho(
        version=5,
        client_id="delayed",
        properties=session_expiry(60),
        will=("wills/delayed", b"late news", 1, False),
        will_properties=will_props,
    )
    dropped_at = time.monotonic()
    delayed.drop()
    will = watcher.get()
    assert time.monotonic() - dropped_at >= 0.9  # not before the will delay
    assert will.payload == b"late news"
    props = will.properties
    assert props.ContentType == "text/plain"
    assert props.ResponseTopic == "wills/replies"
    assert props.CorrelationData == b"\x01\x02"
    assert ("reason", "crash") in props.UserProperty
    assert props.PayloadFormatIndicator == 1


@pytest.mark.slow
def test_v5_reconnecting_within_the_will_delay_cancels_the_will(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=5, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    options = {
        "version": 5,
        "client_id": "flaky",
        "clean": False,
        "properties": session_expiry(60),
    }
    flaky = mqtt.paho(
        **options,
        will=("wills/flaky", b"gone", 1, False),
        will_properties=paho_properties("WILLMESSAGE", WillDelayInterval=2),
    )
    flaky.drop()
    back = mqtt.paho(**options)
    assert back.connack is not None and back.connack.session_present is True
    assert watcher.nothing_more(wait=2.5)  # past the will delay: nothing came


def test_v5_will_is_sent_when_the_session_ends_before_the_delay(mqtt: MqttClients) -> None:
    watcher = mqtt.paho(version=5, client_id="watcher")
    assert watcher.subscribe("wills/#", 1) == [1]
    short = mqtt.paho(
        version=5,
        client_id="short",
        properties=session_expiry(1),
        will=("wills/short", b"session over", 1, False),
        will_properties=paho_properties("WILLMESSAGE", WillDelayInterval=3600),
    )
    short.drop()
    assert watcher.get().payload == b"session over"


# ----------------------------------------------------------------- sessions


@V311_AND_V5
def test_a_kept_session_queues_messages_while_the_client_is_away(
    mqtt: MqttClients, version: int
) -> None:
    kept = {"version": version, "client_id": "away", "clean": False}
    if version == 5:
        kept["properties"] = session_expiry(300)
    away = mqtt.paho(**kept)
    assert away.connack is not None and away.connack.session_present is False
    assert away.subscribe_many([("away/q1", 1), ("away/q2", 2), ("away/q0", 0)]) == [1, 2, 0]
    away.disconnect()

    producer = mqtt.paho(version=version)
    for i in range(3):
        producer.publish("away/q1", f"one-{i}", 1)
        producer.publish("away/q2", f"two-{i}", 2)

    back = mqtt.paho(**kept)
    assert back.connack is not None and back.connack.session_present is True
    got = back.take(6)
    assert sorted(m.payload.decode() for m in got) == sorted(
        [f"one-{i}" for i in range(3)] + [f"two-{i}" for i in range(3)]
    )
    assert {(m.topic, m.qos) for m in got} == {("away/q1", 1), ("away/q2", 2)}
    assert [m.payload for m in got if m.topic == "away/q1"] == [b"one-0", b"one-1", b"one-2"]
    assert back.nothing_more()
    # The subscriptions are still there.
    producer.publish("away/q0", b"live", 0)
    assert back.get().payload == b"live"


@V311_AND_V5
def test_a_clean_session_forgets_the_kept_one(mqtt: MqttClients, version: int) -> None:
    kept = {"version": version, "client_id": "forgetful", "clean": False}
    if version == 5:
        kept["properties"] = session_expiry(300)
    first = mqtt.paho(**kept)
    assert first.subscribe("forget/t", 1) == [1]
    first.disconnect()
    mqtt.paho(version=version).publish("forget/t", b"queued", 1)

    clean = mqtt.paho(version=version, client_id="forgetful", clean=True)
    assert clean.connack is not None and clean.connack.session_present is False
    assert clean.nothing_more()
    clean.disconnect()

    again = mqtt.paho(**kept)
    assert again.connack is not None and again.connack.session_present is False
    mqtt.paho(version=version).publish("forget/t", b"after", 1)
    assert again.nothing_more()


def _has_session(broker: BrokerThread, client_id: str) -> bool:
    def look() -> bool:
        assert broker.running is not None
        core = broker.running.broker
        return f"mqtt:{client_id}" in core.sessions or bool(core.durable_subscriptions(client_id))

    return bool(broker.call(look))


def test_v5_session_expiry_interval_ends_the_session(
    mqtt: MqttClients, mqtt_broker: BrokerThread
) -> None:
    kept = {"version": 5, "client_id": "mayfly", "clean": False, "properties": session_expiry(2)}
    first = mqtt.paho(**kept)
    assert first.subscribe("mayfly/t", 1) == [1]
    first.disconnect()
    assert _has_session(mqtt_broker, "mayfly")
    wait_until(lambda: not _has_session(mqtt_broker, "mayfly"), what="session expiry")
    again = mqtt.paho(**kept)
    assert again.connack is not None and again.connack.session_present is False


def test_v5_session_expiry_zero_ends_the_session_with_the_connection(
    mqtt: MqttClients, mqtt_broker: BrokerThread
) -> None:
    kept = {"version": 5, "client_id": "resumer", "clean": False, "properties": session_expiry(60)}
    first = mqtt.paho(**kept)
    assert first.subscribe("resume/t", 1) == [1]
    first.disconnect()
    mqtt.paho(version=5).publish("resume/t", b"waiting", 1)

    # Resuming with expiry 0: the queued message comes, then the session ends at the close.
    last = mqtt.paho(version=5, client_id="resumer", clean=False)
    assert last.connack is not None and last.connack.session_present is True
    assert last.get().payload == b"waiting"
    last.disconnect()
    # paho reports the DISCONNECT sent; the broker handles it just after.
    wait_until(lambda: not _has_session(mqtt_broker, "resumer"), what="the session's end")


def test_v5_disconnect_can_shorten_the_session_expiry(
    mqtt: MqttClients, mqtt_broker: BrokerThread
) -> None:
    kept = {"version": 5, "client_id": "shorten", "clean": False, "properties": session_expiry(60)}
    client = mqtt.paho(**kept)
    assert client.subscribe("shorten/t", 1) == [1]
    client.disconnect(properties=paho_properties("DISCONNECT", SessionExpiryInterval=0))
    # paho reports the DISCONNECT sent; the broker handles it just after.
    wait_until(lambda: not _has_session(mqtt_broker, "shorten"), what="the session's end")


def test_v5_disconnect_cannot_set_an_expiry_on_a_session_that_had_none(
    mqtt: MqttClients,
) -> None:
    raw = mqtt.raw(5)
    assert raw.connect("no-expiry").reason_code == 0
    raw.send(Disconnect(0, Properties(session_expiry_interval=30)))
    packets = raw.read_until_closed()
    assert [p.reason_code for p in packets if isinstance(p, Disconnect)] == [0x82]


def test_v5_session_expiry_counts_across_a_restart(tmp_path: Path) -> None:
    settings = mqtt_settings(tmp_path / "data")
    kept = {"version": 5, "client_id": "restarted", "clean": False, "properties": session_expiry(1)}
    broker = BrokerThread(settings).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        client = clients.paho(**kept)
        assert client.subscribe("restart/t", 1) == [1]
        client.disconnect()
    finally:
        clients.close_all()
        broker.stop()
    broker = BrokerThread(settings).start()
    clients = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        # The expiry interval began at the DISCONNECT, before the restart.
        wait_until(lambda: not _has_session(broker, "restarted"), what="session expiry")
        again = clients.paho(**kept)
        assert again.connack is not None and again.connack.session_present is False
    finally:
        clients.close_all()
        broker.stop()
