"""The authorization map through every protocol's real client: the same scenarios, the
same refusals, each in its protocol's words.

Clients: stomp.py (TCP and WebSocket), paho-mqtt 3.1.1 and 5 (TCP and WebSocket), and
Node's ``mqtt`` over WSS. MQTT names only topics and has no temporary destinations:
the queue and temporary-destination scenarios run on STOMP, over TCP and WSS.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import ssl
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
import stomp
from proton import Message as AmqpMessage
from proton import Timeout as AmqpTimeout
from proton.utils import LinkDetached, SendException

from sealmq.config import AuthorizationSettings, Listener, UserSettings
from tests.amqp.clients import AmqpClients
from tests.integration.test_websocket import NODE_MODULES, _node
from tests.support import (
    TIMEOUT,
    BrokerThread,
    Collector,
    PahoClient,
    stomp_connect,
    wss_settings,
)

PASSWORD = "a-long-enough-password"
USERS = (
    UserSettings("reader", PASSWORD, frozenset({"readers"})),
    UserSettings("writer", PASSWORD, frozenset({"writers"})),
    UserSettings("boss", PASSWORD, frozenset({"admins"})),
    UserSettings("bob", PASSWORD, frozenset()),
)


def _entry(
    destination: str,
    read: tuple[str, ...] = (),
    write: tuple[str, ...] = (),
    admin: tuple[str, ...] = (),
) -> AuthorizationSettings:
    return AuthorizationSettings(destination, frozenset(read), frozenset(write), frozenset(admin))


AUTHORIZATION = (
    _entry("topic://orders.>", ("readers",), ("writers",), ("readers", "writers")),
    _entry("queue://orders.>", ("readers",), ("writers",), ("readers", "writers")),
    _entry("topic://prices.*", ("readers",), ("writers",), ("readers", "writers")),
    # Creating a managed.* topic is the admins' only.
    _entry("topic://managed.>", ("readers",), ("writers",), ("admins",)),
    _entry("topic://ActiveMQ.Advisory.>", ("*",)),
    _entry("topic://>", ("admins",), ("admins",), ("admins",)),
    _entry("queue://>", ("admins",), ("admins",), ("admins",)),
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    settings = wss_settings(
        tmp_path_factory.mktemp("authz") / "data",
        users=USERS,
        authorization=AUTHORIZATION,
        listeners=(
            Listener("stomp", 0),
            Listener("mqtt", 0),
            Listener("wss", 0),
            Listener("amqp", 0),
        ),
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


_names = itertools.count()


def _unique(name: str) -> str:
    """A destination of this test's own (the module's tests share one broker)."""
    return f"{name}.n{next(_names)}"


class Client(Protocol):
    """One logged-in connection, as each protocol's client sees the broker's answers."""

    def subscribe(self, destination: str) -> bool:
        """Subscribe to ``topic://x`` / ``queue://x``; whether the broker accepted."""
        ...

    def send(self, destination: str, body: str) -> bool | None:
        """Whether the broker accepted; None where the protocol cannot tell (MQTT 3.1.1)."""
        ...

    def received(self) -> str:
        """The next message's body (bounded wait)."""
        ...

    def nothing_more(self) -> bool: ...

    def close(self) -> None: ...


