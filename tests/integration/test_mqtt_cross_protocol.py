"""STOMP <-> MQTT on one broker, the ActiveMQ way (``docs/mqtt.md``).

MQTT topic ``a/b/c`` is the core topic ``a.b.c`` that STOMP names ``/topic/a.b.c``;
``+`` is ``*`` and ``#`` is ``>``. Bodies cross unchanged, STOMP headers and MQTT 5 user
properties are the same message properties, and the JMS-style fields (persistence,
correlation id, reply-to, expiry) map onto their MQTT 5 counterparts. The tests share
one broker (``shared_broker``, ``shared_mqtt``).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support import BrokerThread, MqttClients, paho_properties, stomp_connect, wait_until

V311_AND_V5 = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def stomp(broker: BrokerThread, **kw: str):  # type: ignore[no-untyped-def]
    return stomp_connect(broker.stomp_port, broker.ca_file, auto_decode=False, **kw)


def stomp_subscribed(broker: BrokerThread, destination: str):  # type: ignore[no-untyped-def]
    conn, got = stomp(broker)
    conn.subscribe(destination, id="s", ack="auto", headers={"receipt": "sub"})
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    return conn, got


# ----------------------------------------------------------------- STOMP -> MQTT


@V311_AND_V5
def test_stomp_send_reaches_mqtt_subscribers_of_the_same_topic(
    shared_broker: BrokerThread, shared_mqtt: MqttClients, version: int
) -> None:
    filters = ["a/b/c", "a/#", "a/+/c", "+/b/+"]
    clients = []
    for i, topic_filter in enumerate(filters):
        client = shared_mqtt.paho(version=version, client_id=f"x-{i}")
        assert client.subscribe(topic_filter, 1) == [1]
        clients.append(client)
    conn, _ = stomp(shared_broker)
    body = bytes(range(256))  # not text: content-length keeps it a bytes message
    conn.send("/topic/a.b.c", body, headers={"persistent": "true", "content-length": "256"})
    for client in clients:
        message = client.get()
        assert (message.topic, message.payload, message.qos) == ("a/b/c", body, 1)
    conn.disconnect()


def test_stomp_headers_become_v5_properties(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    client = shared_mqtt.paho(version=5, client_id="v5-from-stomp")
    assert client.subscribe("orders/#", 1) == [1]
    conn, _ = stomp(shared_broker)
    expires = int(time.time() * 1000) + 600_000
    conn.send(
        "/topic/orders.new",
        '{"id": 7}',
        headers={
            "persistent": "true",
            "amq-msg-type": "text",  # stomp.py sends content-length: a bytes message otherwise
            "content-type": "application/json",
            "correlation-id": "corr-7",
            "reply-to": "/topic/orders.replies",
            "expires": str(expires),
            "x-tenant": "acme",
            "x-priority-class": "gold",
        },
    )
    message = client.get()
    props = message.properties
    assert message.topic == "orders/new"
    assert message.payload == b'{"id": 7}'
    assert props.ContentType == "application/json"
    assert props.CorrelationData == b"corr-7"
    assert props.ResponseTopic == "orders/replies"
    assert 590 <= props.MessageExpiryInterval <= 600
    assert {("x-tenant", "acme"), ("x-priority-class", "gold")} <= set(props.UserProperty)
    assert props.PayloadFormatIndicator == 1  # a text message is UTF-8
    conn.disconnect()


def test_stomp_persistence_is_the_mqtt_qos(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    client = shared_mqtt.paho(version=4, client_id="qos-from-stomp")
    assert client.subscribe("p/#", 2) == [2]
    conn, _ = stomp(shared_broker)
    conn.send("/topic/p.persistent", "kept", headers={"persistent": "true"})
    conn.send("/topic/p.transient", "not kept")
    got = {m.topic: m.qos for m in client.take(2)}
    assert got == {"p/persistent": 1, "p/transient": 0}
    conn.disconnect()


# ----------------------------------------------------------------- MQTT -> STOMP


@V311_AND_V5
def test_mqtt_publish_reaches_stomp_subscribers(
    shared_broker: BrokerThread, shared_mqtt: MqttClients, version: int
) -> None:
    exact, got_exact = stomp_subscribed(shared_broker, "/topic/a.b.c")
    wild, got_wild = stomp_subscribed(shared_broker, "/topic/a.>")
    body = b"\x00\x01binary\xff"
    publisher = shared_mqtt.paho(version=version)
    publisher.publish("a/b/c", body, 1)
    publisher.publish("a/b/d", b"qos zero", 0)
    for got in (got_exact, got_wild):
        frame = got.get()
        assert frame.body == body
        assert frame.headers["destination"] == "/topic/a.b.c"
        assert frame.headers["persistent"] == "true"  # QoS 1 and 2 are persistent
    frame = got_wild.get()
    assert (frame.body, frame.headers["persistent"]) == (b"qos zero", "false")
    assert got_exact.nothing_more()
    exact.disconnect()
    wild.disconnect()


def test_v5_properties_become_stomp_headers(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    conn, got = stomp_subscribed(shared_broker, "/topic/rpc.requests")
    props = paho_properties(
        "PUBLISH",
        UserProperty=[("x-tenant", "acme"), ("x-step", "2")],
        ContentType="text/plain",
        CorrelationData=b"req-42",
        ResponseTopic="rpc/replies/c1",
        MessageExpiryInterval=600,
    )
    shared_mqtt.paho(version=5).publish("rpc/requests", b"ping", 2, properties=props)
    frame = got.get()
    headers = frame.headers
    assert frame.body == b"ping"
    assert (headers["x-tenant"], headers["x-step"]) == ("acme", "2")
    assert headers["content-type"] == "text/plain"
    assert headers["correlation-id"] == "req-42"
    assert headers["reply-to"] == "/topic/rpc.replies.c1"
    assert 0 < int(headers["expires"]) - int(time.time() * 1000) <= 600_000
    conn.disconnect()


def test_dots_and_slashes_swap_between_the_protocols(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    conn, got = stomp_subscribed(shared_broker, "/topic/v1/api.status")
    client = shared_mqtt.paho(version=4, client_id="dots")
    assert client.subscribe("v1.api/#", 1) == [1]
    shared_mqtt.paho(version=4).publish("v1.api/status", b"up", 1)
    assert got.get().headers["destination"] == "/topic/v1/api.status"
    assert client.get().topic == "v1.api/status"
    conn.send("/topic/v1/api.health", "ok")
    assert client.get().topic == "v1.api/health"
    conn.disconnect()


def test_wildcard_characters_inside_a_level_are_literal(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    conn, got = stomp_subscribed(shared_broker, "/topic/lit.>")
    client = shared_mqtt.paho(version=4, client_id="literal")
    assert client.subscribe("lit/#", 1) == [1]
    publisher = shared_mqtt.paho(version=4)
    for topic in ("lit/b*c", "lit/x>y", "lit/$z"):
        publisher.publish(topic, topic, 1)
    assert [m.topic for m in client.take(3)] == ["lit/b*c", "lit/x>y", "lit/$z"]
    assert [f.headers["destination"] for f in got.take(3)] == [
        "/topic/lit.b*c",
        "/topic/lit.x>y",
        "/topic/lit.$z",
    ]
    # A whole level "*" or ">" would be a wildcard in the core: refused (docs/shared_mqtt.md).
    assert client.subscribe("lit/*", 1) == [0x80]
    conn.send("/topic/lit.a+b", "no MQTT name")  # "+" cannot be in an MQTT topic name
    conn.send("/topic/lit.fine", "named")
    assert client.get().topic == "lit/fine"
    assert client.nothing_more()
    conn.disconnect()


def test_a_request_reply_across_protocols(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    # An MQTT 5 requester, a STOMP responder replying to the MQTT Response Topic.
    requester = shared_mqtt.paho(version=5, client_id="requester")
    assert requester.subscribe("replies/requester", 1) == [1]
    responder, requests = stomp_subscribed(shared_broker, "/topic/service.calls")
    props = paho_properties("PUBLISH", ResponseTopic="replies/requester", CorrelationData=b"call-1")
    requester.publish("service/calls", b"what time is it", 1, properties=props)
    request = requests.get()
    responder.send(
        request.headers["reply-to"],
        "noon",
        headers={"correlation-id": request.headers["correlation-id"], "persistent": "true"},
    )
    reply = requester.get()
    assert (reply.topic, reply.payload) == ("replies/requester", b"noon")
    assert reply.properties.CorrelationData == b"call-1"
    responder.disconnect()


# ----------------------------------------------------------------- sessions in the core


def test_a_kept_sessions_subscriptions_are_durable_subscriptions_of_the_core(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    client = shared_mqtt.paho(version=4, client_id="durable-client", clean=False)
    assert client.subscribe_many([("d/one", 1), ("d/two/+", 2)]) == [1, 2]
    client.disconnect()

    def durable() -> list[tuple[str, str]]:
        assert shared_broker.running is not None
        infos = shared_broker.running.broker.durable_subscriptions("durable-client")
        return sorted((info.name, info.destination.name) for info in infos)

    assert shared_broker.call(durable) == [("d/one", "d.one"), ("d/two/+", "d.two.*")]

    # A STOMP producer's persistent messages wait in them while the client is away.
    conn, _ = stomp(shared_broker)
    conn.send("/topic/d.one", "for later", headers={"persistent": "true", "receipt": "r"})
    conn.send("/topic/d.two.x", "for later too", headers={"persistent": "true"})
    conn.disconnect()
    back = shared_mqtt.paho(version=4, client_id="durable-client", clean=False)
    assert sorted(m.payload for m in back.take(2)) == [b"for later", b"for later too"]


@V311_AND_V5
def test_mqtt_publishes_to_a_virtual_topic_reach_each_applications_queue(
    shared_broker: BrokerThread, shared_mqtt: MqttClients, version: int
) -> None:
    """ActiveMQ's virtual topics: devices publish on MQTT topic ``VirtualTopic/<x>``;
    each application consumes its own queue ``Consumer.<app>.VirtualTopic.<x>`` over
    STOMP, with competing consumers on it."""
    topic = f"VirtualTopic.Readings{version}"
    billing = [stomp_subscribed(shared_broker, f"/queue/Consumer.Billing.{topic}") for _ in "ab"]
    audit, audited = stomp_subscribed(shared_broker, f"/queue/Consumer.Audit.{topic}")
    publisher = shared_mqtt.paho(version=version)
    sent = [f"reading-{n}".encode() for n in range(6)]
    for body in sent:
        publisher.publish(topic.replace(".", "/"), body, 1)
    assert sorted(audited.get().body for _ in sent) == sorted(sent)
    deadline = time.monotonic() + 10
    got: list[bytes] = []
    while len(got) < len(sent) and time.monotonic() < deadline:
        for _, collector in billing:
            while not collector.messages.empty():
                got.append(collector.messages.get().body)
        time.sleep(0.01)
    assert sorted(got) == sorted(sent)  # each reading once, across the competing consumers
    for conn, _ in (*billing, (audit, audited)):
        conn.disconnect()


def test_advisories_reach_stomp_and_mqtt_watchers(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    """ActiveMQ's advisory topics, read as JSON by any protocol: an MQTT client watches
    connections, a STOMP one the consumers of a queue."""
    watcher = shared_mqtt.paho(version=5, client_id="advisory-watcher")
    assert watcher.subscribe("ActiveMQ/Advisory/Connection", 0) == [0]
    consumers, seen = stomp_subscribed(
        shared_broker, "/topic/ActiveMQ.Advisory.Consumer.Queue.jobs"
    )
    app, _ = stomp(shared_broker, client_id="advised-app")
    app.subscribe("/queue/jobs", id="j", ack="auto")
    frame = seen.get()
    advice = json.loads(frame.body)
    assert (advice["event"], advice["destination"]) == ("consumer-started", "queue://jobs")
    assert frame.headers["consumerCount"] == "1" and frame.headers["type"] == "Advisory"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event = json.loads(watcher.get().payload)
        if event.get("clientId") == "advised-app":
            break
    assert event["event"] == "connected"
    app.disconnect()
    consumers.disconnect()


def test_an_mqtt5_user_property_schedules_delivery(
    shared_broker: BrokerThread, shared_mqtt: MqttClients
) -> None:
    """``AMQ_SCHEDULED_DELAY`` as an MQTT 5 user property holds the message back, as the
    STOMP header does."""
    subscriber = shared_mqtt.paho(version=5, client_id="scheduled-sub")
    assert subscriber.subscribe("scheduled/readings", 1) == [1]
    publisher = shared_mqtt.paho(version=5, client_id="scheduled-pub")
    props = paho_properties("PUBLISH", UserProperty=[("AMQ_SCHEDULED_DELAY", "800")])
    start = time.monotonic()
    publisher.publish("scheduled/readings", b"later", 1, properties=props)
    publisher.publish("scheduled/readings", b"now", 1)
    assert subscriber.get().payload == b"now"
    assert subscriber.get().payload == b"later"
    assert time.monotonic() - start >= 0.8
