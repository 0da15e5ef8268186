"""A second, independent MQTT client (gmqtt, asyncio) over TLS, so the broker is not
tuned to paho's habits: login, wildcards, every QoS both ways, retained messages,
wills, MQTT 5 properties and server-to-client topic aliases (which gmqtt resolves).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import gmqtt
import pytest
import pytest_asyncio
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from tests.support import PASSWORD, TIMEOUT, USER, BrokerThread, tls_client_context

VERSIONS = pytest.mark.parametrize("version", [MQTTv311, MQTTv50], ids=["v311", "v5"])


class Gmqtt:
    """A gmqtt client with what it receives in queues, and bounded waits."""

    def __init__(self, broker: BrokerThread, version: int, client_id: str = "", **kw: Any) -> None:
        self.broker = broker
        self.version = version
        self.client = gmqtt.Client(client_id or f"g-{uuid.uuid4().hex[:8]}", **kw)
        self.client.set_config({"reconnect_retries": 0, "reconnect_delay": 0})
        self.messages: asyncio.Queue[tuple[str, bytes, int, dict[str, Any]]] = asyncio.Queue()
        self.subacks: asyncio.Queue[list[int]] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.messages.put_nowait((topic, payload, qos, dict(props)))
        return 0  # the PUBACK reason code

    def _on_subscribe(self, client: Any, mid: int, qos: Any, props: Any) -> None:
        self.subacks.put_nowait(list(qos))

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        self.disconnected.set()

    async def connect(self, username: str = USER, password: str = PASSWORD) -> None:
        self.client.set_auth_credentials(username, password)
        await asyncio.wait_for(
            self.client.connect(
                "127.0.0.1",
                self.broker.mqtt_port,
                ssl=tls_client_context(self.broker.ca_file),
                version=self.version,
            ),
            TIMEOUT,
        )

    async def subscribe(self, topic: str, qos: int, **kw: Any) -> list[int]:
        self.client.subscribe(topic, qos, **kw)
        return await asyncio.wait_for(self.subacks.get(), TIMEOUT)

    async def get(self) -> tuple[str, bytes, int, dict[str, Any]]:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def nothing_more(self, wait: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.messages.get(), wait)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), TIMEOUT)


@pytest_asyncio.fixture
async def gclients(mqtt_broker: BrokerThread) -> AsyncIterator[Any]:
    made: list[Gmqtt] = []

    async def make(version: int, client_id: str = "", *, connect: bool = True, **kw: Any) -> Gmqtt:
        client = Gmqtt(mqtt_broker, version, client_id, **kw)
        made.append(client)
        if connect:
            await client.connect()
        return client

    yield make
    for client in made:
        await client.close()


@pytest.mark.asyncio
@VERSIONS
async def test_gmqtt_every_qos_through_wildcards(gclients: Any, version: int) -> None:
    subscriber = await gclients(version, "g-sub")
    assert await subscriber.subscribe("g/+/t", 2) == [2]
    assert await subscriber.subscribe("h/#", 1) == [1]
    publisher = await gclients(version, "g-pub")
    for qos in (0, 1, 2):
        publisher.client.publish(f"g/{qos}/t", f"qos {qos}".encode(), qos=qos)
    publisher.client.publish("h/deep/er", b"hash", qos=2)
    got = sorted([(await subscriber.get())[:3] for _ in range(4)])
    assert got == [
        ("g/0/t", b"qos 0", 0),
        ("g/1/t", b"qos 1", 1),
        ("g/2/t", b"qos 2", 2),
        ("h/deep/er", b"hash", 1),  # the lower of published 2 and subscribed 1
    ]
    assert await subscriber.nothing_more()


@pytest.mark.asyncio
@VERSIONS
async def test_gmqtt_bad_password_is_refused(gclients: Any, version: int) -> None:
    client = await gclients(version, "g-bad", connect=False)
    with pytest.raises(MQTTConnectError, match=r"(?i)bad user name or password"):
        await client.connect(password="wrong")


@pytest.mark.asyncio
@VERSIONS
async def test_gmqtt_retained_message(gclients: Any, version: int) -> None:
    live = await gclients(version, "g-live")
    assert await live.subscribe("g/state", 1) == [1]
    publisher = await gclients(version, "g-retainer")
    publisher.client.publish("g/state", b"on", qos=1, retain=True)
    topic, payload, _, props = await live.get()  # stored and routed by now
    assert (topic, payload, props["retain"]) == ("g/state", b"on", 0)
    late = await gclients(version, "g-late")
    assert await late.subscribe("g/state", 1) == [1]
    topic, payload, qos, props = await late.get()
    assert (topic, payload, qos, props["retain"]) == ("g/state", b"on", 1, 1)


@pytest.mark.asyncio
@VERSIONS
async def test_gmqtt_will_on_abnormal_disconnect(gclients: Any, version: int) -> None:
    watcher = await gclients(version, "g-watcher")
    assert await watcher.subscribe("g/wills/#", 1) == [1]
    will = gmqtt.Message("g/wills/doomed", b"gone", qos=1)
    doomed = await gclients(version, "g-doomed", will_message=will)
    transport = doomed.client._connection._transport  # cut the line, no DISCONNECT
    transport.abort()
    topic, payload, _, _ = await watcher.get()
    assert (topic, payload) == ("g/wills/doomed", b"gone")


@pytest.mark.asyncio
async def test_gmqtt_v5_properties_and_topic_aliases(gclients: Any) -> None:
    subscriber = await gclients(MQTTv50, "g-props", topic_alias_maximum=4)
    assert await subscriber.subscribe("g/props/#", 1, subscription_identifier=12) == [1]
    publisher = await gclients(MQTTv50, "g-publisher")
    for i in range(3):
        publisher.client.publish(
            "g/props/t",
            f"m{i}".encode(),
            qos=1,
            content_type="text/plain",
            user_property=[("k", f"v{i}")],
            response_topic="g/replies",
            correlation_data=b"c-1",
            message_expiry_interval=60,
        )
    for i in range(3):
        topic, payload, qos, props = await subscriber.get()
        # gmqtt resolves the broker's topic aliases: the topic is whole every time.
        assert (topic, payload, qos) == ("g/props/t", f"m{i}".encode(), 1)
        assert props["content_type"] == ["text/plain"]
        assert ("k", f"v{i}") in props["user_property"]
        assert props["response_topic"] == ["g/replies"]
        assert props["correlation_data"] == [b"c-1"]
        assert props["subscription_identifier"] == [12]
        assert 0 < props["message_expiry_interval"][0] <= 60
        assert props["topic_alias"] == [1]


@pytest.mark.asyncio
async def test_gmqtt_v5_no_local(gclients: Any) -> None:
    client = await gclients(MQTTv50, "g-nolocal")
    assert await client.subscribe("g/echo", 1, no_local=True) == [1]
    client.client.publish("g/echo", b"mine", qos=1)
    other = await gclients(MQTTv50, "g-other")
    other.client.publish("g/echo", b"theirs", qos=1)
    assert (await client.get())[1] == b"theirs"
    assert await client.nothing_more()
