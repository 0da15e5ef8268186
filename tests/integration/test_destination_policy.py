"""``[[policy.destinations]]`` as a user configures it: each destination gets its own
redelivery limit and dead-letter queue, the others keep ``[policy]``'s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import load_settings
from tests.support import BrokerThread, ProcessBrokers, stomp_connect, wait_until, write_config


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    config = write_config(
        tmp_path / "sealmq.toml",
        tmp_path / "data",
        0,
        sections="""
[policy]
maximum_redeliveries = 3

[[policy.destinations]]
destination = "queue://orders.>"
maximum_redeliveries = 1
dead_letter_strategy = "individual"
""",
    )
    thread = BrokerThread(load_settings(config, env={})).start()
    yield thread
    thread.stop()


def _poison(broker: BrokerThread, queue: str, deliveries: int) -> None:
    """Send one persistent message to ``queue`` and NACK it ``deliveries`` times."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe(f"/queue/{queue}", id="s", ack="client-individual")
        conn.send(f"/queue/{queue}", "bad", headers={"persistent": "true"})
        for _ in range(deliveries):
            frame = got.get()
            assert frame.body == "bad"
            conn.nack(frame.headers["ack"])
        assert got.nothing_more()
    finally:
        conn.disconnect()


def _dead_letter_of(broker: BrokerThread, dlq: str) -> dict[str, str]:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe(f"/queue/{dlq}", id="dlq", ack="auto")
        frame = got.get()
        assert frame.body == "bad"
        return dict(frame.headers)
    finally:
        conn.disconnect()


def test_a_matching_entry_sets_the_limit_and_an_individual_dead_letter_queue(
    broker: BrokerThread,
) -> None:
    _poison(broker, "orders.eu", deliveries=2)  # the first delivery and 1 redelivery
    headers = _dead_letter_of(broker, "ActiveMQ.DLQ.Queue.orders.eu")
    assert "redelivery policy" in headers["dlqDeliveryFailureCause"]


def test_other_destinations_keep_the_general_policy(broker: BrokerThread) -> None:
    _poison(broker, "billing", deliveries=4)  # the first delivery and 3 redeliveries
    headers = _dead_letter_of(broker, "ActiveMQ.DLQ")
    assert "redelivery policy" in headers["dlqDeliveryFailureCause"]


def test_a_configured_composite_queue_forwards_through_its_selector(
    processes: ProcessBrokers,
) -> None:
    """ActiveMQ's compositeQueue with a filteredDestination, from [[composite_destinations]]."""
    sections = """
[[composite_destinations]]
destination = "queue://orders"
forward_to = [
  "queue://orders.audit",
  {destination = "queue://orders.big", selector = "amount > 1000"},
]
"""
    broker = processes.new(sections=sections).start()
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    for amount in ("10", "5000"):
        conn.send(
            "/queue/orders",
            amount,
            headers={"amount": amount, "persistent": "true"},
            receipt=amount,
        )
    wait_until(lambda: {"10", "5000"} <= set(got.receipts), what="receipts")
    conn.subscribe("/queue/orders.audit", id="audit", ack="auto")
    assert sorted(f.body for f in got.take(2)) == ["10", "5000"]
    conn.subscribe("/queue/orders.big", id="big", ack="auto")
    assert got.get().body == "5000"
    conn.subscribe("/queue/orders", id="orders", ack="auto")
    assert got.nothing_more()
    conn.disconnect()
