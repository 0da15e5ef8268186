"""Scheduled delivery through stomp.py over TLS, as ActiveMQ users send it: the
``AMQ_SCHEDULED_DELAY`` header holds a message back; a receipted one survives
``kill -9`` and arrives after the restart; a malformed one gets an ERROR frame."""

from __future__ import annotations

import time

import pytest
import stomp

from tests.support import BrokerProcess, Collector, ProcessBrokers, stomp_connect, wait_until


def connect(broker: BrokerProcess) -> tuple[stomp.Connection, Collector]:
    return stomp_connect(broker.stomp_port, broker.ca_file)


@pytest.mark.slow
def test_a_delayed_message_waits_and_survives_kill9(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    consumer, got = connect(broker)
    consumer.subscribe("/queue/later", id="s", ack="auto", receipt="sub")
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    producer, sent = connect(broker)
    start = time.monotonic()
    producer.send(
        "/queue/later", "in a second", headers={"AMQ_SCHEDULED_DELAY": "1000"}, receipt="r1"
    )
    producer.send("/queue/later", "at once", receipt="r2")
    wait_until(lambda: {"r1", "r2"} <= set(sent.receipts), what="receipts")
    assert got.get().body == "at once"
    frame = got.get()
    assert frame.body == "in a second"
    assert time.monotonic() - start >= 1.0
    assert frame.headers["scheduledJobId"]
    assert "AMQ_SCHEDULED_DELAY" not in frame.headers

    # A persistent scheduled message, receipted, then the broker killed before it is due.
    producer.send(
        "/queue/kept",
        "after the crash",
        headers={"persistent": "true", "AMQ_SCHEDULED_DELAY": "3000"},
        receipt="r3",
    )
    wait_until(lambda: "r3" in sent.receipts, what="receipt of the scheduled message")
    broker.kill9()
    broker.start()
    consumer, got = connect(broker)
    consumer.subscribe("/queue/kept", id="s", ack="auto")
    frame = got.get(timeout=10)
    assert (frame.body, frame.headers["persistent"]) == ("after the crash", "true")
    assert got.nothing_more()
    consumer.disconnect()


def test_a_malformed_schedule_gets_an_error(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    producer, sent = connect(broker)
    producer.send("/queue/x", "x", headers={"AMQ_SCHEDULED_DELAY": "soon"}, receipt="bad")
    error = sent.errors.get(timeout=10)
    assert "AMQ_SCHEDULED_DELAY must be a whole number" in error.headers["message"]


@pytest.mark.slow
def test_a_redelivery_delay_survives_kill9(processes: ProcessBrokers) -> None:
    """A NACKed persistent message waits out ``redelivery_delay_ms`` even across a crash:
    not redelivered at once by the restarted broker, then redelivered, marked so."""
    broker = processes.new(sections="[policy]\nredelivery_delay_ms = 4000\n").start()
    conn, got = connect(broker)
    conn.subscribe("/queue/retry", id="s", ack="client-individual")
    conn.send("/queue/retry", "try again", headers={"persistent": "true"}, receipt="r")
    wait_until(lambda: "r" in got.receipts, what="receipt")
    frame = got.get()
    nacked = time.monotonic()
    conn.nack(frame.headers["ack"], receipt="n")
    wait_until(lambda: "n" in got.receipts, what="NACK receipt")
    broker.kill9()
    broker.start()
    conn, got = connect(broker)
    conn.subscribe("/queue/retry", id="s", ack="client-individual")
    frame = got.get(timeout=15)
    assert time.monotonic() - nacked >= 4.0
    assert (frame.body, frame.headers["redelivered"]) == ("try again", "true")
    conn.ack(frame.headers["ack"])
    assert got.nothing_more()
    conn.disconnect()
