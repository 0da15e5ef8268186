"""Durability across crashes: the broker as a real process, killed with SIGKILL and restarted.

What the README promises: a persistent message is confirmed (RECEIPT) only after its
record is fsynced, so whatever was confirmed before a ``kill -9`` is served after the
restart, exactly once and in order; what was not committed or was acknowledged is not.
"""

from __future__ import annotations

import pytest
import stomp

from tests.support import BrokerProcess, Collector, ProcessBrokers, stomp_connect, wait_until

N = 200
PERSISTENT = {"persistent": "true"}


def connect(broker: BrokerProcess, **kw: str) -> tuple[stomp.Connection, Collector]:
    return stomp_connect(broker.stomp_port, broker.ca_file, **kw)


def send_confirmed(
    conn: stomp.Connection, got: Collector, destination: str, bodies: list[str]
) -> None:
    """Send persistent messages with a receipt on each; return once every receipt arrived."""
    wanted = set()
    for i, body in enumerate(bodies):
        receipt = f"{destination}#{i}"
        wanted.add(receipt)
        conn.send(destination, body, headers=PERSISTENT, receipt=receipt)
    wait_until(lambda: wanted <= set(got.receipts), what=f"{len(bodies)} receipts")


def bodies_in(frames: list[stomp.utils.Frame]) -> list[str]:
    return [frame.body for frame in frames]


def consume(
    broker: BrokerProcess, destination: str, n: int, **connect_kw: str
) -> tuple[stomp.Connection, Collector, list[stomp.utils.Frame]]:
    """Subscribe (client-individual) and take ``n`` messages; the caller checks for more."""
    conn, got = connect(broker, **connect_kw)
    conn.subscribe(destination, id="drain", ack="client-individual")
    return conn, got, got.take(n)


@pytest.mark.slow
def test_confirmed_queue_messages_survive_kill9_exactly_once_in_order(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    producer, got = connect(broker)
    bodies = [f"order-{i:04d}" for i in range(N)]
    send_confirmed(producer, got, "/queue/orders", bodies)

    broker.kill9()  # the producer is still connected: no DISCONNECT gives the broker time
    broker.start()

    _, got, frames = consume(broker, "/queue/orders", N)
    assert bodies_in(frames) == bodies
    assert len({frame.headers["message-id"] for frame in frames}) == N
    assert all(frame.headers["persistent"] == "true" for frame in frames)
    assert got.nothing_more(), "a message was served twice"


@pytest.mark.slow
def test_durable_topic_subscription_keeps_confirmed_messages_across_kill9(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    durable = {"activemq.subscriptionName": "audit"}
    producer, produced = connect(broker)
    send_confirmed(producer, produced, "/topic/events", ["before the subscription"])

    subscriber, got = connect(broker, client_id="auditor")
    subscriber.subscribe(
        "/topic/events", id="a", ack="client-individual", headers={**durable, "receipt": "sub"}
    )
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    subscriber.disconnect()  # the subscription stays, inactive

    bodies = [f"event-{i:04d}" for i in range(N)]
    send_confirmed(producer, produced, "/topic/events", bodies)
    broker.kill9()
    broker.start()

    subscriber, got = connect(broker, client_id="auditor")
    subscriber.subscribe("/topic/events", id="a", ack="client-individual", headers=durable)
    frames = got.take(N)
    assert bodies_in(frames) == bodies
    assert all(frame.headers["destination"] == "/topic/events" for frame in frames)
    assert got.nothing_more(), "a message was served twice, or one sent before subscribing"


@pytest.mark.slow
def test_only_committed_transactions_survive_kill9(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    conn, got = connect(broker)
    committed = [f"committed-{i}" for i in range(20)]
    aborted = [f"aborted-{i}" for i in range(20)]
    left_open = [f"never-committed-{i}" for i in range(5)]

    kept = conn.begin()
    dropped = conn.begin()
    for keep, drop in zip(committed, aborted, strict=True):  # interleaved transactions
        conn.send("/queue/ledger", keep, headers=PERSISTENT, transaction=kept)
        conn.send("/queue/ledger", drop, headers=PERSISTENT, transaction=dropped)
    conn.abort(dropped, headers={"receipt": "aborted"})
    conn.commit(kept, headers={"receipt": "committed"})
    pending = conn.begin()
    for body in left_open:
        conn.send("/queue/ledger", body, headers=PERSISTENT, transaction=pending)
    conn.send("/queue/ledger", "x", headers=PERSISTENT, transaction=pending, receipt="open")
    wait_until(lambda: {"aborted", "committed", "open"} <= set(got.receipts), what="tx receipts")

    broker.kill9()
    broker.start()

    _, got, frames = consume(broker, "/queue/ledger", len(committed))
    assert bodies_in(frames) == committed
    assert got.nothing_more(), "an aborted or uncommitted send was stored"


@pytest.mark.slow
def test_acknowledged_messages_do_not_come_back_after_kill9(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    producer, produced = connect(broker)
    bodies = [f"job-{i:03d}" for i in range(60)]
    send_confirmed(producer, produced, "/queue/jobs", bodies)

    # Acknowledge every other message, each ACK with a receipt, then crash.
    conn, got, frames = consume(broker, "/queue/jobs", len(bodies))
    assert bodies_in(frames) == bodies
    acked = [f"ack-{i}" for i in range(0, len(frames), 2)]
    for i in range(0, len(frames), 2):
        conn.ack(frames[i].headers["ack"], receipt=f"ack-{i}")
    wait_until(lambda: set(acked) <= set(got.receipts), what="ACK receipts")
    broker.kill9()
    broker.start()

    # The unacknowledged half comes back, in order; acknowledge it all and crash again.
    conn, got, frames = consume(broker, "/queue/jobs", len(bodies) // 2)
    assert bodies_in(frames) == bodies[1::2]
    assert got.nothing_more(), "an acknowledged message came back"
    for i, frame in enumerate(frames):
        conn.ack(frame.headers["ack"], receipt=f"again-{i}")
    wait_until(
        lambda: {f"again-{i}" for i in range(len(frames))} <= set(got.receipts),
        what="ACK receipts",
    )
    broker.kill9()
    broker.start()

    conn, got = connect(broker)
    conn.subscribe("/queue/jobs", id="drain", ack="client-individual")
    assert got.nothing_more(wait=1.0), "an acknowledged message came back"


@pytest.mark.slow
def test_sigterm_exits_0_after_telling_clients_and_the_restart_serves_everything(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    producer, produced = connect(broker)
    bodies = [f"parcel-{i:04d}" for i in range(N)]
    send_confirmed(producer, produced, "/queue/parcels", bodies)
    _, idle = connect(broker)

    assert broker.stop() == 0
    output = broker.run_output()
    assert "shutting down" in output
    assert output.index("shutting down") < output.index("stopped")
    assert "Traceback" not in output
    assert "shutting down" in idle.error().headers["message"]  # clients are told why

    broker.start()
    _, got, frames = consume(broker, "/queue/parcels", N)
    assert bodies_in(frames) == bodies
    assert got.nothing_more()
