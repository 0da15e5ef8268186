"""What one message costs the store at light load, seen through a real client.

At a few hundred messages a second every message is its own batch, so each record and
fsync is paid per message. An ACK without a receipt must not cost an fsync of its own
(it is written with the next synced batch), yet a receipt asked for later still means
every earlier ACK survives a crash.
"""

from __future__ import annotations

from tests.support import BrokerThread, ProcessBrokers, stomp_connect, wait_until

N = 40


def test_acks_without_receipts_cost_no_fsync_of_their_own(broker: BrokerThread) -> None:
    journal = broker.running.broker.store.journal  # type: ignore[attr-defined]
    producer, sent = stomp_connect(broker.stomp_port, broker.ca_file)
    consumer, got = stomp_connect(broker.stomp_port, broker.ca_file)
    consumer.subscribe("/queue/light", id="s", ack="client-individual", receipt="sub")
    wait_until(lambda: "sub" in got.receipts, what="subscribed")
    before = journal.fsync_count
    for i in range(N):
        # One message at a time, as at light load: each is its own batch.
        producer.send("/queue/light", f"m{i}", headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda i=i: f"r{i}" in sent.receipts, what=f"receipt {i}")
        frame = got.get()
        assert frame.body == f"m{i}"
        consumer.ack(frame.headers["ack"])
    consumer.unsubscribe("s", receipt="unsub")  # covers every ACK before it
    wait_until(lambda: "unsub" in got.receipts, what="unsubscribe receipt")
    fsyncs = journal.fsync_count - before
    # One per SEND (its receipt), plus the one the UNSUBSCRIBE receipt may need; the
    # ACKs, written between them, add none (before: one each, 2N in all).
    assert N <= fsyncs <= N + 2, fsyncs
    producer.disconnect()
    consumer.disconnect()


def test_a_later_receipt_makes_earlier_acks_survive_kill9(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    producer, sent = stomp_connect(broker.stomp_port, broker.ca_file)
    for i in range(5):
        producer.send("/queue/acked", f"m{i}", headers={"persistent": "true"}, receipt=f"r{i}")
    wait_until(lambda: {f"r{i}" for i in range(5)} <= set(sent.receipts), what="receipts")
    consumer, got = stomp_connect(broker.stomp_port, broker.ca_file)
    consumer.subscribe("/queue/acked", id="s", ack="client-individual")
    for frame in got.take(5):
        consumer.ack(frame.headers["ack"])  # no receipt: written without an fsync
    # A receipt for a frame that stores nothing itself: it must cover the ACKs before it.
    consumer.send("/queue/other", "x", receipt="after-acks")
    wait_until(lambda: "after-acks" in got.receipts, what="receipt after the acks")
    broker.kill9()
    broker.start()
    again, got_again = stomp_connect(broker.stomp_port, broker.ca_file)
    again.subscribe("/queue/acked", id="s", ack="client-individual")
    assert got_again.nothing_more(1.0), "an acknowledged message came back after kill -9"
    again.disconnect()
