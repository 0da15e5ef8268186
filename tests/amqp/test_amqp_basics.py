"""AMQP 1.0 over TLS with Qpid Proton's BlockingConnection: SASL, addresses, credit,
settlement both ways, the dispositions' meaning, durable subscriptions, selectors,
browsing, dynamic nodes, and refusals with AMQP error conditions."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from proton import Message, Timeout, symbol
from proton.reactor import AtMostOnce, Copy, DurableSubscription, DynamicNodeProperties, Selector
from proton.utils import BlockingConnection, BlockingReceiver, LinkDetached

from tests.amqp.clients import AmqpClients
from tests.support import USER, BrokerThread, PahoClient, stomp_connect


def test_a_message_sent_to_a_queue_is_received_and_accepted(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    sender = conn.create_sender("queue://orders")
    sender.send(Message(body="hello", durable=True))  # waits for the broker's accepted
    receiver = conn.create_receiver("queue://orders")
    got = receiver.receive(timeout=10)
    receiver.accept()
    assert got.body == "hello"
    assert got.durable
    assert got.delivery_count == 0


def test_wrong_password_and_unknown_mechanism_are_refused(amqp: AmqpClients) -> None:
    from proton import ConnectionException

    with pytest.raises(ConnectionException):
        amqp.connect(password="not-the-password")
    with pytest.raises(ConnectionException):
        amqp.connect(None, None, mechs="ANONYMOUS")


def test_a_bare_name_is_a_queue_and_topic_prefix_a_topic(
    amqp: AmqpClients, amqp_broker: BrokerThread
) -> None:
    conn = amqp.connect()
    conn.create_sender("plain.name").send(Message(body="to the queue"))
    stomp, got = stomp_connect(amqp_broker.stomp_port, amqp_broker.ca_file)
    stomp.subscribe("/queue/plain.name", id="q", ack="auto")
    assert got.get().body == "to the queue"

    topic_receiver = conn.create_receiver("topic://news")
    conn.create_sender("topic://news").send(Message(body="headline"))
    assert topic_receiver.receive(timeout=10).body == "headline"
    topic_receiver.accept()
    stomp.disconnect()


def test_pre_settled_both_ways(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    sender = conn.create_sender("queue://fast", options=AtMostOnce())
    for i in range(20):
        sender.send(Message(body=f"m{i}"))
    receiver = conn.create_receiver("queue://fast", options=AtMostOnce(), credit=5)
    got = [receiver.receive(timeout=10).body for _ in range(20)]
    assert got == [f"m{i}" for i in range(20)]


def test_released_is_redelivered_without_counting_and_modified_counts(
    amqp: AmqpClients,
) -> None:
    conn = amqp.connect()
    conn.create_sender("queue://retry").send(Message(body="again"))
    receiver = conn.create_receiver("queue://retry", credit=1)
    first = receiver.receive(timeout=10)
    assert first.delivery_count == 0
    receiver.release(delivered=False)  # released: not counted
    second = receiver.receive(timeout=10)
    assert second.body == "again" and second.delivery_count == 0
    # modified with delivery-failed: counted (BlockingReceiver sets no flag itself).
    receiver.fetcher.unsettled[0].local.failed = True  # type: ignore[attr-defined]
    receiver.release(delivered=True)
    third = receiver.receive(timeout=10)
    assert third.body == "again" and third.delivery_count == 1
    receiver.accept()


def test_rejected_goes_to_the_dead_letter_queue(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    conn.create_sender("queue://poison").send(Message(body="bad", durable=True))
    receiver = conn.create_receiver("queue://poison", credit=1)
    assert receiver.receive(timeout=10).body == "bad"
    receiver.reject()
    dlq = conn.create_receiver("queue://ActiveMQ.DLQ")
    assert dlq.receive(timeout=10).body == "bad"
    dlq.accept()


def test_credit_bounds_what_a_receiver_is_sent(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    sender = conn.create_sender("queue://credit")
    for i in range(10):
        sender.send(Message(body=i))
    receiver = conn.create_receiver("queue://credit", credit=3)
    fetcher = receiver.fetcher
    assert fetcher is not None
    conn.wait(lambda: len(fetcher.incoming) >= 3, timeout=10, msg="3 deliveries")
    # No more than the credit arrived, until some is given back by accepting.
    assert len(fetcher.incoming) == 3
    for _ in range(10):
        receiver.receive(timeout=10)
        receiver.accept()


def test_properties_and_bodies_round_trip(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    sender = conn.create_sender("queue://typed")
    props = {"s": "text", "i": 7, "f": 1.5, "b": True, "n": None, "sym": symbol("x")}
    sender.send(
        Message(
            body={"k": "v", "n": 3},
            properties=props,
            id="my-id",
            correlation_id=uuid.UUID(int=5),
            subject="subj",
            content_type="application/x-test",
            reply_to="queue://replies",
            priority=7,
            group_id="g1",
        )
    )
    sender.send(Message(body=b"\x00\x01binary"))
    sender.send(Message(body=[1, "two", 3.0], inferred=True))
    receiver = conn.create_receiver("queue://typed")
    first = receiver.receive(timeout=10)
    receiver.accept()
    assert first.body == {"k": "v", "n": 3}
    assert first.properties == props
    assert first.id == "my-id"
    assert first.correlation_id == uuid.UUID(int=5)
    assert first.subject == "subj"
    assert first.content_type == "application/x-test"
    assert first.reply_to == "queue://replies"
    assert first.priority == 7
    assert first.group_id == "g1"
    assert first.user_id == USER.encode()  # stamped by the broker
    second = receiver.receive(timeout=10)
    receiver.accept()
    assert second.body == b"\x00\x01binary"
    third = receiver.receive(timeout=10)
    receiver.accept()
    assert third.body == [1, "two", 3.0]


def test_a_durable_subscription_keeps_messages_while_detached(amqp: AmqpClients) -> None:
    def subscribe() -> tuple[BlockingConnection, BlockingReceiver]:
        conn = amqp.connect(container_id="durable-client")
        return conn, conn.create_receiver(
            "topic://events", name="sub1", options=DurableSubscription()
        )

    conn, receiver = subscribe()
    receiver.detach()  # detach, not close: the subscription stays
    conn.close()
    producer = amqp.connect().create_sender("topic://events")
    producer.send(Message(body="while away", durable=True))
    conn, receiver = subscribe()
    assert receiver.receive(timeout=10).body == "while away"
    receiver.accept()
    receiver.close()  # detach with closed=true: the subscription goes
    conn.close()
    producer.send(Message(body="nobody", durable=True))
    conn, receiver = subscribe()
    with pytest.raises(Timeout):  # nothing was kept for it
        receiver.receive(timeout=0.5)


def test_a_selector_filters_and_copy_browses(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    sender = conn.create_sender("queue://picky")
    for colour in ("red", "blue", "red"):
        sender.send(Message(body=colour, properties={"colour": colour}))
    browser = conn.create_receiver("queue://picky", options=Copy())
    assert sorted(browser.receive(timeout=10).body for _ in range(3)) == ["blue", "red", "red"]
    browser.close()
    reds = conn.create_receiver("queue://picky", name="reds", options=Selector("colour = 'red'"))
    assert [reds.receive(timeout=10).body for _ in range(2)] == ["red", "red"]
    reds.accept()
    blues = conn.create_receiver("queue://picky", name="rest")
    assert blues.receive(timeout=10).body == "blue"


def test_a_dynamic_node_serves_request_reply(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    replies = conn.create_receiver(None, dynamic=True)
    address = replies.remote_source.address
    assert address and address.startswith("temp-queue://")
    conn.create_sender(address).send(Message(body="reply"))
    assert replies.receive(timeout=10).body == "reply"


def test_a_bad_selector_is_refused_with_a_condition_and_the_connection_goes_on(
    amqp: AmqpClients,
) -> None:
    conn = amqp.connect()
    with pytest.raises(LinkDetached) as caught:
        conn.create_receiver("queue://bad", options=Selector("colour = = 'x'"))
    assert caught.value.condition == "amqp:invalid-field"
    assert "selector" in str(caught.value).lower()
    conn.create_sender("queue://still").send(Message(body="fine"))


def test_a_user_id_other_than_the_login_is_rejected(amqp: AmqpClients) -> None:
    from proton.utils import SendException

    conn = amqp.connect()
    sender = conn.create_sender("queue://spoof")
    with pytest.raises(SendException):
        sender.send(Message(body="as someone else", user_id=b"mallory"))
    sender.send(Message(body="as myself", user_id=USER.encode()))


def test_amqp_to_stomp_and_back(amqp: AmqpClients, amqp_broker: BrokerThread) -> None:
    conn = amqp.connect()
    stomp, got = stomp_connect(amqp_broker.stomp_port, amqp_broker.ca_file)
    stomp.subscribe("/queue/cross", id="c", ack="auto")
    conn.create_sender("queue://cross").send(
        Message(body="from amqp", properties={"colour": "green"}, durable=True)
    )
    frame = got.get()
    assert frame.body == "from amqp"
    assert frame.headers["colour"] == "green"
    assert frame.headers["persistent"] == "true"

    receiver = conn.create_receiver("queue://back")
    stomp.send("/queue/back", "from stomp", headers={"colour": "blue"})
    msg = receiver.receive(timeout=10)
    receiver.accept()
    # stomp.py sends a content-length: a bytes message (ActiveMQ's rule), a data section.
    assert bytes(msg.body) == b"from stomp"
    assert msg.properties["colour"] == "blue"
    # What Qpid JMS reads a destination's kind from: a queue here, no reply-to.
    assert msg.annotations[symbol("x-opt-jms-dest")] == 0
    assert symbol("x-opt-jms-reply-to") not in msg.annotations

    news = conn.create_receiver("topic://cross.news")
    stomp.send("/topic/cross.news", "with a reply-to", headers={"reply-to": "/queue/answers"})
    msg = news.receive(timeout=10)
    news.accept()
    assert msg.reply_to == "queue://answers"
    assert msg.annotations[symbol("x-opt-jms-dest")] == 1
    assert msg.annotations[symbol("x-opt-jms-reply-to")] == 0
    stomp.disconnect()


def test_dynamic_node_properties_are_accepted(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    receiver = conn.create_receiver(
        None, dynamic=True, options=DynamicNodeProperties({"x-opt-test": "1"})
    )
    assert receiver.remote_source.address


def test_amqp_to_mqtt_and_back(amqp: AmqpClients, amqp_broker: BrokerThread) -> None:
    mqtt = PahoClient(amqp_broker.mqtt_port, amqp_broker.ca_file, version=5)
    try:
        assert mqtt.subscribe("sensors/+/temp", 1) == [1]
        conn = amqp.connect()
        conn.create_sender("topic://sensors.hall.temp").send(
            Message(body=b"21.5", durable=True, content_type="text/plain")
        )
        got = mqtt.get()
        assert got.topic == "sensors/hall/temp"
        assert got.payload == b"21.5"
        assert got.qos == 1  # persistent: delivered at the subscription's QoS 1
        assert got.properties.ContentType == "text/plain"

        receiver = conn.create_receiver("topic://sensors.>")
        assert mqtt.publish("sensors/kitchen/temp", b"19.0", 1) == 0
        msg = receiver.receive(timeout=10)
        receiver.accept()
        assert bytes(msg.body) == b"19.0"
        assert msg.durable  # QoS 1 is persistent
        assert msg.address == "topic://sensors.kitchen.temp"
    finally:
        mqtt.close()


def test_the_clients_idle_timeout_is_honoured(amqp: AmqpClients) -> None:
    # The client asks for traffic at least every 0.5 s (idle-time-out 1 s); the broker's
    # empty frames keep it open through a silent stretch longer than that.
    conn = amqp.connect(heartbeat=1)
    sender = conn.create_sender("queue://quiet")
    deadline = time.monotonic() + 3
    conn.wait(lambda: time.monotonic() > deadline, timeout=10, msg="a quiet 3 s")
    sender.send(Message(body="still here"))
    receiver = conn.create_receiver("queue://quiet")
    assert receiver.receive(timeout=10).body == "still here"


def test_a_senders_credit_is_bounded_by_bytes_in_flight(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    small = conn.create_sender("queue://sizes")
    conn.wait(lambda: small.link.credit > 0, timeout=10, msg="first credit")
    # Until a link has shown its sizes, credit is for the largest message the broker
    # takes (100 MiB here): one at a time.
    assert small.link.credit == 1
    for _ in range(20):
        small.send(Message(body=b"x" * 1024, durable=True))  # each waits for its answer
    # Small messages open the window: between half of it and all of it.
    assert 250 <= small.link.credit <= 500
    large = conn.create_sender("queue://sizes.large")
    seen = []
    for _ in range(8):
        large.send(Message(body=b"y" * (2 * 1024 * 1024), durable=True))
        seen.append(large.link.credit)
    # 2 MiB messages against the 8 MiB budget: never more than 4 in flight.
    assert max(seen) <= 4, seen
    for address, count in (("queue://sizes", 20), ("queue://sizes.large", 8)):
        receiver = conn.create_receiver(address)
        for _ in range(count):
            receiver.receive(timeout=10)
            receiver.accept()


def test_decimal_properties_keep_their_value(amqp: AmqpClients, amqp_broker: BrokerThread) -> None:
    from decimal import Decimal

    from proton import decimal32, decimal64, decimal128

    conn = amqp.connect()
    stomp, got = stomp_connect(amqp_broker.stomp_port, amqp_broker.ca_file)
    stomp.subscribe("/queue/decimals.stomp", id="d", ack="auto")
    props = {
        "d32": decimal32(0xB2000019),  # -2.5: exponent -1, coefficient 25
        "d64": decimal64(0x31C0000000000001),  # 1
        "d128": decimal128((0x303E0000000000000000000000000457).to_bytes(16, "big")),  # 111.1
    }
    conn.create_sender("queue://decimals").send(Message(body="d", properties=props))
    conn.create_sender("queue://decimals.stomp").send(Message(body="d", properties=props))
    receiver = conn.create_receiver("queue://decimals")
    msg = receiver.receive(timeout=10)
    receiver.accept()
    # Carried as their values (not their bits), handed back as decimal128.
    back = {k: Decimal(0) for k in props}
    for key, value in msg.properties.items():
        assert isinstance(value, decimal128), (key, value)
        back[key] = _decimal128_value(value)
    assert back == {"d32": Decimal("-2.5"), "d64": Decimal(1), "d128": Decimal("111.1")}
    frame = got.get()
    assert (frame.headers["d32"], frame.headers["d64"], frame.headers["d128"]) == (
        "-2.5",
        "1",
        "111.1",
    )
    stomp.disconnect()


def _decimal128_value(value: bytes) -> Any:
    from sealmq.wire.amqp import decimal_from_bid

    return decimal_from_bid(int.from_bytes(value, "big"), 128)


def test_closing_a_session_detaches_its_links(amqp: AmqpClients) -> None:
    from proton import Endpoint

    conn = amqp.connect()
    # A session of its own (BlockingConnection puts its links on one it keeps).
    session = conn.conn.session()
    session.open()
    first = conn.container.create_receiver(session, "queue://session.close", name="first")
    first.flow(10)
    conn.wait(lambda: bool(first.state & Endpoint.REMOTE_ACTIVE), timeout=10, msg="attach")
    session.close()
    conn.wait(lambda: bool(session.state & Endpoint.REMOTE_CLOSED), timeout=10, msg="end")
    # The closed session's receiver had credit: were its link still the broker's
    # consumer, the message would go to it and never reach the second one.
    conn.create_sender("queue://session.close").send(Message(body="after", durable=True))
    second = conn.create_receiver("queue://session.close", credit=10, name="second")
    assert second.receive(timeout=10).body == "after"
    second.accept()
