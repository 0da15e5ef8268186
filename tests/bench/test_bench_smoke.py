"""Smoke test for the benchmark harness (bench/): codecs, load loops and report.

Uses the in-memory null broker, so it needs neither ActiveMQ, Mosquitto nor sealmq.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bench.brokers import (
    AMQP,
    MQTT,
    STOMP,
    WSS_MQTT,
    WSS_STOMP,
    Broker,
    NullBroker,
    make_broker,
)
from bench.load import LoadSpec, run_load
from bench.mqtt_client import (
    PacketParser,
    PublishEncoder,
    connect_packet,
    decode_publish,
    encode_length,
    puback_packet,
    subscribe_packet,
    unsubscribe_packet,
)
from bench.mqtt_load import MqttSpec, run_mqtt_load
from bench.results import BrokerReport, Metric, markdown_table, percentile, record
from bench.scenarios import WSS_SCENARIOS, Options, wss_loads
from bench.stomp_client import FrameParser, encode_frame
from bench.stomp_fanout import FanoutSpec, run_stomp_fanout


def test_frames_round_trip_across_split_reads() -> None:
    wire = b"\n" + encode_frame("SEND", {"a:b": "x\ny", "k": "v"}, b"\x00body") + b"\r\n"
    wire += encode_frame("RECEIPT", {"receipt-id": "7"})
    parser = FrameParser()
    frames = [f for i in range(len(wire)) for f in parser.feed(wire[i : i + 1])]
    assert [f.command for f in frames] == ["SEND", "RECEIPT"]
    assert frames[0].headers["a:b"] == "x\ny"
    assert frames[0].body == b"\x00body"
    assert frames[1].headers == {"receipt-id": "7"}


def test_load_against_null_broker(tmp_path: Path) -> None:
    broker = NullBroker(tmp_path / "null", "localhost")
    try:
        cold = broker.start(timeout=60)
        assert cold > 0
        for procs in (1, 2):
            spec = LoadSpec(queue=f"smoke{procs}", count=300, size=64, window=10)
            result = run_load(broker.endpoint, spec, procs=procs, uvloop=True)
            assert result.consumer.unique == 300
            assert len(result.consumer.latencies_ns) == 300
            assert result.producer.confirmed == 300
        paced = LoadSpec(queue="paced", count=20, size=64, rate=1000.0)
        assert run_load(broker.endpoint, paced, procs=1, uvloop=False).consumer.unique == 20
        fan = FanoutSpec(topic="smoke.fan", count=200, size=64, window=10, subscribers=3)
        fanned = run_stomp_fanout(broker.endpoint, fan)
        assert fanned.consumer.unique == 600
        assert fanned.lost == 0
        assert fanned.producer.sent == 200
    finally:
        broker.stop()
    assert broker.proc is None


def test_mqtt_packets_split_across_reads() -> None:
    for n in (0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455):
        raw = encode_length(n)
        value = sum((b & 0x7F) << (7 * i) for i, b in enumerate(raw))
        assert value == n and len(raw) == 1 + (n > 127) + (n > 16_383) + (n > 2_097_151)
    enc = PublishEncoder("a/b", 1, 300)
    wire = enc.encode(b"x" * 300, 7) + puback_packet(9) + PublishEncoder("t", 0, 3).encode(b"abc")
    parser = PacketParser()
    packets = [p for i in range(len(wire)) for p in parser.feed(wire[i : i + 1])]
    assert [first >> 4 for first, _ in packets] == [3, 4, 3]
    first, body = packets[0]
    topic, qos, pid, at = decode_publish(first, body)
    assert (topic, qos, pid, body[at:]) == ("a/b", 1, 7, b"x" * 300)
    assert packets[1] == (0x40, b"\x00\x09")
    topic, qos, pid, at = decode_publish(*packets[2])
    assert (topic, qos, pid, packets[2][1][at:]) == ("t", 0, 0, b"abc")


def test_mqtt_client_bytes_agree_with_sealmq_codec() -> None:
    """sealmq's own codec (an independent implementation) reads what the bench client writes."""
    from sealmq.wire import mqtt

    server = mqtt.MqttCodec(server=True)
    server.receive_data(
        connect_packet("c1", username="u", password="p", clean_session=False, keep_alive=0)
        + subscribe_packet(0xF001, [("bench/x", 1)])
        + PublishEncoder("bench/x", 1, 40).encode(bytes(range(40)), 5)
        + PublishEncoder("bench/x", 0, 40).encode(bytes(40))
        + puback_packet(3)
        + unsubscribe_packet(0xF002, ["bench/x"])
        + b"\xe0\x00"
    )
    connect, sub, pub1, pub0, ack, unsub, disconnect = server.events_received()
    assert (connect.client_id, connect.username, connect.password) == ("c1", "u", b"p")
    assert not connect.clean_start and connect.keep_alive == 0 and connect.protocol_level == 4
    assert sub.packet_id == 0xF001 and sub.subscriptions[0].topic_filter == "bench/x"
    assert sub.subscriptions[0].qos == 1
    assert (pub1.topic, pub1.qos, pub1.packet_id, pub1.payload) == (
        "bench/x",
        1,
        5,
        bytes(range(40)),
    )
    assert (pub0.qos, pub0.payload) == (0, bytes(40))
    assert ack.packet_id == 3 and unsub.topic_filters == ("bench/x",)
    assert type(disconnect).__name__ == "Disconnect"
    # ... and the bench client reads what sealmq's codec writes as a server.
    server.send(mqtt.Connack(True, 0))
    server.send(mqtt.Suback(0xF001, (1,)))
    server.send(mqtt.Publish("bench/x", b"\x01" * 1024, 1, packet_id=65535))
    packets = PacketParser().feed(b"".join(server.data_to_send()))
    assert [(f >> 4, body) for f, body in packets[:2]] == [(2, b"\x01\x00"), (9, b"\xf0\x01\x01")]
    topic, qos, pid, at = decode_publish(*packets[2])
    assert (topic, qos, pid, packets[2][1][at:]) == ("bench/x", 1, 65535, b"\x01" * 1024)