class StompClient:
    def __init__(self, broker: BrokerThread, user: str | None, *, websocket: bool) -> None:
        password = PASSWORD if user is not None else None
        if websocket:
            hosts = [("127.0.0.1", broker.wss_port)]
            self.conn: Any = stomp.WSConnection(hosts, ws_path="/stomp")
            self.conn.set_ssl(
                for_hosts=hosts, ca_certs=str(broker.ca_file), ssl_version=ssl.PROTOCOL_TLS_CLIENT
            )
            self.collector = Collector()
            self.conn.set_listener("collector", self.collector)
            self.conn.connect(user, password, wait=True)
        else:
            self.conn, self.collector = stomp_connect(
                broker.stomp_port, broker.ca_file, login=user, passcode=password
            )
        self._receipts = itertools.count()
        self.errors: list[Any] = []

    @staticmethod
    def name(destination: str) -> str:
        kind, _, name = destination.partition("://")
        return f"/{kind}/{name}" if kind in ("queue", "topic") else destination

    def answer(self, receipt: str) -> bool:
        """True for the RECEIPT of ``receipt``, False for an ERROR naming it."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if receipt in self.collector.receipts:
                return True
            with contextlib.suppress(queue.Empty):
                error = self.collector.errors.get(timeout=0.02)
                self.errors.append(error)
                if error.headers.get("receipt-id") == receipt:
                    return False
        raise AssertionError(f"neither RECEIPT nor ERROR for {receipt}")

    def subscribe(self, destination: str, **headers: str) -> bool:
        receipt = f"s{next(self._receipts)}"
        self.conn.subscribe(
            self.name(destination), id=receipt, headers={"receipt": receipt, **headers}
        )
        return self.answer(receipt)

    def send(self, destination: str, body: str, **headers: str) -> bool | None:
        receipt = f"r{next(self._receipts)}"
        self.conn.send(self.name(destination), body, headers={"receipt": receipt, **headers})
        return self.answer(receipt)

    def received(self) -> str:
        return str(self.collector.get().body)

    def nothing_more(self) -> bool:
        return bool(self.collector.nothing_more())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.disconnect()


def mqtt_name(destination: str) -> str:
    kind, _, name = destination.partition("://")
    assert kind == "topic", "MQTT names only topics"
    return name.replace(".", "/").replace("*", "+").replace(">", "#")


class MqttClient:
    def __init__(
        self, broker: BrokerThread, user: str | None, *, version: int, websocket: bool
    ) -> None:
        self.version = version
        port = broker.wss_port if websocket else broker.mqtt_port
        self.paho = PahoClient(
            port,
            broker.ca_file,
            version=version,
            username=user,
            password=PASSWORD if user is not None else None,
            websocket_path="/mqtt" if websocket else None,
        )
        assert self.paho.connack is not None and self.paho.connack.reason_code == 0

    def subscribe(self, destination: str) -> bool:
        codes = self.paho.subscribe(mqtt_name(destination), 1)
        # MQTT 5: 0x87 not authorized; 3.1.1 has only 0x80 for any failure.
        assert codes[0] in (0, 1, 0x87 if self.version == 5 else 0x80), codes
        return codes[0] < 0x80

    def send(self, destination: str, body: str) -> bool | None:
        code = self.paho.publish(mqtt_name(destination), body.encode(), 1)
        if self.version == 5:
            assert code in (0, 0x10, 0x87), code
            return code < 0x80
        # MQTT 3.1.1 has no negative PUBACK: a refused message is acknowledged and dropped.
        assert code == 0
        return None

    def received(self) -> str:
        return bytes(self.paho.get().payload).decode()

    def nothing_more(self) -> bool:
        return bool(self.paho.nothing_more())

    def close(self) -> None:
        self.paho.close()


class AmqpClient:
    """Qpid Proton's BlockingConnection: a refused link is detached with a condition, a
    refused transfer is answered ``rejected``."""

    def __init__(self, broker: BrokerThread, user: str | None) -> None:
        assert broker.running is not None
        amqp = AmqpClients(broker.running.port("amqp"), broker.ca_file)
        if user is None:
            self.conn = amqp.connect(None, None, mechs="ANONYMOUS")
        else:
            self.conn = amqp.connect(user, PASSWORD)
        self.receivers: list[Any] = []
        self.senders: dict[str, Any] = {}

    def subscribe(self, destination: str) -> bool:
        try:
            receiver = self.conn.create_receiver(destination, name=f"r{next(_names)}")
        except LinkDetached as refused:
            assert refused.condition == "amqp:unauthorized-access", refused
            return False
        self.receivers.append(receiver)
        return True

    def send(self, destination: str, body: str) -> bool | None:
        try:
            sender = self.senders.get(destination)
            if sender is None:
                sender = self.conn.create_sender(destination, name=f"s{next(_names)}")
                self.senders[destination] = sender
            sender.send(AmqpMessage(body=body))
        except LinkDetached as refused:
            assert refused.condition == "amqp:unauthorized-access", refused
            return False
        except SendException:
            return False
        return True

    def _next(self, wait: float) -> str | None:
        deadline = time.monotonic() + wait
        while True:
            for receiver in self.receivers:
                with contextlib.suppress(AmqpTimeout):
                    message = receiver.receive(timeout=0.02)
                    receiver.accept()
                    return str(message.body)
            if time.monotonic() > deadline:
                return None

    def received(self) -> str:
        body = self._next(TIMEOUT)
        assert body is not None, "no message arrived in time"
        return body

    def nothing_more(self) -> bool:
        return self._next(0.3) is None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


CLIENTS = {
    "amqp": lambda b, u: AmqpClient(b, u),
    "stomp": lambda b, u: StompClient(b, u, websocket=False),
    "stomp-wss": lambda b, u: StompClient(b, u, websocket=True),
    "mqtt311": lambda b, u: MqttClient(b, u, version=4, websocket=False),
    "mqtt5": lambda b, u: MqttClient(b, u, version=5, websocket=False),
    "mqtt311-wss": lambda b, u: MqttClient(b, u, version=4, websocket=True),
    "mqtt5-wss": lambda b, u: MqttClient(b, u, version=5, websocket=True),
}
STOMP_CLIENTS = ("stomp", "stomp-wss")


@pytest.fixture(params=sorted(CLIENTS))
def clients(request: pytest.FixtureRequest, secured: BrokerThread) -> Iterator[Any]:
    """``clients(user)`` opens a connection of this test's protocol as ``user``."""
    made: list[Client] = []

    def open_client(user: str) -> Any:
        client = CLIENTS[request.param](secured, user)
        made.append(client)
        return client

    open_client.kind = request.param  # type: ignore[attr-defined]
    yield open_client
    for client in made:
        client.close()


