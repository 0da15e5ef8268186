"""Smoke test for the benchmark harness (bench/): codec, load loop and report.

Uses the in-memory null broker, so it needs neither ActiveMQ nor sealmq.
"""

from __future__ import annotations

from pathlib import Path

from bench.brokers import NullBroker
from bench.load import LoadSpec, run_load
from bench.results import BrokerReport, Metric, markdown_table, percentile, record
from bench.stomp_client import FrameParser, encode_frame


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
    finally:
        broker.stop()
    assert broker.proc is None


def test_report_and_record(tmp_path: Path) -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.0
    reports = [
        BrokerReport("activemq", metrics=[Metric("t", "throughput", 100.0, "msg/s", "higher")]),
        BrokerReport("sealmq", metrics=[Metric("t", "throughput", 150.0, "msg/s", "higher")]),
    ]
    table = markdown_table(reports)
    assert "1.50x better" in table
    out = tmp_path / "RESULTS.md"
    record(out, "k1", "## run one\n")
    record(out, "k2", "## run two\n")
    record(out, "k1", "## run one again\n")
    text = out.read_text()
    assert "run one again" in text and "## run one\n" not in text and "run two" in text