def test_mqtt_loads_against_null_broker(tmp_path: Path) -> None:
    broker = NullBroker(tmp_path / "null", "localhost", (MQTT, STOMP))
    try:
        broker.start(timeout=60)
        qos1 = MqttSpec(topic="smoke/qos1", count=500, size=64, window=10)
        result = run_mqtt_load(broker.mqtt_endpoint, qos1)
        assert result.consumer.unique == 500 and result.producer.confirmed == 500
        assert len(result.consumer.latencies_ns) == 500 and result.lost == 0
        fan = MqttSpec(
            topic="smoke/fan", count=200, size=32, window=5, qos=0, subscribers=3, persistent=False
        )
        result = run_mqtt_load(broker.mqtt_endpoint, fan)
        assert result.consumer.unique == 600 and result.lost == 0
        assert result.producer.sent == 200
        assert min(result.consumer.latencies_ns) > 0
        # The STOMP listener of the same null broker still works.
        spec = LoadSpec(queue="both", count=50, size=64, window=10)
        assert run_load(broker.endpoint, spec, procs=1, uvloop=True).consumer.unique == 50
    finally:
        broker.stop()
    assert broker.proc is None


def test_mqtt_spec_payload_carries_stamp() -> None:
    with pytest.raises(ValueError):
        MqttSpec(topic="t", count=1, size=struct.calcsize(">QQ") - 1)


def test_report_and_record(tmp_path: Path) -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.0
    reports = [
        BrokerReport("activemq", metrics=[Metric("t", "throughput", 100.0, "msg/s", "higher")]),
        BrokerReport("sealmq", metrics=[Metric("t", "throughput", 150.0, "msg/s", "higher")]),
    ]
    table = markdown_table(reports)
    assert "1.50x better" in table
    reports.append(
        BrokerReport("mosquitto", metrics=[Metric("t", "throughput", 300.0, "msg/s", "higher")])
    )
    table = markdown_table(reports)
    assert "sealmq/activemq | sealmq/mosquitto" in table and "0.50x worse" in table
    out = tmp_path / "RESULTS.md"
    record(out, "k1", "## run one\n")
    record(out, "k2", "## run two\n")
    record(out, "k1", "## run one again\n")
    text = out.read_text()
    assert "run one again" in text and "## run one\n" not in text and "run two" in text
    # Newest first, one section per configuration (an older, dated marker counts too).
    assert text.index("run one again") < text.index("run two")
    out.write_text(
        text + "<!-- bench-run: 2026-01-01 k2 -->\n## run two, dated\n<!-- bench-run-end -->\n"
    )
    record(out, "k2", "## run two again\n")
    text = out.read_text()
    assert "run two" not in text.replace("run two again", "")
    assert text.index("run two again") < text.index("run one again")
    assert text.count("<!-- bench-run: ") == 2


def test_wss_scenarios_against_sealmq(tmp_path: Path) -> None:
    """The WSS scenarios end to end, through sealmq's real `wss` listener (small counts)."""
    opts = Options(messages=200, warmup=50, repeat=1, rate=200.0, duration=0.5, window=20)

    def factory(sub: Path, protocols: tuple[str, ...]) -> Broker:
        assert set(protocols) == {WSS_STOMP, WSS_MQTT}
        return make_broker("sealmq", tmp_path / sub, protocols, server_hostname="localhost")

    metrics, tls = wss_loads(factory, opts, set(WSS_SCENARIOS), lambda _msg: None)
    got = {m.key: m.value for m in metrics}
    assert tls.startswith("TLS")
    assert got["wss.tput.consume"] > 0 and got["wss_mqtt_qos1.rate"] > 0
    assert got["wss.lat.p99"] > 0 and got["wss.mqtt_lat.p99"] > 0
    assert got["wss.lat.rate"] > 0 and got["wss.mqtt_lat.cpu_msg"] > 0


def test_wss_scenarios_apply_to_brokers_with_websocket_listeners() -> None:
    from bench.__main__ import _applicable

    wss = frozenset(WSS_SCENARIOS)
    assert _applicable("sealmq", wss) == wss and _applicable("rabbitmq", wss) == wss
    assert not _applicable("activemq", wss) and not _applicable("mosquitto", wss)


def test_amqp_bench_against_sealmq(tmp_path: Path) -> None:
    """bench.amqp end to end through sealmq's real AMQP-over-TLS listener with rhea (small)."""
    from bench.amqp import MODES, median, run_modes

    broker = make_broker("sealmq", tmp_path / "sealmq", (AMQP,), server_hostname="localhost")
    broker.start()
    try:
        results = run_modes(broker, count=300, seconds=0.5, repeat=2)
    finally:
        broker.stop()
    assert set(results) == {mode for mode, _ in MODES}
    for runs in results.values():
        assert len(runs) == 2 and runs[0].rate <= runs[1].rate
        result = median(runs)
        assert result.rate > 0 and 0 < result.p50_ms <= result.p99_ms
        assert result.cpu_us_per_msg > 0
