"""STOMP features through stomp.py over TLS against a broker on a free port.

The tests share one broker (``shared_broker``): each uses queues, client ids and
durable subscriptions of its own.
"""

from __future__ import annotations

import time

import pytest
import stomp

from sealmq.adapters.stomp import HEARTBEAT_GRACE, MIN_HEARTBEAT_MS
from tests.support import PASSWORD, TIMEOUT, USER, BrokerThread, stomp_connect, wait_until


def connect(broker: BrokerThread, **kw: object) -> tuple[stomp.Connection, object]:
    return stomp_connect(broker.stomp_port, broker.ca_file, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_send_and_receive_on_a_queue_each_version(
    shared_broker: BrokerThread, version: str, unique: str
) -> None:
    conn, got = connect(shared_broker, version=version)
    conn.subscribe(f"/queue/greetings.{unique}", id="s1", ack="auto")
    conn.send(f"/queue/greetings.{unique}", "hello", headers={"persistent": "true"})
    frame = got.get()
    assert frame.body == "hello"
    assert frame.headers["destination"] == f"/queue/greetings.{unique}"
    assert frame.headers["persistent"] == "true"
    assert frame.headers["message-id"].startswith("ID:")
    conn.disconnect()


def test_negotiates_highest_common_version(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker, version="1.1")
    assert got.connected[0].headers["version"] == "1.1"
    conn.disconnect()


def test_wrong_password_gets_error_and_close(shared_broker: BrokerThread) -> None:
    conn = stomp.Connection12([("127.0.0.1", shared_broker.stomp_port)])
    conn.set_ssl(
        for_hosts=[("127.0.0.1", shared_broker.stomp_port)], ca_certs=str(shared_broker.ca_file)
    )
    from tests.support import Collector

    got = Collector()
    conn.set_listener("c", got)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(USER, "wrong", wait=True)
    error = got.error()
    assert "Authentication failed" in error.headers["message"]


def test_receipts_and_disconnect_receipt(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.send("/queue/r", "x", headers={"persistent": "true"}, receipt="r-1")
    conn.subscribe("/queue/r", id="s", ack="auto", receipt="r-2")
    wait_until(lambda: {"r-1", "r-2"} <= set(got.receipts), what="receipts")
    conn.disconnect(receipt="bye")
    assert "bye" in got.receipts


def test_topic_fan_out_with_wildcards(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/topic/prices.>", id="all", ack="auto")
    conn.subscribe("/topic/prices.*.eur", id="eur", ack="auto")
    conn.subscribe("/topic/other", id="other", ack="auto", receipt="subs")
    wait_until(lambda: "subs" in got.receipts)
    conn.send("/topic/prices.stock.eur", "42")
    frames = got.take(2)
    assert sorted(f.headers["subscription"] for f in frames) == ["all", "eur"]
    assert all(f.headers["destination"] == "/topic/prices.stock.eur" for f in frames)
    assert got.nothing_more()
    conn.disconnect()


def test_competing_consumers_share_a_queue(shared_broker: BrokerThread) -> None:
    a, got_a = connect(shared_broker)
    b, got_b = connect(shared_broker)
    a.subscribe(
        "/queue/work", id="a", ack="client-individual", headers={"activemq.prefetchSize": "1"}
    )
    b.subscribe(
        "/queue/work",
        id="b",
        ack="client-individual",
        headers={"activemq.prefetchSize": "1"},
        receipt="sb",
    )
    wait_until(lambda: "sb" in got_b.receipts)
    producer, _ = connect(shared_broker)
    for i in range(4):
        producer.send("/queue/work", f"job-{i}")
    first_a, first_b = got_a.get(), got_b.get()
    # Prefetch 1: nothing more until each acks.
    assert got_a.nothing_more() and got_b.nothing_more()
    a.ack(first_a.headers["ack"])
    b.ack(first_b.headers["ack"])
    second_a, second_b = got_a.get(), got_b.get()
    bodies = {f.body for f in (first_a, first_b, second_a, second_b)}
    assert bodies == {f"job-{i}" for i in range(4)}
    for conn in (a, b, producer):
        conn.disconnect()


def test_client_ack_is_cumulative_and_unacked_are_redelivered(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/queue/cum", id="s", ack="client")
    for i in range(3):
        conn.send("/queue/cum", f"m{i}")
    frames = got.take(3)
    conn.ack(frames[1].headers["ack"])  # covers m0 and m1
    conn.disconnect()
    again, got2 = connect(shared_broker)
    again.subscribe("/queue/cum", id="s", ack="auto")
    frame = got2.get()
    assert frame.body == "m2"
    assert frame.headers.get("redelivered") == "true"
    assert got2.nothing_more()
    again.disconnect()


def test_nack_redelivers_then_dead_letters(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/queue/poison", id="s", ack="client-individual")
    conn.send("/queue/poison", "bad", headers={"persistent": "true"})
    for _ in range(7):  # the first delivery and 6 redeliveries
        frame = got.get()
        assert frame.body == "bad"
        conn.nack(frame.headers["ack"])
    assert got.nothing_more()
    conn.subscribe("/queue/ActiveMQ.DLQ", id="dlq", ack="auto")
    dead = got.get()
    assert dead.body == "bad"
    assert "redelivery policy" in dead.headers["dlqDeliveryFailureCause"]
    conn.disconnect()


def test_transactions_commit_and_abort(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/queue/tx", id="s", ack="auto", receipt="sub")
    wait_until(lambda: "sub" in got.receipts)
    conn.begin("t1")
    conn.send("/queue/tx", "committed", transaction="t1")
    assert got.nothing_more()
    conn.commit("t1")
    assert got.get().body == "committed"
    conn.begin("t2")
    conn.send("/queue/tx", "aborted", transaction="t2")
    conn.abort("t2")
    assert got.nothing_more()
    conn.disconnect()


def test_acks_in_an_aborted_transaction_are_redelivered(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/queue/txack", id="s", ack="client-individual")
    conn.send("/queue/txack", "m")
    frame = got.get()
    conn.begin("t")
    conn.ack(frame.headers["ack"], transaction="t")
    conn.abort("t")
    again = got.get()
    assert again.body == "m" and again.headers.get("redelivered") == "true"
    conn.disconnect()


def test_priority_and_expiry(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    now_ms = int(time.time() * 1000)
    conn.send("/queue/prio", "low", headers={"priority": "1"})
    conn.send("/queue/prio", "gone", headers={"expires": str(now_ms - 1)})
    conn.send("/queue/prio", "high", headers={"priority": "9"}, receipt="sent")
    wait_until(lambda: "sent" in got.receipts)
    conn.subscribe("/queue/prio", id="s", ack="auto")
    assert [f.body for f in got.take(2)] == ["high", "low"]
    assert got.nothing_more()
    conn.disconnect()


def test_headers_travel_as_properties_and_jms_fields(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker)
    conn.subscribe("/queue/props", id="s", ack="auto")
    conn.send(
        "/queue/props",
        "x",
        headers={
            "correlation-id": "corr-1",
            "type": "order",
            "JMSXGroupID": "g1",
            "custom": "a:b\nc\\d",
        },
    )
    frame = got.get()
    assert frame.headers["correlation-id"] == "corr-1"
    assert frame.headers["type"] == "order"
    assert frame.headers["JMSXGroupID"] == "g1"
    assert frame.headers["custom"] == "a:b\nc\\d"
    conn.disconnect()


def test_binary_body_with_nul_bytes(shared_broker: BrokerThread) -> None:
    conn, got = connect(shared_broker, auto_decode=False)
    conn.subscribe("/queue/bin", id="s", ack="auto")
    body = bytes(range(256)) * 4
    conn.send("/queue/bin", body, content_type="application/octet-stream")
    frame = got.get()
    assert frame.body == body
    assert int(frame.headers["content-length"]) == len(body)
    conn.disconnect()


def test_temp_queue_request_reply(shared_broker: BrokerThread) -> None:
    requester, got_req = connect(shared_broker)
    server, got_srv = connect(shared_broker)
    server.subscribe("/queue/service", id="srv", ack="auto", receipt="ready")
    wait_until(lambda: "ready" in got_srv.receipts)
    requester.subscribe("/temp-queue/replies", id="r", ack="auto")
    requester.send("/queue/service", "ping", headers={"reply-to": "/temp-queue/replies"})
    request = got_srv.get()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/remote-temp-queue/")
    server.send(reply_to, "pong")
    reply = got_req.get()
    assert reply.body == "pong"
    assert reply.headers["destination"] == "/temp-queue/replies"
    requester.disconnect()
    server.disconnect()


def test_temp_topic_request_reply_and_refused_once_deleted(shared_broker: BrokerThread) -> None:
    requester, got_req = connect(shared_broker)
    server, got_srv = connect(shared_broker)
    server.subscribe("/queue/service.t", id="srv", ack="auto", receipt="ready")
    wait_until(lambda: "ready" in got_srv.receipts)
    requester.subscribe("/temp-topic/answers", id="r", ack="auto", receipt="sub")
    wait_until(lambda: "sub" in got_req.receipts)
    requester.send("/queue/service.t", "ping", headers={"reply-to": "/temp-topic/answers"})
    reply_to = got_srv.get().headers["reply-to"]
    assert reply_to.startswith("/remote-temp-topic/")
    server.send(reply_to, "pong")
    reply = got_req.get()
    assert (reply.body, reply.headers["destination"]) == ("pong", "/temp-topic/answers")
    requester.disconnect()
    assert shared_broker.running is not None
    core = shared_broker.running.broker
    name = reply_to.removeprefix("/remote-temp-topic/")
    wait_until(
        lambda: not shared_broker.call(lambda: name in core.temp_topics),
        what="the requester's connection closed in the broker",
    )
    # Its connection gone, the temporary topic is too: a send to it is an error.
    server.send(reply_to, "late", receipt="late")
    error = got_srv.errors.get(timeout=TIMEOUT)
    assert "does not exist" in error.headers["message"]
    server.disconnect()


def test_durable_subscription_receives_while_offline(shared_broker: BrokerThread) -> None:
    sub, got = connect(shared_broker, client_id="durable-client")
    headers = {"activemq.subscriptionName": "audit"}
    sub.subscribe("/topic/events", id="d", ack="client-individual", headers=headers, receipt="s")
    wait_until(lambda: "s" in got.receipts)
    sub.disconnect()
    producer, _ = connect(shared_broker)
    producer.send("/topic/events", "while-offline", headers={"persistent": "true"})
    producer.disconnect()
    back, got2 = connect(shared_broker, client_id="durable-client")
    back.subscribe("/topic/events", id="d", ack="client-individual", headers=headers)
    frame = got2.get()
    assert frame.body == "while-offline"
    back.ack(frame.headers["ack"])
    back.unsubscribe("d", headers=headers, receipt="gone")
    wait_until(lambda: "gone" in got2.receipts)
    back.disconnect()


def test_same_client_id_twice_is_refused(shared_broker: BrokerThread) -> None:
    first, _ = connect(shared_broker, client_id="only-one")
    with pytest.raises(stomp.exception.ConnectFailedException):
        connect(shared_broker, client_id="only-one")
    first.disconnect()


def test_heart_beats_keep_an_idle_connection_alive(shared_broker: BrokerThread) -> None:
    interval = MIN_HEARTBEAT_MS / 1000
    # The client beats every interval; it asks the broker for one every two, so a
    # broker thread late on a loaded machine does not trip stomp.py's own 1.5x check.
    conn, got = connect(shared_broker, heartbeats=(MIN_HEARTBEAT_MS, 2 * MIN_HEARTBEAT_MS))
    # No traffic but heart-beats, for one interval past the point where the broker
    # closes a client that stays silent (HEARTBEAT_GRACE intervals).
    idle = interval * (HEARTBEAT_GRACE + 1)
    assert not got.disconnected.wait(idle), "a heart-beating connection was closed"
    assert conn.is_connected()
    # The broker beats at least once per agreed interval (2 s) too.
    assert got.heartbeats >= int(idle / (2 * interval)), f"only {got.heartbeats} heart-beats"
    conn.subscribe("/queue/hb", id="s", ack="auto")
    conn.send("/queue/hb", "still here")
    assert got.get().body == "still here"
    conn.disconnect()


def test_silent_client_is_disconnected_after_heart_beat_timeout(
    shared_broker: BrokerThread,
) -> None:
    import socket
    import ssl

    started = time.monotonic()
    context = ssl.create_default_context(cafile=str(shared_broker.ca_file))
    raw = socket.create_connection(("127.0.0.1", shared_broker.stomp_port), timeout=TIMEOUT)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(
        f"CONNECT\naccept-version:1.2\nhost:x\nlogin:{USER}\npasscode:{PASSWORD}\n"
        "heart-beat:1000,0\n\n\x00".encode()
    )
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"CONNECTED")
    assert time.monotonic() < deadline, "the broker never closed the silent connection"
    # Not before the client's promised interval had passed HEARTBEAT_GRACE times.
    assert time.monotonic() - started >= HEARTBEAT_GRACE * MIN_HEARTBEAT_MS / 1000
    tls.close()