@pytest.fixture(params=STOMP_CLIENTS)
def stomp_clients(request: pytest.FixtureRequest, secured: BrokerThread) -> Iterator[Any]:
    made: list[StompClient] = []

    def open_client(user: str) -> StompClient:
        client = CLIENTS[request.param](secured, user)
        assert isinstance(client, StompClient)
        made.append(client)
        return client

    yield open_client
    for client in made:
        client.close()


def _refused(answer: bool | None) -> bool:
    """A refused send: False, or None where the protocol cannot say (then the test
    checks that nothing arrived)."""
    return answer is not True


# ----------------------------------------------------------------- every protocol


def test_a_reader_may_not_write(clients: Any) -> None:
    topic = _unique("topic://orders")
    reader = clients("reader")
    assert reader.subscribe(topic)
    assert _refused(reader.send(topic, "forged"))
    writer = clients("writer")
    assert writer.send(topic, "real") is not False
    assert reader.received() == "real"  # the forged one never arrived
    assert reader.nothing_more()


def test_a_writer_may_not_read(clients: Any) -> None:
    topic = _unique("topic://orders")
    writer = clients("writer")
    assert not writer.subscribe(topic)
    reader = clients("reader")
    assert reader.subscribe(topic)
    assert writer.send(topic, "for readers") is not False
    assert reader.received() == "for readers"
    assert writer.nothing_more()


def test_wildcards_need_an_entry_covering_the_whole_pattern(clients: Any) -> None:
    reader = clients("reader")
    assert reader.subscribe("topic://prices.*")
    assert not reader.subscribe("topic://prices.>")
    assert not reader.subscribe("topic://>")
    writer = clients("writer")
    assert writer.send("topic://prices.eur", "1.08") is not False
    assert _refused(writer.send("topic://prices.eur.usd", "too deep"))
    assert reader.received() == "1.08"
    assert reader.nothing_more()


def test_advisory_topics_are_read_by_everyone_written_by_no_client(clients: Any) -> None:
    bob = clients("bob")
    assert bob.subscribe("topic://ActiveMQ.Advisory.Queue")
    assert _refused(bob.send("topic://ActiveMQ.Advisory.Queue", "forged advisory"))
    boss = clients("boss")
    assert _refused(boss.send("topic://ActiveMQ.Advisory.Queue", "forged advisory"))
    assert bob.nothing_more()


def test_a_user_without_grants_is_refused_everything(clients: Any) -> None:
    topic = _unique("topic://orders")
    bob = clients("bob")
    assert not bob.subscribe(topic)
    assert not bob.subscribe("topic://>")
    reader = clients("reader")
    assert reader.subscribe(topic)
    assert _refused(bob.send(topic, "from bob"))
    assert reader.nothing_more()


def test_first_use_creates_and_needs_admin(clients: Any) -> None:
    topic = _unique("topic://managed")
    reader = clients("reader")
    assert not reader.subscribe(topic)  # may read, but the topic does not exist yet
    writer = clients("writer")
    assert _refused(writer.send(topic, "early"))
    boss = clients("boss")
    assert boss.subscribe(topic)  # the admin's use creates it
    assert reader.subscribe(topic)
    assert writer.send(topic, "now") is not False
    assert reader.received() == "now"


def test_an_unknown_user_is_refused_at_connect(secured: BrokerThread) -> None:
    conn, collector = stomp_connect(
        secured.stomp_port, secured.ca_file, login="mallory", passcode=PASSWORD, wait=False
    )
    error = collector.error()
    assert error.headers["message"].startswith("Authentication failed")
    conn.disconnect()
    for version in (4, 5):
        paho = PahoClient(
            secured.mqtt_port,
            secured.ca_file,
            version=version,
            username="mallory",
            password=PASSWORD,
            connect=False,
        )
        try:
            connack = paho.connect()
            # paho names 3.1.1's return code 4 and MQTT 5's 0x86 both 0x86.
            assert connack is not None and connack.reason_code == 0x86
        finally:
            paho.close()


