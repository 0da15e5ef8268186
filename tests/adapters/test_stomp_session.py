"""The STOMP adapter driven by bytes against the core on the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sealmq.adapters.stomp import StompSession
from sealmq.core.broker import Broker
from sealmq.core.policy import DestinationPolicy, PolicyMap
from sealmq.store.memory import MemoryStore
from sealmq.wire.stomp import Frame, Limits, StompCodec
from tests.adapters.support import PASSWORD, USER, FakeLink, authenticator, until


def frame(command: str, body: bytes = b"", **headers: str) -> bytes:
    lines = "".join(f"{k.replace('_', '-')}:{v}\n" for k, v in headers.items())
    return f"{command}\n{lines}\n".encode() + body + b"\x00"


class Client:
    """One STOMP session and what the broker said to it, parsed."""

    def __init__(self, broker: Broker) -> None:
        self.session = StompSession(broker, authenticator(), Limits())
        self.link = FakeLink(self.session)
        self.session.connection_made(self.link)
        self.codec = StompCodec(Limits(), server=False)
        self.frames: list[Frame] = []

    def send(self, data: bytes) -> None:
        self.session.data_received(data)

    def _read(self) -> None:
        data = self.link.take()
        if data:
            self.codec.receive_data(data)
            self.frames += [e for e in self.codec.events_received() if isinstance(e, Frame)]

    async def next(self, command: str) -> Frame:
        def arrived() -> bool:
            self._read()
            return any(f.command == command for f in self.frames)

        await until(arrived, f"a {command} frame")
        index = next(i for i, f in enumerate(self.frames) if f.command == command)
        return self.frames.pop(index)

    async def login(self, passcode: str = PASSWORD) -> Frame:
        self.send(frame("CONNECT", accept_version="1.2", host="/", login=USER, passcode=passcode))
        return await self.next("CONNECTED" if passcode == PASSWORD else "ERROR")


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[Broker]:
    policy = DestinationPolicy(maximum_redeliveries=1)
    core = Broker(MemoryStore(), policies=PolicyMap(policy))
    core.start()
    yield core
    await core.close()


@pytest.mark.asyncio
async def test_login_then_a_queue_round_trip_with_receipts(broker: Broker) -> None:
    producer, consumer = Client(broker), Client(broker)
    connected = await producer.login()
    assert connected.get("version") == "1.2"
    assert producer.link.is_logged_in
    await consumer.login()
    consumer.send(frame("SUBSCRIBE", id="s", destination="/queue/q", ack="client-individual"))
    producer.send(frame("SEND", b"hello", destination="/queue/q", persistent="true", receipt="r"))
    assert (await producer.next("RECEIPT")).get("receipt-id") == "r"
    message = await consumer.next("MESSAGE")
    assert message.body == b"hello"
    assert message.get("destination") == "/queue/q"
    assert message.get("subscription") == "s"
    ack = message.get("ack")
    assert ack is not None
    consumer.send(frame("ACK", id=ack, receipt="a"))
    assert (await consumer.next("RECEIPT")).get("receipt-id") == "a"
    assert len(broker.queues["q"]) == 0


@pytest.mark.asyncio
async def test_a_wrong_passcode_gets_an_error_and_no_connection(broker: Broker) -> None:
    client = Client(broker)
    error = await client.login(passcode="wrong-passcode")
    assert "Authentication failed" in (error.get("message") or "")
    await until(lambda: client.link.closed, "the link closed")
    assert not broker.connections


@pytest.mark.asyncio
async def test_nack_past_the_policy_limit_dead_letters(broker: Broker) -> None:
    client = Client(broker)
    await client.login()
    client.send(frame("SUBSCRIBE", id="s", destination="/queue/poison", ack="client-individual"))
    client.send(frame("SEND", b"bad", destination="/queue/poison", persistent="true"))
    for redelivered in ("false", "true"):  # the first delivery and one redelivery
        message = await client.next("MESSAGE")
        assert message.get("redelivered", "false") == redelivered
        client.send(frame("NACK", id=message.get("ack") or ""))
    client.send(frame("SUBSCRIBE", id="d", destination="/queue/ActiveMQ.DLQ", ack="auto"))
    dead = await client.next("MESSAGE")
    assert dead.body == b"bad"
    assert "redelivery policy" in (dead.get("dlqDeliveryFailureCause") or "")


@pytest.mark.asyncio
async def test_a_selector_that_does_not_parse_is_refused_naming_the_column(
    broker: Broker,
) -> None:
    client = Client(broker)
    await client.login()
    client.send(frame("SUBSCRIBE", id="s", destination="/queue/q", selector="kind = 'odd"))
    error = await client.next("ERROR")
    assert "invalid selector at column 8" in (error.get("message") or "")
