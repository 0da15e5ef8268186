"""The backlog scenario's harness against a real sealmq: build, restart, drain in order.

Small (a few hundred messages): it checks the scenario's code and that a backlog
survives a restart and drains once each and in order; the million-message run and its
numbers are in bench/RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

from bench.backlog import backlog
from bench.brokers import Broker, Sealmq
from bench.scenarios import Options


def test_a_backlog_survives_the_restart_and_drains_in_order(tmp_path: Path) -> None:
    made: list[Broker] = []

    def factory(sub: Path, protocols: tuple[str, ...]) -> Broker:
        broker = Sealmq(tmp_path / sub, "localhost", protocols)
        made.append(broker)
        return broker

    lines: list[str] = []
    metrics, tls = backlog(factory, Options(backlog=400, size=256, timeout=60.0), lines.append)
    values = {m.key: m.value for m in metrics}
    assert tls.startswith("TLSv1.")
    assert values["backlog.lost"] == 0
    assert values["backlog.order"] == 0
    assert values["backlog.send"] > 0 and values["backlog.drain"] > 0
    assert values["backlog.restart"] > 0
    assert all(broker.proc is None for broker in made)
