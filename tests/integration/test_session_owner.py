"""Sessions belong to their user (issue #8): another user with the same client id is refused.

Seen before the fix: a persistent MQTT session of alice was resumed by bob connecting with
the same client id (session present, alice's queued message delivered to bob). Now bob is
refused (MQTT 3.1.1 CONNACK 0x05, MQTT 5 0x87, STOMP ERROR), the session is untouched, and
alice still gets her message, also across a broker restart. paho-mqtt and stomp.py over TLS.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stomp

from sealmq.config import Settings, UserSettings
from sealmq.wire.mqtt import Connect, MqttCodec
from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerThread,
    Collector,
    MqttClients,
    mqtt_settings,
    paho_properties,
    stomp_connect,
    tls_client_context,
    wait_until,
)

ALICE, BOB = ("alice", "alice-secret"), ("bob", "bob-secret")
NOT_AUTHORIZED_V5 = 0x87
NOT_AUTHORIZED_V311 = 0x05


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    users = tuple(
        UserSettings(name, password, frozenset({"admins"}))
        for name, password in ((USER, PASSWORD), ALICE, BOB)
    )
    return mqtt_settings(tmp_path / "data", users=users)


class Run:
    """One run of the broker over ``settings``' data folder; restart keeps the folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = BrokerThread(settings).start()
        self.mqtt = MqttClients(self.broker.mqtt_port, self.broker.ca_file)
        self.stomps: list[stomp.Connection] = []

    def stomp(self, user: tuple[str, str], **kw: object) -> tuple[stomp.Connection, Collector]:
        conn, got = stomp_connect(
            self.broker.stomp_port,
            self.broker.ca_file,
            login=user[0],
            passcode=user[1],
            **kw,  # type: ignore[arg-type]
        )
        self.stomps.append(conn)
        return conn, got

    def restart(self) -> None:
        self.stop()
        self.broker = BrokerThread(self.settings).start()
        self.mqtt = MqttClients(self.broker.mqtt_port, self.broker.ca_file)

    def stop(self) -> None:
        self.mqtt.close_all()
        for conn in self.stomps:
            if conn.is_connected():
                conn.disconnect()
        self.stomps.clear()
        self.broker.stop()


@pytest.fixture
def run(settings: Settings) -> Iterator[Run]:
    each = Run(settings)
    yield each
    each.stop()


def kept(version: int, client_id: str, user: tuple[str, str]) -> dict[str, object]:
    values: dict[str, object] = {
        "version": version,
        "client_id": client_id,
        "clean": False,
        "username": user[0],
        "password": user[1],
    }
    if version == 5:
        values["properties"] = paho_properties("CONNECT", SessionExpiryInterval=3600)
    return values


def raw_connack(run: Run, level: int, client_id: str, user: tuple[str, str]) -> bytes:
    """The CONNACK bytes a hand-made CONNECT gets (paho maps 3.1.1 codes to v5 ones)."""
    codec = MqttCodec(server=False)
    codec.protocol_level = level
    codec.send(Connect(level, False, 60, client_id, None, user[0], user[1].encode()))
    sock = socket.create_connection(("127.0.0.1", run.broker.mqtt_port), timeout=TIMEOUT)
    context = tls_client_context(run.broker.ca_file)
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"".join(codec.data_to_send()))
        data = b""
        while len(data) < 4:
            chunk = tls.recv(64)
            if not chunk:
                break
            data += chunk
        return data


def assert_bob_refused(run: Run, version: int, client_id: str) -> None:
    for clean in (False, True):  # a clean start must not wipe alice's session either
        bob = run.mqtt.paho(connect=False, **{**kept(version, client_id, BOB), "clean": clean})
        connack = bob.connect()
        assert connack is not None
        assert connack.reason_code == NOT_AUTHORIZED_V5
        assert connack.session_present is False
        bob.wait_disconnected()
        assert bob.nothing_more()
    if version == 4:
        # On the wire: CONNACK, remaining length 2, no session present, return code 5.
        assert raw_connack(run, 4, client_id, BOB) == bytes([0x20, 2, 0, NOT_AUTHORIZED_V311])


