"""STOMP answered as ActiveMQ 5.17 answers it (issue #8), through stomp.py over TLS.

Seen before the fix: an ACK/NACK for a message not awaiting acknowledgement on the
named subscription got an ERROR and the connection was closed, and a destination with
none of the known prefixes was refused. ActiveMQ answers the first with ``ERROR
Unexpected NACK received for message-id [...]`` and keeps the connection (a SEND with a
receipt afterwards succeeds, other subscriptions go on), and treats the second as a
queue of that name. ``docs/stomp.md`` lists which errors still close the connection.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import stomp

from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    Collector,
    stomp_connect,
    tls_client_context,
    wait_until,
)


def connect(broker: BrokerThread, **kw: object) -> tuple[stomp.Connection, Collector]:
    return stomp_connect(broker.stomp_port, broker.ca_file, **kw)  # type: ignore[arg-type]


def subscribed(conn: stomp.Connection, got: Collector, dest: str, sub_id: str, **kw: str) -> None:
    conn.subscribe(dest, id=sub_id, receipt=f"sub-{sub_id}", **kw)
    wait_until(lambda: f"sub-{sub_id}" in got.receipts, what=f"SUBSCRIBE {sub_id} receipt")


def still_served(conn: stomp.Connection, got: Collector, tag: str) -> None:
    """A SEND with a receipt on the same connection succeeds afterwards."""
    conn.send("/queue/after-error", "x", headers={"persistent": "true"}, receipt=tag)
    wait_until(lambda: tag in got.receipts, what=f"RECEIPT {tag}")
    assert conn.is_connected()


def test_a_stomp_11_nack_naming_another_subscription_is_not_fatal(broker: BrokerThread) -> None:
    conn, got = connect(broker, version="1.1")
    subscribed(conn, got, "/queue/work", "worker", ack="client-individual")
    subscribed(conn, got, "/topic/news", "news", ack="auto")
    conn.send("/queue/work", "job")
    job = got.get()
    message_id = job.headers["message-id"]

    conn.nack(message_id, "news", receipt="bad-nack")
    error = got.error()
    assert error.headers["message"].startswith(
        f"Unexpected NACK received for message-id [{message_id}]"
    )
    assert error.headers["receipt-id"] == "bad-nack"
    assert "bad-nack" not in got.receipts

    still_served(conn, got, "after-nack")
    # The other subscription keeps receiving, and the pending ack is still pending.
    conn.send("/topic/news", "extra")
    assert got.get().body == "extra"
    conn.ack(message_id, "worker", receipt="good-ack")
    wait_until(lambda: "good-ack" in got.receipts, what="ACK receipt")
    assert got.errors.empty()
    conn.disconnect()


def test_a_stomp_12_ack_for_an_unknown_id_is_not_fatal(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    subscribed(conn, got, "/queue/acks", "s", ack="client-individual")
    conn.send("/queue/acks", "one")
    one = got.get()
    conn.ack("9:ID:nowhere-1", receipt="r-bad")
    error = got.error()
    assert "Unexpected ACK received for message-id [ID:nowhere-1]" in error.headers["message"]
    assert error.headers["receipt-id"] == "r-bad"
    conn.ack(one.headers["ack"], receipt="r-good")
    wait_until(lambda: "r-good" in got.receipts, what="ACK receipt")
    still_served(conn, got, "after-ack")
    conn.disconnect()


Request = Callable[[stomp.Connection], object]
DURABLE = {"activemq.subscriptionName": "n"}
BAD_SELECTOR = {"selector": "color = 'red"}
REFUSED: list[tuple[str, Request, str]] = [
    ("COMMIT of no transaction", lambda c: c.commit("tx-9"), "tx-9"),
    ("SEND in no transaction", lambda c: c.send("/queue/a", "x", transaction="tx-8"), "tx-8"),
    ("bad priority", lambda c: c.send("/queue/a", "x", headers={"priority": "12"}), "priority"),
    ("durable on a queue", lambda c: c.subscribe("orders", id="d", headers=DURABLE), "topics"),
    ("UNSUBSCRIBE of an unknown id", lambda c: c.unsubscribe("nope"), "nope"),
    ("duplicate subscription id", lambda c: c.subscribe("/queue/b", id="kept"), "kept"),
    (
        "a selector that does not parse",
        lambda c: c.subscribe("/queue/c", id="c", headers=BAD_SELECTOR),
        "invalid selector at column 9: unterminated string literal",
    ),
]


@pytest.mark.parametrize(("name", "request_", "words"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_requests_get_an_error_and_the_connection_goes_on(
    broker: BrokerThread, name: str, request_: Request, words: str
) -> None:
    conn, got = connect(broker)
    subscribed(conn, got, "/queue/kept", "kept", ack="auto")
    request_(conn)
    assert words in got.error().headers["message"], name
    still_served(conn, got, "after")
    conn.send("/queue/kept", "still delivered")
    assert got.get().body == "still delivered"
    conn.disconnect()


def test_an_ack_in_an_unknown_transaction_leaves_the_message_pending(
    broker: BrokerThread,
) -> None:
    conn, got = connect(broker)
    subscribed(conn, got, "/queue/tx-ack", "s", ack="client-individual")
    conn.send("/queue/tx-ack", "pending", headers={"persistent": "true"})
    frame = got.get()
    conn.ack(frame.headers["ack"], transaction="tx-none")
    assert "tx-none" in got.error().headers["message"]
    conn.ack(frame.headers["ack"], receipt="acked")
    wait_until(lambda: "acked" in got.receipts, what="ACK receipt")
    assert got.errors.empty()
    conn.disconnect()


def test_a_second_connect_is_refused_without_closing(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    conn.transport.transmit(stomp.utils.Frame("CONNECT", {"accept-version": "1.2"}))
    assert "already connected" in got.error().headers["message"]
    still_served(conn, got, "after-connect")
    conn.disconnect()


@pytest.mark.parametrize("name", ["orders", "/exchange/amq.fanout"])
def test_a_destination_without_a_prefix_is_a_queue_of_that_name(
    broker: BrokerThread, name: str
) -> None:
    conn, got = connect(broker)
    subscribed(conn, got, f"/queue/{name}", "by-prefix", ack="auto")
    conn.send(name, "to the plain name", receipt="sent")
    frame = got.get()
    assert frame.body == "to the plain name"
    assert frame.headers["destination"] == f"/queue/{name}"
    assert frame.headers["subscription"] == "by-prefix"
    wait_until(lambda: "sent" in got.receipts, what="SEND receipt")
    conn.unsubscribe("by-prefix")

    # Subscribing with the plain name reads the same queue.
    subscribed(conn, got, name, "plain", ack="auto")
    conn.send(f"/queue/{name}", "to the prefixed name")
    frame = got.get()
    assert (frame.body, frame.headers["subscription"]) == ("to the prefixed name", "plain")
    assert got.errors.empty()
    conn.disconnect()


def test_a_reply_to_without_a_prefix_travels_as_a_header(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    subscribed(conn, got, "/queue/requests", "r", ack="auto")
    conn.send("/queue/requests", "ping", headers={"reply-to": "replies"})
    assert got.get().headers["reply-to"] == "replies"
    conn.disconnect()


@pytest.mark.parametrize("value", ["abc", "1000", "-1,0"])
def test_a_bad_heart_beat_header_is_refused_at_connect(broker: BrokerThread, value: str) -> None:
    """Fatal, as in ActiveMQ ("Invalid heart-beat header"); it used to leave the login hung."""
    sock = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=TIMEOUT)
    with tls_client_context(broker.ca_file).wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(
            f"CONNECT\naccept-version:1.2\nhost:x\nlogin:{USER}\npasscode:{PASSWORD}\n"
            f"heart-beat:{value}\n\n\x00".encode()
        )
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    assert data.startswith(b"ERROR\n")
    assert b"heart-beat" in data


def test_an_error_comes_after_the_receipts_of_earlier_frames(broker: BrokerThread) -> None:
    sock = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=TIMEOUT)
    with tls_client_context(broker.ca_file).wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(
            f"CONNECT\naccept-version:1.2\nhost:x\nlogin:{USER}\npasscode:{PASSWORD}\n\n\x00".encode()
        )
        # A persistent SEND (its receipt waits for the fsync), then a refused ACK, at once.
        tls.sendall(
            b"SEND\ndestination:/queue/ordered\npersistent:true\nreceipt:r-send\n\nx\x00"
            b"ACK\nid:1:ID:nowhere\nreceipt:r-ack\n\n\x00"
            b"SEND\ndestination:/queue/ordered\nreceipt:r-last\n\ny\x00"
        )
        data = b""
        while data.count(b"\x00") < 4:
            chunk = tls.recv(4096)
            assert chunk, f"closed: {data!r}"
            data += chunk
    frames = [f.lstrip(b"\n") for f in data.split(b"\x00") if f.strip(b"\n")]
    commands = [
        (f.split(b"\n", 1)[0], f.split(b"receipt-id:")[1].split(b"\n")[0]) for f in frames[1:]
    ]
    assert commands == [(b"RECEIPT", b"r-send"), (b"ERROR", b"r-ack"), (b"RECEIPT", b"r-last")]


def test_selectors_compare_stomp_string_headers_with_numbers_as_activemq_does(
    broker: BrokerThread,
) -> None:
    """ActiveMQ 5.17, checked: headers n:0..n:19 with kind even/odd and the selector
    ``kind = 'odd' AND n > 10`` deliver m11, m13, m15, m17 and m19; a second consumer
    on the queue with the opposite selector gets the others, none twice."""
    conn, got = connect(broker)
    other, rest = connect(broker)
    subscribed(conn, got, "/queue/selected", "odd", headers={"selector": "kind = 'odd' AND n > 10"})
    subscribed(
        other,
        rest,
        "/queue/selected",
        "rest",
        headers={"selector": "NOT (kind = 'odd' AND n > 10)"},
    )
    for n in range(20):
        kind = "odd" if n % 2 else "even"
        conn.send("/queue/selected", f"m{n}", headers={"n": str(n), "kind": kind})
    assert [got.get().body for _ in range(5)] == ["m11", "m13", "m15", "m17", "m19"]
    assert sorted(rest.get().body for _ in range(15)) == sorted(
        f"m{n}" for n in range(20) if not (n % 2 and n > 10)
    )
    still_served(conn, got, "after-selected")
    assert got.nothing_more() and rest.nothing_more()
    conn.disconnect()
    other.disconnect()


def test_a_queue_browser_sees_what_is_queued_then_browser_end(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    for n in range(3):
        conn.send("/queue/browsed", f"b{n}", headers={"persistent": "true"}, receipt=f"s{n}")
    wait_until(lambda: {"s0", "s1", "s2"} <= set(got.receipts), what="receipts")
    subscribed(conn, got, "/queue/browsed", "look", headers={"browser": "true"})
    frames = got.take(4)
    assert [f.body for f in frames[:3]] == ["b0", "b1", "b2"]
    end = frames[3]
    assert end.headers["browser"] == "end"
    assert end.headers["subscription"] == "look"
    assert end.headers["destination"] == "/queue/browsed"
    assert end.body == ""
    # Browsing consumed nothing.
    subscribed(conn, got, "/queue/browsed", "take")
    assert [f.body for f in got.take(3)] == ["b0", "b1", "b2"]
    conn.disconnect()


def test_an_exclusive_consumer_gets_everything_and_a_priority_one_goes_first(
    broker: BrokerThread,
) -> None:
    first, got_first = connect(broker)
    second, got_second = connect(broker)
    subscribed(first, got_first, "/queue/solo", "a")
    subscribed(second, got_second, "/queue/solo", "b", headers={"activemq.exclusive": "true"})
    for n in range(4):
        first.send("/queue/solo", f"e{n}")
    assert [f.body for f in got_second.take(4)] == ["e0", "e1", "e2", "e3"]
    assert got_first.nothing_more()

    low, got_low = connect(broker)
    high, got_high = connect(broker)
    subscribed(low, got_low, "/queue/ranked", "low", headers={"activemq.priority": "1"})
    subscribed(high, got_high, "/queue/ranked", "high", headers={"activemq.priority": "9"})
    for n in range(4):
        low.send("/queue/ranked", f"p{n}")
    assert [f.body for f in got_high.take(4)] == ["p0", "p1", "p2", "p3"]
    assert got_low.nothing_more()
    for conn in (first, second, low, high):
        conn.disconnect()


def test_a_bad_consumer_priority_is_refused(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    conn.subscribe("/queue/p", id="p", headers={"activemq.priority": "200"})
    assert "activemq.priority must be 0..127" in got.error().headers["message"]
    still_served(conn, got, "after-priority")
    conn.disconnect()


def test_a_composite_destination_reaches_each_queue_and_topic(broker: BrokerThread) -> None:
    conn, got = connect(broker)
    listener, heard = connect(broker)
    subscribed(conn, got, "/queue/comp.a", "a")
    subscribed(conn, got, "/queue/comp.b", "b")
    subscribed(listener, heard, "/topic/comp.c", "c")
    conn.send(
        "/queue/comp.a,comp.b,/topic/comp.c", "fan", headers={"persistent": "true"}, receipt="r"
    )
    wait_until(lambda: "r" in got.receipts, what="RECEIPT")
    frames = got.take(2)
    assert sorted(f.headers["destination"] for f in frames) == ["/queue/comp.a", "/queue/comp.b"]
    assert heard.get().headers["destination"] == "/topic/comp.c"
    assert all(f.body == "fan" for f in frames)
    conn.disconnect()
    listener.disconnect()
