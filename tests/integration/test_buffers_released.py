"""A closed connection gives back what it had buffered at once, not when the GC runs.

A session and its driver refer to each other, so a connection's objects are freed
by the cyclic garbage collector, whenever that runs. The part-received frame a
client left behind (up to ``max_frame_body`` / ``mqtt_max_packet_size``) must not
wait for it: with the collector off, the buffers are empty once the socket closed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sealmq.adapters.mqtt import MqttSession
from sealmq.adapters.stomp import StompSession
from tests.blackbox.test_mqtt_malformed import vbi
from tests.blackbox.test_stomp_malformed import CONNECT, Raw
from tests.support import BrokerThread, RawMqtt, mqtt_settings, wait_until

PARTIAL = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    thread = BrokerThread(mqtt_settings(tmp_path_factory.mktemp("released") / "data")).start()
    yield thread
    thread.stop()


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def buffered(broker: BrokerThread, kind: type[StompSession] | type[MqttSession]) -> list[int]:
    """Bytes each live session of ``kind`` holds in its codec's receive buffer."""

    def sizes() -> list[int]:
        return [len(o.codec._buf) for o in gc.get_objects() if isinstance(o, kind)]

    result: list[int] = broker.call(sizes)
    return result


def test_a_stomp_frame_cut_short_by_the_close_is_freed_at_once(
    broker: BrokerThread, no_gc: None
) -> None:
    raws = []
    for _ in range(2):
        raw = Raw(broker.stomp_port, broker.ca_file)
        raw.send(CONNECT)
        assert raw.read_frame().startswith(b"CONNECTED")
        raw.send(b"SEND\ndestination:/queue/big\n\n" + b"b" * PARTIAL)
        raws.append(raw)
    wait_until(
        lambda: sum(size >= PARTIAL for size in buffered(broker, StompSession)) == 2,
        what="both partial frames buffered",
    )
    for raw in raws:
        raw.close()
    wait_until(
        lambda: not any(size for size in buffered(broker, StompSession)),
        what="the buffers of the closed connections freed",
    )


def test_an_mqtt_packet_cut_short_by_the_close_is_freed_at_once(
    broker: BrokerThread, no_gc: None
) -> None:
    clients = []
    for n in range(2):
        client = RawMqtt(broker.mqtt_port, broker.ca_file, level=5)
        assert client.connect(f"partial-{n}").reason_code == 0
        # A PUBLISH announcing 16 bytes more than are sent.
        client.send_bytes(b"\x30" + vbi(PARTIAL + 16) + b"\x00\x01t\x00" + b"p" * PARTIAL)
        clients.append(client)
    wait_until(
        lambda: sum(size >= PARTIAL for size in buffered(broker, MqttSession)) == 2,
        what="both partial packets buffered",
    )
    for client in clients:
        client.close()
    wait_until(
        lambda: not any(size for size in buffered(broker, MqttSession)),
        what="the buffers of the closed connections freed",
    )