@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_bob_cannot_resume_alices_mqtt_session(run: Run, version: int) -> None:
    client_id = f"owned-{version}"
    alice = run.mqtt.paho(**kept(version, client_id, ALICE))
    assert alice.subscribe("owned/t", 1) == [1]
    alice.disconnect()
    producer = run.mqtt.paho(version=version)
    producer.publish("owned/t", b"for alice", 1)

    assert_bob_refused(run, version, client_id)
    run.restart()
    assert_bob_refused(run, version, client_id)

    back = run.mqtt.paho(**kept(version, client_id, ALICE))
    assert back.connack is not None
    assert (back.connack.reason_code, back.connack.session_present) == (0, True)
    message = back.get()
    assert (message.topic, message.payload) == ("owned/t", b"for alice")
    assert back.nothing_more()


def test_the_same_user_still_takes_over_a_live_mqtt_connection(run: Run) -> None:
    first = run.mqtt.paho(**kept(5, "mine", ALICE))
    second = run.mqtt.paho(**kept(5, "mine", ALICE))
    assert second.connack is not None and second.connack.reason_code == 0
    assert first.wait_disconnected() == 0x8E  # session taken over


def test_another_user_cannot_take_over_a_live_mqtt_connection(run: Run) -> None:
    alice = run.mqtt.paho(version=5, client_id="busy", username=ALICE[0], password=ALICE[1])
    assert alice.subscribe("busy/t", 0) == [0]
    bob = run.mqtt.paho(version=5, client_id="busy", username=BOB[0], password=BOB[1])
    assert bob.connack is not None and bob.connack.reason_code == NOT_AUTHORIZED_V5
    run.mqtt.paho(version=5).publish("busy/t", b"still alice's", 0)
    assert alice.get().payload == b"still alice's"


@pytest.mark.slow
def test_bob_cannot_take_alices_stomp_durable_subscriptions(run: Run) -> None:
    headers = {"activemq.subscriptionName": "audit"}
    alice, got = run.stomp(ALICE, client_id="stomp-owned")
    alice.subscribe("/topic/audit", id="d", ack="client-individual", headers=headers, receipt="s")
    wait_until(lambda: "s" in got.receipts, what="SUBSCRIBE receipt")
    alice.disconnect()
    producer, sent = run.stomp((USER, PASSWORD))
    producer.send("/topic/audit", "for alice", headers={"persistent": "true"}, receipt="p")
    wait_until(lambda: "p" in sent.receipts, what="SEND receipt")

    for restarted in (False, True):
        if restarted:
            run.restart()
        with pytest.raises(stomp.exception.ConnectFailedException):
            run.stomp(BOB, client_id="stomp-owned")

    back, got = run.stomp(ALICE, client_id="stomp-owned")
    back.subscribe("/topic/audit", id="d", ack="client-individual", headers=headers)
    frame = got.get()
    assert frame.body == "for alice"
    back.ack(frame.headers["ack"])
    # Its last durable subscription removed, the client id is free for anyone again.
    back.unsubscribe("d", headers=headers, receipt="gone")
    wait_until(lambda: "gone" in got.receipts, what="UNSUBSCRIBE receipt")
    back.disconnect()
    bob, _ = run.stomp(BOB, client_id="stomp-owned")
    assert bob.is_connected()


def test_bob_gets_an_error_naming_the_refusal_on_stomp(run: Run) -> None:
    alice, _ = run.stomp(ALICE, client_id="stomp-live")
    conn = stomp.Connection12([("127.0.0.1", run.broker.stomp_port)])
    conn.set_ssl(for_hosts=[("127.0.0.1", run.broker.stomp_port)], ca_certs=str(run.broker.ca_file))
    got = Collector()
    conn.set_listener("c", got)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect(BOB[0], BOB[1], wait=True, headers={"client-id": "stomp-live"})
    assert "another user" in got.error().headers["message"]
    assert alice.is_connected()


