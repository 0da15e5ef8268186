"""A journal that lost confirmed data: refused at start, ``sealmq store verify``, ``salvage``.

One broker (a real ``sealmq serve`` process) writes three segments, one run each:
messages A, then B (segment 2, copied half-way through its run), then C. Each test
damages a copy of its data folder as docs/store.md describes, and checks what the
operator sees: the start refused naming the segment, ``store verify`` exiting 1 with
a report, ``store salvage --yes`` setting aside what it must, and the broker then
serving exactly what the report says is left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import cli
from tests.support import (
    TIMEOUT,
    BrokerProcess,
    ProcessBrokers,
    free_port,
    sealmq_command,
    stomp_connect,
    wait_until,
    write_config,
)

QUEUE = "/queue/ledger"
A = [f"a-{i}" for i in range(6)]
B = [f"b-{i}" for i in range(6)]
C = [f"c-{i}" for i in range(6)]


@dataclass
class Base:
    folder: Path
    #: Segment 2 as it was after the first half of B.
    older_two: bytes


def send(broker: BrokerProcess, bodies: list[str]) -> None:
    """One persistent send at a time, each waiting for its receipt: one journal record each."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        for i, body in enumerate(bodies):
            conn.send(QUEUE, body, headers={"persistent": "true"}, receipt=f"r{i}")
            wait_until(lambda i=i: f"r{i}" in got.receipts, what=f"receipt r{i}")
    finally:
        conn.disconnect()


def receive_all(broker: BrokerProcess, n: int) -> list[str]:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe(QUEUE, id="s", ack="auto")
        bodies = [str(frame.body) for frame in got.take(n)]
        assert got.nothing_more(), "more messages than expected"
        return bodies
    finally:
        conn.disconnect()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    brokers = ProcessBrokers(tmp_path_factory.mktemp("store-base"))
    try:
        broker = brokers.new()
        for bodies in (A, B, C):
            broker.start()
            if bodies is B:
                send(broker, B[:3])
                older = (broker.data_dir / "journal" / "00000002.seg").read_bytes()
                send(broker, B[3:])
            else:
                send(broker, bodies)
            assert broker.stop() == 0
        journal = broker.data_dir / "journal"
        assert sorted(p.name for p in journal.glob("*.seg")) == [
            "00000001.seg",
            "00000002.seg",
            "00000003.seg",
        ]
        yield Base(brokers.root / "broker", older)
    finally:
        brokers.close_all()


@dataclass
class Copy:
    broker: BrokerProcess

    @property
    def journal(self) -> Path:
        return self.broker.data_dir / "journal"

    def store(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli("store", *args, "--config", str(self.broker.config))

    def report(self, *args: str, code: int) -> Any:
        result = self.store(*args)
        assert result.returncode == code, result.stderr
        return json.loads(result.stdout)

    def start_refused(self) -> str:
        try:
            result = subprocess.run(
                sealmq_command(self.broker.config),
                capture_output=True,
                text=True,
                timeout=TIMEOUT * 3,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the broker started anyway: {exc.stdout!r}") from None
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert "ready: " not in output and "Traceback" not in output
        return output


@pytest.fixture
def copy(base: Base, tmp_path: Path) -> Iterator[Copy]:
    folder = tmp_path / "broker"
    shutil.copytree(base.folder / "data", folder / "data")
    port = free_port()
    config = write_config(folder / "sealmq.toml", folder / "data", port)
    broker = BrokerProcess(config, folder / "data", folder / "broker.log", stomp_port=port)
    yield Copy(broker)
    broker.close()


@pytest.mark.slow
def test_a_deleted_middle_segment_is_refused_then_salvaged(copy: Copy) -> None:
    assert copy.report("verify", code=0)["Intact"] is True
    (copy.journal / "00000002.seg").unlink()

    output = copy.start_refused()
    assert "00000002.seg is missing" in output and "sealmq store salvage" in output

    verify = copy.store("verify")
    assert verify.returncode == 1 and "00000002.seg is missing" in verify.stderr
    report = json.loads(verify.stdout)
    assert report["Intact"] is False and report["Missing"] == ["00000002.seg"]
    assert any("00000002.seg is missing" in p for p in report["Problems"])
    assert report["SalvageWouldSetAside"] == []

    refused = copy.store("salvage")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert (copy.journal / "00000001.seg").exists()

    done = copy.report("salvage", "--yes", code=0)
    assert done["Lost"]["Messages"] == {} and done["UnknownContent"]
    assert copy.report("verify", code=0)["Intact"] is True

    copy.broker.start()
    assert receive_all(copy.broker, len(A) + len(C)) == A + C  # B was only in segment 2


@pytest.mark.slow
def test_a_replayed_older_segment_is_set_aside_and_the_loss_reported(
    copy: Copy, base: Base
) -> None:
    (copy.journal / "00000002.seg").write_bytes(base.older_two)
    output = copy.start_refused()
    assert "00000002.seg holds 3 records, the journal recorded 6" in output

    report = copy.report("verify", code=1)
    assert report["SalvageWouldSetAside"] == ["00000002.seg"]
    assert report["SalvageWouldLose"]["Messages"] == {"queue://ledger": 3}

    done = copy.report("salvage", "--yes", code=0)
    assert done["SetAside"] == ["00000002.seg"]
    assert done["Lost"]["Messages"] == {"queue://ledger": 3}
    quarantined = copy.journal / "quarantine" / "00000002.seg"
    assert [str(quarantined)] == done["Quarantined"]
    assert quarantined.read_bytes() == base.older_two  # moved as it was: still encrypted

    copy.broker.start()
    assert receive_all(copy.broker, len(A) + len(C)) == A + C


@pytest.mark.slow
def test_a_cut_confirmed_tail_is_refused_and_a_running_broker_is_not_examined(
    copy: Copy,
) -> None:
    newest = copy.journal / "00000003.seg"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) - 20])  # into the last confirmed record
    output = copy.start_refused()
    assert "00000003.seg was cut short of what was confirmed" in output

    report = copy.report("verify", code=1)
    assert any("cut short" in p for p in report["Problems"])
    done = copy.report("salvage", "--yes", code=0)
    assert any("1 confirmed records were cut" in line for line in done["UnknownContent"])

    copy.broker.start()
    running = copy.store("verify")
    assert running.returncode == 1 and "running" in running.stderr and "stop it" in running.stderr
    assert receive_all(copy.broker, len(A) + len(B) + len(C) - 1) == A + B + C[:-1]
