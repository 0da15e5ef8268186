from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BrokerThread, MqttClients, ProcessBrokers, make_settings, mqtt_settings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker with STOMP over TLS on a free 127.0.0.1 port, run through ``app.start``."""
    thread = BrokerThread(make_settings(tmp_path / "data")).start()
    yield thread
    thread.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    """Brokers as real ``sealmq serve`` processes (for kill -9 and restarts), killed at teardown."""
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker serving MQTT and STOMP over TLS on free 127.0.0.1 ports."""
    thread = BrokerThread(mqtt_settings(tmp_path / "data")).start()
    yield thread
    thread.stop()


@pytest.fixture
def mqtt(mqtt_broker: BrokerThread) -> Iterator[MqttClients]:
    """MQTT clients (paho over TLS, or raw) of ``mqtt_broker``, all closed at teardown."""
    clients = MqttClients(mqtt_broker.mqtt_port, mqtt_broker.ca_file)
    yield clients
    clients.close_all()
