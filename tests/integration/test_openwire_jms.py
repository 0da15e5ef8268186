"""OpenWire over TLS, proven with ActiveMQ's own JMS client (issue 11).

Each test runs one JVM (``tests/openwire/java/JmsChecks.java``) doing several named
checks against a broker serving OpenWire and STOMP over TLS on free ports; the
program prints ``OK <check>`` or ``FAIL <check>: <why>`` and the test asserts on them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmq.config import AuthorizationSettings, Listener, UserSettings
from sealmq.wire.openwire import OpenWireCodec, Structure, Type
from tests.jms import Jms, truststore
from tests.support import (
    PASSWORD,
    TIMEOUT,
    BrokerThread,
    MqttClients,
    make_settings,
    paho_properties,
    stomp_connect,
    tls_client_context,
    wait_until,
)


@pytest.fixture(scope="module")
def ow_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    settings = make_settings(
        tmp_path_factory.mktemp("openwire") / "data",
        listeners=(
            Listener("stomp", 0),
            Listener("openwire", 0),
            Listener("mqtt", 0),
            Listener("amqp", 0),
        ),
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def jms(
    ow_broker: BrokerThread, jms_classes: Path, tmp_path_factory: pytest.TempPathFactory
) -> Jms:
    assert ow_broker.running is not None
    store = truststore(ow_broker.ca_file, tmp_path_factory.mktemp("trust") / "trust.p12")
    return Jms(jms_classes, store, ow_broker.running.port("openwire"))


@pytest.mark.slow
def test_queues_with_every_acknowledge_mode(jms: Jms) -> None:
    checks = (
        "queueAuto",
        "clientAck",
        "clientAckClosedRedelivers",
        "dupsOk",
        "individualAck",
        "transacted",
        "deadLetter",
    )
    jms.run(*checks).assert_ok(*checks)


def test_topics_consumer_options_and_a_wrong_password(jms: Jms) -> None:
    """Pub/sub, no-local, exclusive consumers, a message group, JMSSecurityException."""
    checks = ("topicPubSub=t.news", "consumerOptions=t.options", "wrongPassword")
    jms.run(*checks).assert_ok("topicPubSub", "consumerOptions", "wrongPassword")


def test_durable_subscribers_selectors_priority_and_time_to_live(jms: Jms) -> None:
    checks = ("durable=t.durable", "selectors", "priority", "timeToLive", "browser")
    jms.run(*checks).assert_ok("durable", "selectors", "priority", "timeToLive", "browser")


def test_every_message_type_and_jms_header(jms: Jms) -> None:
    jms.run("messageTypes").assert_ok("messageTypes")


def test_temporary_queue_request_reply_pull_consumers_and_the_producer_window(jms: Jms) -> None:
    checks = ("requestReply", "prefetchZero", "asyncWindow")
    jms.run(*checks).assert_ok(*checks)


def test_jms_and_stomp_see_each_other_as_activemq_maps_them(
    jms: Jms, ow_broker: BrokerThread
) -> None:
    conn, got = stomp_connect(ow_broker.stomp_port, ow_broker.ca_file)
    try:
        # ActiveMQ: a SEND without content-length is a TextMessage, with one a BytesMessage.
        conn.auto_content_length = False
        conn.send("/queue/x.from-stomp", "stomp text", headers={"custom": "v1"})
        conn.auto_content_length = True
        conn.send("/queue/x.from-stomp", b"stomp bytes", receipt="sent")
        wait_until(lambda: "sent" in got.receipts, what="SEND receipt")
        run = jms.run("fromStomp=x.from-stomp", "toStomp=x.to-stomp")
        run.assert_ok("fromStomp", "toStomp")
        conn.subscribe("/queue/x.to-stomp", id="s", ack="auto")
        text, raw = got.take(2)
        # A TextMessage is a text body (its properties are headers); a BytesMessage has a
        # content-length and its bytes as they were.
        assert text.body == "jms text \u00e9"
        assert text.headers["custom"] == "v2"
        assert text.headers["number"] == "5"
        assert text.headers["correlation-id"] == "c-9"
        assert "message-id" in text.headers
        assert raw.headers["content-length"] == "3"
    finally:
        conn.disconnect()


def _raw_session(broker: BrokerThread, payload: bytes) -> list[Structure]:
    """Send a WireFormatInfo then ``payload`` over TLS; what the broker answers until it
    closes."""
    assert broker.running is not None
    codec = OpenWireCodec(tight=False)  # so that ``payload`` may be loose
    codec.send(codec.wire_format_info())
    context = tls_client_context(broker.ca_file)
    got: list[Structure] = []
    with (
        socket.create_connection(("127.0.0.1", broker.running.port("openwire")), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"".join(codec.data_to_send()) + payload)
        reader = OpenWireCodec(tight=False)
        while chunk := tls.recv(65536):
            reader.receive_data(chunk)
            got.extend(reader.events_received())
    return got


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x00\x00\x00\x02\xfe\x00", "unknown data structure type 254"),
        (b"\x7f\xff\xff\xff", "over the maximum frame size"),
        (b"\x00\x00\x00\x03\x0a\x00\x00", "ends before its fields"),
    ],
)
def test_malformed_input_gets_a_connection_error_then_the_connection_closes(
    ow_broker: BrokerThread, jms: Jms, payload: bytes, why: str
) -> None:
    got = _raw_session(ow_broker, payload)
    # The WireFormatInfo before the bad command is answered, then the error closes.
    assert [c.type for c in got] == [Type.WIREFORMAT_INFO, Type.BROKER_INFO, Type.CONNECTION_ERROR]
    assert why in got[-1].exception.message
    # Other connections are unaffected.
    jms.run("topicPubSub=t.after-garbage").assert_ok("topicPubSub")


def test_a_command_before_connection_info_is_refused(ow_broker: BrokerThread) -> None:
    session = Structure(
        Type.SESSION_INFO,
        command_id=1,
        response_required=True,
        session_id=Structure(Type.SESSION_ID, connection_id="ID:x", value=1),
    )
    sender = OpenWireCodec()
    sender.send(session)
    got = _raw_session(ow_broker, b"".join(sender.data_to_send()))
    assert got[-1].type == Type.CONNECTION_ERROR
    assert "before ConnectionInfo" in got[-1].exception.message


def test_compressed_bodies_are_inflated_for_stomp_and_xa_and_a_taken_client_id_refused(
    jms: Jms, ow_broker: BrokerThread
) -> None:
    conn, got = stomp_connect(ow_broker.stomp_port, ow_broker.ca_file)
    try:
        conn.subscribe("/queue/x.compressed", id="c", ack="auto")
        # What JMS reads back (its own consumer's check) is sent from here, uncompressed.
        conn.auto_content_length = False  # a text message
        conn.send("/queue/x.compressed.back", "compressible " * 200, receipt="back")
        wait_until(lambda: "back" in got.receipts, what="SEND receipt")
        run = jms.run("compressed=x.compressed", "xaRefused", "duplicateClientId")
        run.assert_ok("compressed", "xaRefused", "duplicateClientId")
        text, raw = got.take(2)
        assert text.body == "compressible " * 200
        assert raw.headers["content-length"] == str(len("compressible " * 200))
    finally:
        conn.disconnect()


def test_keep_alives_are_sent_and_a_silent_client_is_closed(ow_broker: BrokerThread) -> None:
    """A client asking for a 300 ms inactivity period gets it (the smaller of both),
    KeepAliveInfo every third of it, and is closed after 1.5 periods of silence."""
    assert ow_broker.running is not None
    hello = OpenWireCodec(max_inactivity_ms=300)
    hello.send(hello.wire_format_info())
    context = tls_client_context(ow_broker.ca_file)
    got: list[Structure] = []
    with (
        socket.create_connection(("127.0.0.1", ow_broker.running.port("openwire")), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"".join(hello.data_to_send()))
        reader = OpenWireCodec()
        while chunk := tls.recv(65536):
            reader.receive_data(chunk)
            got.extend(reader.events_received())
    types = [c.type for c in got]
    assert types[:2] == [Type.WIREFORMAT_INFO, Type.BROKER_INFO]
    assert Type.KEEP_ALIVE_INFO in types
    assert types[-1] == Type.CONNECTION_ERROR
    assert "inactive for too (>300) long" in got[-1].exception.message


def test_jms_and_mqtt_see_each_other_as_activemq_maps_them(
    jms: Jms, ow_broker: BrokerThread
) -> None:
    clients = MqttClients(ow_broker.mqtt_port, ow_broker.ca_file)
    try:
        jms.run("mqttSubscribe=x.from-mqtt").assert_ok("mqttSubscribe")
        publisher = clients.paho()
        publisher.publish(
            "x/from-mqtt",
            b"mqtt payload",
            1,
            properties=paho_properties("PUBLISH", UserProperty=[("origin", "from-mqtt")]),
        )
        subscriber = clients.paho()
        subscriber.subscribe("x/to-mqtt", 1)
        run = jms.run("fromMqtt=x.from-mqtt", "toMqtt=x.to-mqtt")
        run.assert_ok("fromMqtt", "toMqtt")
        text, raw = subscriber.take(2)
        assert text.payload == b"jms to mqtt"
        assert ("origin", "from-jms") in text.properties.UserProperty
        assert raw.payload == b"\x01\x02\x03"
    finally:
        clients.close_all()


def test_jms_and_amqp_see_each_other_as_activemq_maps_them(
    jms: Jms, ow_broker: BrokerThread
) -> None:
    from proton import Message, symbol

    from tests.amqp.clients import AmqpClients

    assert ow_broker.running is not None
    amqp = AmqpClients(ow_broker.running.port("amqp"), ow_broker.ca_file)
    try:
        conn = amqp.connect()
        # AMQP to JMS: an amqp-value string is a TextMessage, a data section a
        # BytesMessage, application properties are JMS properties (fromStomp's checks).
        sender = conn.create_sender("queue://x.from-amqp")
        sender.send(Message(body="stomp text", properties={"custom": "v1"}, durable=True))
        sender.send(Message(body=b"stomp bytes", inferred=True, durable=True))
        jms.run("fromStomp=x.from-amqp").assert_ok("fromStomp")
        # JMS to AMQP, as Qpid JMS expects ActiveMQ to present them.
        jms.run("toStomp=x.to-amqp").assert_ok("toStomp")
        receiver = conn.create_receiver("queue://x.to-amqp")
        text = receiver.receive(timeout=TIMEOUT)
        receiver.accept()
        raw = receiver.receive(timeout=TIMEOUT)
        receiver.accept()
        assert text.body == "jms text \u00e9"
        assert text.properties["custom"] == "v2" and text.properties["number"] == 5
        assert text.correlation_id == "c-9"
        assert str(text.id).startswith("ID:")
        assert text.annotations[symbol("x-opt-jms-msg-type")] == 5  # TextMessage
        assert text.annotations[symbol("x-opt-jms-dest")] == 0  # a queue
        assert bytes(raw.body) == b"\x00\n\xc8"
        assert raw.annotations[symbol("x-opt-jms-msg-type")] == 3  # BytesMessage
    finally:
        amqp.close_all()


def test_a_client_that_asks_for_loose_encoding_gets_it(jms: Jms) -> None:
    """The suite's other clients negotiate tight encoding (both offer it); this one
    offers only loose, and the same checks pass."""
    url = f"{jms.url}?wireFormat.tightEncodingEnabled=false"
    jms.run("queueAuto=q.loose", "messageTypes=q.loose-types", url=url).assert_ok(
        "queueAuto", "messageTypes"
    )


def test_the_authorization_map_refuses_with_jms_security_exceptions(
    tmp_path: Path, jms_classes: Path
) -> None:
    def entry(destination: str, read: str, write: str, admin: str) -> AuthorizationSettings:
        return AuthorizationSettings(
            destination, frozenset({read}), frozenset({write}), frozenset({admin})
        )

    settings = make_settings(
        tmp_path / "data",
        listeners=(Listener("openwire", 0),),
        users=(UserSettings("reader", PASSWORD, frozenset({"readers"})),),
        authorization=(
            entry("queue://orders.>", "readers", "writers", "readers"),
            entry("topic://ActiveMQ.Advisory.>", "*", "admins", "admins"),
            entry("queue://>", "admins", "admins", "admins"),
        ),
    )
    broker = BrokerThread(settings).start()
    try:
        assert broker.running is not None
        store = truststore(broker.ca_file, tmp_path / "trust.p12")
        jms = Jms(jms_classes, store, broker.running.port("openwire"), user="reader")
        jms.run("authorization=orders.a").assert_ok("authorization")
    finally:
        broker.stop()
