"""A data folder written by the broker before the versioned message record opens and serves.

``files/upgrade-v1/`` was written once by ``files/make_upgrade.py`` with the code of
record format 1 (see there for what it holds); it is never regenerated.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.files.make_upgrade import (
    FOLDER,
    MQTT_BODY,
    MQTT_CLIENT,
    MQTT_RETAINED_TOPIC,
    MQTT_TOPIC,
    NEVER_EXPIRES,
    QUEUE,
    QUEUE_HEADERS,
    RETAINED_BODY,
    RETAINED_CONTENT_TYPE,
    RETAINED_USER,
    STOMP_CLIENT,
    STOMP_SUB,
    TOPIC,
    TOPIC_BODY,
)
from tests.support import BrokerThread, MqttClients, mqtt_settings, paho_properties, stomp_connect


def copy_folder(target: Path) -> Path:
    shutil.copytree(FOLDER, target)
    # Git keeps no 0600/0700 modes; the broker and its key service insist on them.
    for root, dirs, files in os.walk(target):
        os.chmod(root, 0o700)
        for name in files:
            os.chmod(Path(root) / name, 0o600)
        for name in dirs:
            os.chmod(Path(root) / name, 0o700)
    return target


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    running = BrokerThread(mqtt_settings(copy_folder(tmp_path / "data"))).start()
    yield running
    running.stop()


def test_queue_messages_keep_headers_and_properties(broker: BrokerThread) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe(f"/queue/{QUEUE}", id="c", ack="auto")
        frames = got.take(len(QUEUE_HEADERS))
    finally:
        conn.disconnect()
    by_body = {f.body: f.headers for f in frames}
    assert sorted(by_body) == sorted(f"q-{i}" for i in range(len(QUEUE_HEADERS)))
    first = by_body["q-0"]
    assert first["persistent"] == "true"
    assert first["priority"] == "7"
    assert first["correlation-id"] == "corr-1"
    assert first["reply-to"] == "/queue/upgrade.reply"
    assert first["type"] == "upgrade-type"
    assert (first["JMSXGroupID"], first["JMSXGroupSeq"]) == ("group-a", "3")
    assert first["color"] == "blue"
    assert first["amq-msg-type"] == "text"
    assert first["message-id"].startswith("ID:")
    assert int(first["timestamp"]) > 0
    assert "redelivered" not in first
    assert by_body["q-1"]["size"] == "large"
    assert by_body["q-1"]["content-type"] == "application/octet-stream"
    assert by_body["q-2"]["note"] == "a plain one"


def test_the_durable_subscription_keeps_its_message(broker: BrokerThread) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file, client_id=STOMP_CLIENT)
    try:
        conn.subscribe(
            f"/topic/{TOPIC}", id="d", ack="auto", headers={"activemq.subscriptionName": STOMP_SUB}
        )
        frame = got.get()
    finally:
        conn.disconnect()
    assert frame.body == TOPIC_BODY.decode()
    assert frame.headers["persistent"] == "true"


def test_the_mqtt_session_and_retained_message(broker: BrokerThread) -> None:
    mqtt = MqttClients(broker.mqtt_port, broker.ca_file)
    try:
        session = mqtt.paho(
            version=5,
            client_id=MQTT_CLIENT,
            clean=False,
            properties=paho_properties("CONNECT", SessionExpiryInterval=NEVER_EXPIRES),
        )
        assert session.connack is not None and session.connack.session_present
        message = session.get()
        assert (message.topic, message.payload, message.qos) == (MQTT_TOPIC, MQTT_BODY, 1)
        reader = mqtt.paho(version=5, client_id="upgrade-reader")
        reader.subscribe(MQTT_RETAINED_TOPIC, 1)
        retained = reader.get()
        assert (retained.topic, retained.payload, retained.retain) == (
            MQTT_RETAINED_TOPIC,
            RETAINED_BODY,
            True,
        )
        assert retained.properties.ContentType == RETAINED_CONTENT_TYPE
        assert sorted(retained.properties.UserProperty) == sorted(RETAINED_USER)
    finally:
        mqtt.close_all()


def test_a_second_start_reads_old_and_new_records_together(tmp_path: Path) -> None:
    settings = mqtt_settings(copy_folder(tmp_path / "data"))
    first = BrokerThread(settings).start()
    try:
        # New-format records on top of the old ones: a message and a nack's delivery count.
        conn, got = stomp_connect(first.stomp_port, first.ca_file)
        conn.send(f"/queue/{QUEUE}", "new", headers={"persistent": "true"}, receipt="new")
        conn.subscribe(f"/queue/{QUEUE}", id="c", ack="client-individual")
        frames = got.take(len(QUEUE_HEADERS) + 1)
        conn.nack(next(f for f in frames if f.body == "q-1").headers["ack"], receipt="nack")
        again = got.get()
        assert again.body == "q-1" and again.headers["redelivered"] == "true"
        conn.disconnect()
    finally:
        first.stop()
    second = BrokerThread(settings).start()
    try:
        conn, got = stomp_connect(second.stomp_port, second.ca_file)
        conn.subscribe(f"/queue/{QUEUE}", id="c", ack="auto")
        frames = got.take(len(QUEUE_HEADERS) + 1)
        conn.disconnect()
    finally:
        second.stop()
    by_body = {f.body: f.headers for f in frames}
    assert set(by_body) == {"q-0", "q-1", "q-2", "new"}
    assert by_body["q-0"]["correlation-id"] == "corr-1"
    # Every one was delivered and not acked before the second start; q-1 once more.
    assert all(h.get("redelivered") == "true" for h in by_body.values())
