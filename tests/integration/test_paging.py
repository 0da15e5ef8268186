"""Paging through the real process: a queue many times its memory limit, sent and
drained over STOMP/TLS with stomp.py, the broker's RSS bounded (from ``/proc``),
drained completely and in order, across a ``kill -9`` in the middle of the drain."""

from __future__ import annotations

import pytest
import stomp

from tests.support import BrokerProcess, Collector, ProcessBrokers, stomp_connect, wait_until

#: 4 KiB bodies, 24 MiB in all: 24 times the queue's memory limit.
COUNT = 6000
BODY = 4096
MEMORY_LIMIT = 1024 * 1024
#: What the backlog may add to the broker's RSS: the window, the store's index (a few
#: hundred bytes a message), the consumer's prefetch and the allocator's slack. Measured
#: here: about 13 MiB with paging, 35 MiB with a memory limit of 1 GiB (no paging).
RSS_GROWTH_BOUND = 20 * 1024 * 1024
DESTINATION = "/queue/backlog"
POLICY = f"[policy]\nmemory_limit = {MEMORY_LIMIT}\n"


def body(i: int) -> str:
    return f"{i:06d}".ljust(BODY, "x")


def connect(broker: BrokerProcess) -> tuple[stomp.Connection, Collector]:
    return stomp_connect(broker.stomp_port, broker.ca_file)


def send_backlog(broker: BrokerProcess) -> int:
    """Send every message persistent with a receipt per batch; the peak RSS seen."""
    conn, got = connect(broker)
    peak = broker.rss_bytes()
    batch = 500
    for start in range(0, COUNT, batch):
        for i in range(start, start + batch):
            receipt = f"r{i}" if i == start + batch - 1 else None
            headers = {"persistent": "true"}
            if receipt is None:
                conn.send(DESTINATION, body(i), headers=headers)
            else:
                conn.send(DESTINATION, body(i), headers=headers, receipt=receipt)
        wanted = f"r{start + batch - 1}"
        wait_until(lambda w=wanted: w in got.receipts, what=f"receipt {wanted}")  # type: ignore[misc]
        peak = max(peak, broker.rss_bytes())
    conn.disconnect()
    return peak


def index_of(frame: stomp.utils.Frame) -> int:
    return int(frame.body[:6])


@pytest.mark.slow
def test_a_backlog_past_the_memory_limit_keeps_rss_bounded_and_drains_in_order_across_kill9(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new(sections=POLICY).start()
    baseline = broker.rss_bytes()
    peak = send_backlog(broker)
    assert peak - baseline < RSS_GROWTH_BOUND, (baseline, peak)

    # Drain half, acknowledging each; the last ack with a receipt makes every earlier
    # ack durable. Then kill -9 with the consumer still attached.
    conn, got = connect(broker)
    conn.subscribe(
        DESTINATION,
        id="drain",
        ack="client-individual",
        headers={"activemq.prefetchSize": "50"},
    )
    half = COUNT // 2
    first: list[int] = []
    while len(first) < half:
        frame = got.get()
        first.append(index_of(frame))
        receipt = "last-ack" if len(first) == half else None
        conn.ack(frame.headers["ack"], receipt=receipt)
    wait_until(lambda: "last-ack" in got.receipts, what="the last ack's receipt")
    assert first == list(range(half))
    peak = max(peak, broker.rss_bytes())
    broker.kill9()

    broker.start()
    restarted = broker.rss_bytes()
    assert restarted - baseline < RSS_GROWTH_BOUND, (baseline, restarted)
    conn, got = connect(broker)
    conn.subscribe(
        DESTINATION,
        id="rest",
        ack="client-individual",
        headers={"activemq.prefetchSize": "100"},
    )
    rest: list[int] = []
    while len(rest) < COUNT - half:
        frame = got.get()
        rest.append(index_of(frame))
        conn.ack(frame.headers["ack"])
        if len(rest) % 500 == 0:
            peak = max(peak, broker.rss_bytes())
    assert rest == list(range(half, COUNT)), "lost, repeated or out of order"
    assert got.nothing_more(), "a message was served twice"
    assert peak - baseline < RSS_GROWTH_BOUND, (baseline, peak)
