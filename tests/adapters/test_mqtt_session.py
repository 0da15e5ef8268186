"""The MQTT adapter driven by bytes against the core on the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sealmq.adapters.mqtt import MqttService
from sealmq.core.broker import Broker
from sealmq.store.memory import MemoryStore
from sealmq.wire.mqtt import (
    DEFAULT_MAX_PACKET_SIZE,
    Connack,
    Connect,
    MqttCodec,
    Packet,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from tests.adapters.support import PASSWORD, USER, FakeLink, authenticator, until


class Client:
    """One MQTT session and the packets the broker sent it."""

    def __init__(self, service: MqttService, level: int) -> None:
        self.session = service.session()
        self.link = FakeLink(self.session)
        self.session.connection_made(self.link)
        self.codec = MqttCodec(server=False)
        self.codec.protocol_level = level
        self.level = level
        self.packets: list[Packet] = []

    def send(self, *packets: Packet) -> None:
        for packet in packets:
            self.codec.send(packet)
        self.session.data_received(b"".join(self.codec.data_to_send()))

    async def next(self, kind: type[Packet]) -> Packet:
        def arrived() -> bool:
            data = self.link.take()
            if data:
                self.codec.receive_data(data)
                self.packets += self.codec.events_received()
            return any(isinstance(p, kind) for p in self.packets)

        await until(arrived, kind.__name__)
        index = next(i for i, p in enumerate(self.packets) if isinstance(p, kind))
        return self.packets.pop(index)

    async def login(self, client_id: str, password: str = PASSWORD) -> Connack:
        connect = Connect(
            protocol_level=self.level,
            client_id=client_id,
            username=USER,
            password=password.encode(),
        )
        self.send(connect)
        connack = await self.next(Connack)
        assert isinstance(connack, Connack)
        return connack


@pytest_asyncio.fixture
async def service() -> AsyncIterator[MqttService]:
    broker = Broker(MemoryStore())
    broker.start()
    mqtt = MqttService(broker, authenticator(), max_packet_size=DEFAULT_MAX_PACKET_SIZE)
    mqtt.start()
    yield mqtt
    mqtt.close()
    await broker.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("level", [4, 5])
async def test_qos1_publish_is_acked_and_delivered(service: MqttService, level: int) -> None:
    subscriber, publisher = Client(service, level), Client(service, level)
    assert (await subscriber.login("sub")).reason_code == 0
    subscriber.send(Subscribe(1, (Subscription("home/+/temp", qos=1),)))
    suback = await subscriber.next(Suback)
    assert isinstance(suback, Suback) and suback.reason_codes == (1,)
    await publisher.login("pub")
    publisher.send(Publish("home/kitchen/temp", b"21.5", qos=1, packet_id=7))
    puback = await publisher.next(Puback)
    assert isinstance(puback, Puback) and puback.packet_id == 7
    got = await subscriber.next(Publish)
    assert isinstance(got, Publish)
    assert (got.topic, got.payload, got.qos) == ("home/kitchen/temp", b"21.5", 1)
    subscriber.send(Puback(got.packet_id))


@pytest.mark.asyncio
@pytest.mark.parametrize(("level", "code"), [(4, 4), (5, 0x86)])
async def test_a_wrong_password_is_refused_with_the_levels_code(
    service: MqttService, level: int, code: int
) -> None:
    client = Client(service, level)
    connack = await client.login("bad", password="wrong-password")
    assert connack.reason_code == code
    await until(lambda: client.link.closed, "the link closed")
    assert not service.broker.connections
