"""AMQP 1.0 tests: a broker serving AMQP (and STOMP, MQTT) over TLS on free ports, and
Qpid Proton's own clients (``BlockingConnection``, the reactor ``Container``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import Listener
from tests.amqp.clients import AmqpClients
from tests.support import BrokerThread, make_settings


@pytest.fixture
def amqp_broker(tmp_path: Path) -> Iterator[BrokerThread]:
    settings = make_settings(
        tmp_path / "data",
        listeners=(Listener("amqp", 0), Listener("stomp", 0), Listener("mqtt", 0)),
    )
    broker = BrokerThread(settings).start()
    yield broker
    broker.stop()


@pytest.fixture
def amqp(amqp_broker: BrokerThread) -> Iterator[AmqpClients]:
    clients = AmqpClients(amqp_broker.running.port("amqp"), amqp_broker.ca_file)  # type: ignore[union-attr]
    yield clients
    clients.close_all()