def raw_stomp(run: Run, user: tuple[str, str], client_id: str) -> ssl.SSLSocket:
    """A logged-in STOMP connection on a raw TLS socket (stomp.py 9 over TLS never notices
    the broker closing the socket, so it cannot tell whether it was closed)."""
    sock = socket.create_connection(("127.0.0.1", run.broker.stomp_port), timeout=TIMEOUT)
    tls = tls_client_context(run.broker.ca_file).wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall(
        f"CONNECT\naccept-version:1.2\nhost:x\nlogin:{user[0]}\npasscode:{user[1]}\n"
        f"client-id:{client_id}\n\n\x00".encode()
    )
    data = b""
    while b"\x00" not in data:
        chunk = tls.recv(4096)
        assert chunk, "closed before CONNECTED"
        data += chunk
    assert data.startswith(b"CONNECTED"), data
    return tls


def read_until_closed(tls: ssl.SSLSocket) -> bytes:
    deadline = time.monotonic() + TIMEOUT
    data = b""
    while True:
        tls.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = tls.recv(4096)
        except TimeoutError:
            raise AssertionError(f"the STOMP socket stayed open; got {data!r}") from None
        if not chunk:
            return data
        data += chunk


def test_mqtt_takeover_of_a_stomp_client_id_closes_the_stomp_socket(run: Run) -> None:
    tls = raw_stomp(run, ALICE, "cross-takeover")
    try:
        mqtt = run.mqtt.paho(
            version=5, client_id="cross-takeover", username=ALICE[0], password=ALICE[1]
        )
        assert mqtt.connack is not None and mqtt.connack.reason_code == 0
        answer = read_until_closed(tls)
    finally:
        tls.close()
    assert answer.startswith(b"ERROR\n")
    assert b"message:Another connection with the same client id took over" in answer


def test_another_users_mqtt_connection_leaves_the_stomp_socket_alone(run: Run) -> None:
    tls = raw_stomp(run, ALICE, "cross-kept")
    try:
        bob = run.mqtt.paho(version=5, client_id="cross-kept", username=BOB[0], password=BOB[1])
        assert bob.connack is not None and bob.connack.reason_code == NOT_AUTHORIZED_V5
        tls.sendall(b"SEND\ndestination:/queue/kept\nreceipt:r1\n\nx\x00")
        tls.settimeout(TIMEOUT)
        assert tls.recv(4096).startswith(b"RECEIPT\nreceipt-id:r1")
    finally:
        tls.close()


def test_the_owner_is_stored_only_sealed(tmp_path: Path) -> None:
    from tests.integration.test_at_rest import encodings, protected_files

    owner = ("owner-f3a9c1d7e5", "owner-secret")
    settings = mqtt_settings(
        tmp_path / "data", users=(UserSettings(owner[0], owner[1], frozenset({"admins"})),)
    )
    run = Run(settings)
    try:
        client = run.mqtt.paho(**kept(5, "sealed-owner", owner))
        assert client.subscribe("sealed/t", 1) == [1]
        client.disconnect()
    finally:
        run.stop()
    # The owner is kept across the restart...
    run = Run(settings)
    try:

        def owner_of() -> str | None:
            assert run.broker.running is not None
            return run.broker.running.broker.session_owner("sealed-owner")

        assert run.broker.call(owner_of) == owner[0]
    finally:
        run.stop()
    # ... and never on disk in clear.
    files = {path: path.read_bytes() for path in protected_files(settings.data_dir)}
    assert files
    found = [
        f"{form} in {path}"
        for form, needle in encodings(owner[0]).items()
        for path, data in files.items()
        if needle in data
    ]
    assert found == []
