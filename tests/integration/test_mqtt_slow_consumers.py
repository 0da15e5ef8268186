"""MQTT subscribers that cannot keep up: QoS 0 is at most once and bounded, QoS 1/2 is kept.

A persistent session that is away is the slowest consumer there is: its QoS 0
subscriptions hold at most ``[policy] pending_message_limit`` messages (the newest),
its QoS 1/2 subscriptions keep everything in the store (``docs/mqtt.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import PolicySettings
from tests.support import BrokerThread, MqttClients, mqtt_settings, paho_properties

LIMIT = 5


@pytest.fixture
def mqtt(tmp_path: Path) -> Iterator[MqttClients]:
    policy = PolicySettings(pending_message_limit=LIMIT)
    thread = BrokerThread(mqtt_settings(tmp_path / "data", policy=policy)).start()
    clients = MqttClients(thread.mqtt_port, thread.ca_file)
    yield clients
    clients.close_all()
    thread.stop()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_an_absent_session_keeps_the_newest_qos0_and_every_qos1(
    mqtt: MqttClients, version: int
) -> None:
    expiry = paho_properties("CONNECT", SessionExpiryInterval=3600) if version == 5 else None
    away = mqtt.paho(version=version, client_id="away", clean=False, properties=expiry)
    assert away.subscribe("prices/#", 0) == [0]
    assert away.subscribe("orders/#", 1) == [1]
    away.disconnect()
    publisher = mqtt.paho(version=version)
    for i in range(20):
        publisher.publish("prices/a", b"p%d" % i, 0)
        publisher.publish("orders/a", b"o%d" % i, 1)
    publisher.disconnect()
    back = mqtt.paho(version=version, client_id="away", clean=False, properties=expiry)
    got = back.take(20 + LIMIT)
    assert back.nothing_more()
    prices = [m.payload for m in got if m.topic == "prices/a"]
    orders = [m.payload for m in got if m.topic == "orders/a"]
    assert prices == [b"p%d" % i for i in range(20 - LIMIT, 20)]
    assert orders == [b"o%d" % i for i in range(20)]
