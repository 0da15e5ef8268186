from __future__ import annotations

import itertools
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


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    """One broker (STOMP and MQTT over TLS) for every test of a module that asks for it.

    Starting a broker per test costs ~0.2-1 s; share this one where isolation is not
    what the test is about. A test on it must use queues, retained topics, client ids
    and durable subscription names of its own (put ``unique`` in them where a name
    repeats, e.g. across parameters), and leave nothing broker-wide changed. Tests of
    restarts, key loss, configuration, limits or broker-wide state keep ``broker``,
    ``mqtt_broker`` or a BrokerThread of their own.
    """
    thread = BrokerThread(mqtt_settings(tmp_path_factory.mktemp("shared") / "data")).start()
    yield thread
    thread.stop()


@pytest.fixture
def shared_mqtt(shared_broker: BrokerThread) -> Iterator[MqttClients]:
    """MQTT clients of ``shared_broker``, all closed when the test ends."""
    clients = MqttClients(shared_broker.mqtt_port, shared_broker.ca_file)
    yield clients
    clients.close_all()


_unique_names = itertools.count(1)


@pytest.fixture
def unique() -> str:
    """A short token no other test of the session gets (``t17``), for names on a shared broker."""
    return f"t{next(_unique_names)}"


@pytest.fixture(scope="session")
def jms_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Java test programs of ``tests/openwire/java``, compiled once per session."""
    from tests.jms import compile_programs

    return compile_programs(tmp_path_factory.mktemp("jms-classes"))
