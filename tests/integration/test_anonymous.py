"""``[security] anonymous_access``: clients without credentials connect as ``anonymous``
(group ``anonymous``), still under the authorization map; off, they are refused like a
wrong password, each protocol in its own words."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import stomp

from sealmq.config import Listener
from tests.integration.test_authorization import CLIENTS, USERS, _entry, _unique
from tests.support import (
    TEST_SECURITY,
    BrokerThread,
    Collector,
    PahoClient,
    wait_until,
    wss_settings,
)

AUTHORIZATION = (
    _entry("topic://public.>", ("anonymous", "readers"), ("writers",), ("anonymous", "writers")),
    _entry("topic://>", ("admins",), ("admins",), ("admins",)),
)


@pytest.fixture(scope="module")
def open_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    settings = wss_settings(
        tmp_path_factory.mktemp("anonymous") / "data",
        users=USERS,
        authorization=AUTHORIZATION,
        security=dataclasses.replace(TEST_SECURITY, anonymous_access=True),
        listeners=tuple(Listener(name, 0) for name in ("stomp", "mqtt", "wss", "amqp")),
    )
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def closed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    """Anonymous access off (the default)."""
    settings = wss_settings(tmp_path_factory.mktemp("closed") / "data", users=USERS)
    thread = BrokerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture(params=sorted(CLIENTS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_anonymous_clients_get_what_the_group_anonymous_is_granted(
    open_broker: BrokerThread, kind: str
) -> None:
    topic = _unique("topic://public.news")
    anonymous = CLIENTS[kind](open_broker, None)
    writer = CLIENTS[kind](open_broker, "writer")
    try:
        assert anonymous.subscribe(topic)
        assert not anonymous.subscribe("topic://private.>")
        assert anonymous.send(topic, "from nobody") is not True
        assert writer.send(topic, "news") is not False
        assert anonymous.received() == "news"
        assert anonymous.nothing_more()
    finally:
        anonymous.close()
        writer.close()


def test_users_with_credentials_are_still_checked(open_broker: BrokerThread) -> None:
    # A wrong password is not turned into anonymous access.
    client = PahoClient(
        open_broker.mqtt_port,
        open_broker.ca_file,
        version=5,
        username="writer",
        password="wrong-password-x",
        connect=False,
    )
    try:
        connack = client.connect()
        assert connack is not None and connack.reason_code == 0x86
    finally:
        client.close()


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("websocket", [False, True])
def test_off_mqtt_without_credentials_is_refused_as_a_bad_login(
    closed_broker: BrokerThread, version: int, websocket: bool
) -> None:
    client = PahoClient(
        closed_broker.wss_port if websocket else closed_broker.mqtt_port,
        closed_broker.ca_file,
        version=version,
        username=None,
        connect=False,
        websocket_path="/mqtt" if websocket else None,
    )
    try:
        connack = client.connect()
        # 3.1.1 return code 4 and MQTT 5's 0x86 (paho reports both as 0x86).
        assert connack is not None and connack.reason_code == 0x86
    finally:
        client.close()


@pytest.mark.parametrize("websocket", [False, True])
def test_off_stomp_without_credentials_is_refused_as_a_bad_login(
    closed_broker: BrokerThread, websocket: bool
) -> None:
    port = closed_broker.wss_port if websocket else closed_broker.stomp_port
    hosts = [("127.0.0.1", port)]
    conn: Any = (
        stomp.WSConnection(hosts, ws_path="/stomp") if websocket else stomp.Connection12(hosts)
    )
    conn.set_ssl(
        for_hosts=hosts, ca_certs=str(closed_broker.ca_file), ssl_version=ssl.PROTOCOL_TLS_CLIENT
    )
    collector = Collector()
    conn.set_listener("collector", collector)
    conn.connect(wait=False)
    try:
        error = collector.error()
        assert error.headers["message"] == "Authentication failed: login or passcode is not valid"
        wait_until(lambda: not conn.is_connected(), what="the refused connection closed")
    finally:
        conn.disconnect()
