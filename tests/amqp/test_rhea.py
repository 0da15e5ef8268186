"""Node's rhea, a second AMQP 1.0 client written apart from Proton: TLS and SASL
PLAIN, unsettled sends each accepted, a receiver under explicit credit, and a
durable subscription across a detach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import PASSWORD, TIMEOUT, USER, BrokerThread

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("rhea_client.js")
COUNT = 50


def test_rhea_sends_receives_under_credit_and_keeps_a_durable_subscription(
    amqp_broker: BrokerThread,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed (apt-get install nodejs)"
    assert (ROOT / "node_modules" / "rhea").is_dir(), "run `make install-test` (node_modules)"
    assert amqp_broker.running is not None
    env = {
        **os.environ,
        "PORT": str(amqp_broker.running.port("amqp")),
        "CA": str(amqp_broker.ca_file),
        "AMQP_USER": USER,
        "AMQP_PASSWORD": PASSWORD,
        "QUEUE": "queue://rhea.q",
        "TOPIC": "topic://rhea.t",
        "COUNT": str(COUNT),
        "TIMEOUT_MS": str(int(TIMEOUT * 1000)),
    }
    done = subprocess.run(
        [node, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT * 2
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["accepted"] == COUNT
    assert seen["received"] == [[f"m{i}", i] for i in range(COUNT)]
    assert 1 <= seen["maxUnsettled"] <= 5, "never more in flight than the credit"
    assert seen["durable"] == "kept while detached"
    # A window of a few frames made a client with many unsettled messages stall on it.
    assert seen["window"] >= 64, seen["window"]
