"""Write ``upgrade-v1/``: a whole data folder as a broker of record format 1 left it.

    .venv/bin/python -m tests.store.files.make_upgrade

Run once, with the code of ``main`` before the versioned message record (format 2)
landed, and committed: it is what proves that a broker upgraded from that code opens
its data folder and serves everything in it (``tests/store/test_upgrade.py``). Never
regenerate it with newer code; a later format change gets a fixture of its own.

The broker is started through ``app.start`` and fed by real clients over TLS:

- STOMP: persistent messages with properties and every header the model maps to the
  queue :data:`QUEUE`, and an
  inactive durable subscription (:data:`STOMP_CLIENT`, :data:`STOMP_SUB`) on
  :data:`TOPIC` holding one message;
- MQTT 5: a persistent session that never expires (:data:`MQTT_CLIENT`) subscribed
  to :data:`MQTT_TOPIC` at QoS 1 holding one QoS 1 message, and a retained message on
  :data:`MQTT_RETAINED_TOPIC` with a content type and user properties.

The TLS folder is left out (its certificates would expire; the broker makes new ones).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support import (
    BrokerThread,
    MqttClients,
    mqtt_settings,
    paho_properties,
    stomp_connect,
    wait_until,
)

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "upgrade-v1"
QUEUE = "upgrade.q"
TOPIC = "upgrade.t"
STOMP_CLIENT = "upgrade-stomp"
STOMP_SUB = "upgrade-sub"
MQTT_CLIENT = "upgrade-mqtt"
MQTT_TOPIC = "upgrade/m"
MQTT_RETAINED_TOPIC = "upgrade/r"
#: MQTT 5's Session Expiry Interval for "never": the fixture's session must not expire
#: (an interval is counted across restarts, from when the fixture was written).
NEVER_EXPIRES = 0xFFFFFFFF
#: The STOMP SEND headers of each message put on QUEUE, in order (bodies "q-<i>").
QUEUE_HEADERS: list[dict[str, str]] = [
    {
        "persistent": "true",
        "priority": "7",
        "correlation-id": "corr-1",
        "reply-to": "/queue/upgrade.reply",
        "type": "upgrade-type",
        "JMSXGroupID": "group-a",
        "JMSXGroupSeq": "3",
        "color": "blue",
        "amq-msg-type": "text",
    },
    {"persistent": "true", "size": "large", "content-type": "application/octet-stream"},
    {"persistent": "true", "note": "a plain one"},
]
TOPIC_BODY = b"t-0"
MQTT_BODY = b"m-0"
RETAINED_BODY = b"retained-0"
RETAINED_CONTENT_TYPE = "text/plain"
RETAINED_USER = [("origin", "upgrade"), ("n", "1")]


def write(data_dir: Path) -> None:
    broker = BrokerThread(mqtt_settings(data_dir)).start()
    try:
        # The durable subscription first, so it holds the topic message.
        conn, _ = stomp_connect(broker.stomp_port, broker.ca_file, client_id=STOMP_CLIENT)
        conn.subscribe(
            f"/topic/{TOPIC}", id="d", ack="auto", headers={"activemq.subscriptionName": STOMP_SUB}
        )
        conn.disconnect(receipt="bye-1")
        mqtt = MqttClients(broker.mqtt_port, broker.ca_file)
        try:
            session = mqtt.paho(
                version=5,
                client_id=MQTT_CLIENT,
                clean=False,
                properties=paho_properties("CONNECT", SessionExpiryInterval=NEVER_EXPIRES),
            )
            assert session.subscribe(MQTT_TOPIC, 1) == [1]
            session.disconnect()
            producer, sent = stomp_connect(broker.stomp_port, broker.ca_file)
            for i, headers in enumerate(QUEUE_HEADERS):
                producer.send(f"/queue/{QUEUE}", f"q-{i}", headers=headers, receipt=f"q-{i}")
            producer.send(
                f"/topic/{TOPIC}", TOPIC_BODY, headers={"persistent": "true"}, receipt="t"
            )
            receipts = {f"q-{i}" for i in range(len(QUEUE_HEADERS))} | {"t"}
            wait_until(lambda: receipts <= set(sent.receipts), what="the SENDs' receipts")
            publisher = mqtt.paho(version=5, client_id="upgrade-publisher")
            assert publisher.publish(MQTT_TOPIC, MQTT_BODY, 1) == 0
            props = paho_properties(
                "PUBLISH", ContentType=RETAINED_CONTENT_TYPE, UserProperty=RETAINED_USER
            )
            publisher.publish(MQTT_RETAINED_TOPIC, RETAINED_BODY, 1, retain=True, properties=props)
            publisher.disconnect()
            producer.disconnect()
        finally:
            mqtt.close_all()
    finally:
        broker.stop()


def main() -> None:
    shutil.rmtree(FOLDER, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write(data_dir)
        shutil.copytree(data_dir, FOLDER, ignore=shutil.ignore_patterns("tls", "lock"))


if __name__ == "__main__":
    main()