# ----------------------------------------------------------------- STOMP: queues, temporary


def test_queues_and_receipts(stomp_clients: Any) -> None:
    name = _unique("queue://orders")
    writer = stomp_clients("writer")
    assert writer.send(name, "job")
    assert not writer.subscribe(name)
    error = writer.errors[-1]
    assert error.headers["message"] == f"User writer is not authorized to read from: {name}"
    # The refusal is not fatal: the connection goes on.
    assert writer.send(name, "job 2")
    reader = stomp_clients("reader")
    assert reader.subscribe(name)
    assert {reader.received(), reader.received()} == {"job", "job 2"}
    assert not reader.send(name, "x")
    assert reader.errors[-1].headers["message"] == (
        f"User reader is not authorized to write to: {name}"
    )
    assert not stomp_clients("bob").send("queue://billing", "x")


def test_temporary_queues_take_replies_from_anyone_and_readers_only_of_their_own(
    stomp_clients: Any,
) -> None:
    requests = _unique("queue://orders")
    reader = stomp_clients("reader")
    writer = stomp_clients("writer")
    assert reader.subscribe("/temp-queue/replies")
    assert reader.subscribe(requests)
    assert writer.send(requests, "question", **{"reply-to": "/temp-queue/mine"}) is True
    frame = reader.collector.get()
    remote = frame.headers["reply-to"]
    assert remote.startswith("/remote-temp-queue/")
    # The writer's temp queue takes the reader's reply...
    assert reader.send(remote, "answer")
    # ... but nobody but its connection may consume it.
    assert not reader.subscribe(remote)
    assert "another connection's" in reader.errors[-1].headers["message"]
    temp_topic = stomp_clients("bob")
    assert temp_topic.subscribe("/temp-topic/events")


def test_denials_are_logged_with_user_address_and_destination(
    secured: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    client = StompClient(secured, "bob", websocket=False)
    try:
        with caplog.at_level(logging.INFO, logger="sealmq.security"):
            assert not client.send("queue://payroll", "the secret body")
    finally:
        client.close()
    lines = [r.getMessage() for r in caplog.records if "payroll" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("denied: user 'bob' from 127.0.0.1:")
    assert lines[0].endswith("User bob is not authorized to write to: queue://payroll")
    assert "the secret body" not in caplog.text and PASSWORD not in caplog.text


# ----------------------------------------------------------------- Node mqtt over WSS

NODE_AUTHZ = """
const fs = require("fs");
const mqtt = require("mqtt");
const client = mqtt.connect(process.env.URL, {
  ca: fs.readFileSync(process.env.CA), username: process.env.USER_NAME,
  password: process.env.PASSWORD, protocolVersion: 5, reconnectPeriod: 0,
  connectTimeout: 10000,
});
client.on("error", (err) => { console.log("error " + err.message); process.exit(2); });
client.on("connect", () => {
  client.subscribe(process.env.TOPIC, { qos: 1 }, (err, granted) => {
    console.log("suback " + (err ? err.message : granted[0].qos));
    client.publish(process.env.TOPIC, "x", { qos: 1 }, (err) => {
      console.log("puback " + (err ? err.code : 0));
      client.end(false, () => process.exit(0));
    });
  });
});
setTimeout(() => { console.log("timeout"); process.exit(3); }, 20000);
"""


@pytest.mark.parametrize(
    ("user", "suback", "puback"),
    [
        ("writer", "Subscribe error: Not authorized", "0"),
        ("bob", "Subscribe error: Not authorized", "135"),
        ("reader", "1", "135"),
    ],
)
def test_node_mqtt_over_wss(secured: BrokerThread, user: str, suback: str, puback: str) -> None:
    assert (NODE_MODULES / "mqtt").is_dir()
    topic = mqtt_name(_unique("topic://orders"))
    proc = _node(
        NODE_AUTHZ,
        {
            "URL": f"wss://127.0.0.1:{secured.wss_port}/mqtt",
            "CA": str(secured.ca_file),
            "USER_NAME": user,
            "PASSWORD": PASSWORD,
            "TOPIC": topic,
        },
    )
    out, err = proc.communicate(timeout=TIMEOUT * 3)
    assert proc.returncode == 0, out + err
    assert out.splitlines()[:2] == [f"suback {suback}", f"puback {puback}"], out + err
