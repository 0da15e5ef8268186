"""OpenWire durability with the JMS client against a real ``sealmq serve`` process:
persistent sends confirmed to the producer survive ``kill -9``, and a durable
subscription keeps what was published while it was offline across the restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jms import Jms, parse, truststore
from tests.support import TIMEOUT, ProcessBrokers

pytestmark = pytest.mark.slow


def test_confirmed_persistent_sends_and_a_durable_subscription_survive_kill_9(
    processes: ProcessBrokers, jms_classes: Path, tmp_path: Path
) -> None:
    broker = processes.new(openwire=True).start()
    jms = Jms(jms_classes, truststore(broker.ca_file, tmp_path / "trust.p12"), broker.openwire_port)
    jms.run(
        "sendPersistent=q.kill9", "durableSubscribe=t.kill9", "publishPersistent=t.kill9"
    ).assert_ok("sendPersistent", "durableSubscribe", "publishPersistent")
    broker.kill9()
    broker.start()
    jms.run("receivePersistent=q.kill9", "durableReceive=t.kill9").assert_ok(
        "receivePersistent", "durableReceive"
    )


def test_a_failover_client_goes_on_after_the_broker_restarts(
    processes: ProcessBrokers, jms_classes: Path, tmp_path: Path
) -> None:
    broker = processes.new(openwire=True).start()
    jms = Jms(jms_classes, truststore(broker.ca_file, tmp_path / "trust.p12"), broker.openwire_port)
    with jms.start("failover=q.failover") as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = proc.stdout.readline()  # bounded: the program fails its own waits
            assert line.strip() == "RESTART", line + (proc.stderr.read() if proc.stderr else "")
            assert broker.stop() == 0
            broker.start()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            stdout, stderr = proc.communicate(timeout=TIMEOUT * 3)
        finally:
            if proc.poll() is None:
                proc.kill()
    parse(line + stdout, stderr).assert_ok("failover")
