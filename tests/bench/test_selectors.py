"""The selectors and priority scenarios' harness against a real sealmq: every message
reaches the one consumer selecting it; a queue of mixed priorities drains highest first.

Small runs that check the scenarios' code; the side-by-side numbers with ActiveMQ are in
bench/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

from bench.brokers import Broker, Sealmq
from bench.scenarios import Options
from bench.selectors import priority, selectors


def _factory(tmp_path: Path, made: list[Broker]):  # type: ignore[no-untyped-def]
    def factory(sub: Path, protocols: tuple[str, ...]) -> Broker:
        broker = Sealmq(tmp_path / sub, "localhost", protocols)
        made.append(broker)
        return broker

    return factory


def test_selectors_and_priority_scenarios(tmp_path: Path) -> None:
    made: list[Broker] = []
    opts = Options(messages=300, size=64, subscribers=4, warmup=50, timeout=60.0)
    lines: list[str] = []
    metrics, tls = selectors(_factory(tmp_path, made), opts, lines.append)
    values = {m.key: m.value for m in metrics}
    assert tls.startswith("TLSv1.")
    assert values["selectors.wrong"] == 0 and values["selectors.consume"] > 0
    metrics, _ = priority(_factory(tmp_path, made), opts, lines.append)
    values = {m.key: m.value for m in metrics}
    assert values["priority.order"] == 0 and values["priority.drain"] > 0
    assert all(broker.proc is None for broker in made)
