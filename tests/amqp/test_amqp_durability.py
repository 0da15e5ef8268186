"""AMQP durability through the real process: unsettled sends the broker accepted, and a
durable subscription, survive ``kill -9``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from proton import Message
from proton.reactor import DurableSubscription

from tests.amqp.clients import AmqpClients
from tests.support import BrokerProcess, ProcessBrokers

pytestmark = pytest.mark.slow

COUNT = 200


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


def clients(broker: BrokerProcess) -> AmqpClients:
    return AmqpClients(broker.amqp_port, broker.ca_file)


def test_accepted_sends_and_a_durable_subscription_survive_kill_9(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new(amqp=True).start()
    amqp = clients(broker)
    try:
        subscriber = amqp.connect(container_id="keeper")
        subscriber.create_receiver(
            "topic://audit", name="trail", options=DurableSubscription()
        ).detach()
        subscriber.close()
        conn = amqp.connect()
        queue = conn.create_sender("queue://kept")
        topic = conn.create_sender("topic://audit")
        for i in range(COUNT):
            # Each send returns once the broker's accepted arrived: only after it is durable.
            queue.send(Message(body=f"q{i}", durable=True))
        topic.send(Message(body="to the trail", durable=True))
    finally:
        amqp.close_all()
    broker.kill9()

    broker.start()
    amqp = clients(broker)
    try:
        conn = amqp.connect()
        receiver = conn.create_receiver("queue://kept", credit=50)
        got = []
        for _ in range(COUNT):
            got.append(receiver.receive(timeout=10).body)
            receiver.accept()
        assert got == [f"q{i}" for i in range(COUNT)]
        subscriber = amqp.connect(container_id="keeper")
        trail = subscriber.create_receiver(
            "topic://audit", name="trail", options=DurableSubscription()
        )
        assert trail.receive(timeout=10).body == "to the trail"
        trail.accept()
    finally:
        amqp.close_all()
