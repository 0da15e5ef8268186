"""``sealmq broker rotate-data-keys`` against a real broker that dies or hangs meanwhile.

The command asks the running broker (request file + SIGUSR1) and waits: it must
stop waiting with a message and a non-zero exit when the broker dies, and at its
``--timeout`` when the broker does not answer. The broker is frozen with SIGSTOP
so that the request is certainly still unanswered when it is killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.support import cli, cli_json
from tests.support import TIMEOUT, BrokerProcess, ProcessBrokers, wait_until

pytestmark = pytest.mark.slow


def _rotate(broker: BrokerProcess, *args: str) -> subprocess.Popen[str]:
    command = ("broker", "rotate-data-keys", "--config", str(broker.config), *args)
    return subprocess.Popen(
        [sys.executable, "-m", "sealmq", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _requests(broker: BrokerProcess) -> list[Path]:
    folder = broker.data_dir / "control"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_rotate_data_keys_stops_waiting_when_the_broker_dies(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    asker = _rotate(broker)  # the default deadline: a minute
    try:
        wait_until(lambda: bool(_requests(broker)), what="the request file")
        # Killed only once the command has signalled it (it says so first).
        assert asker.stderr is not None
        said, _, _ = select.select([asker.stderr], [], [], TIMEOUT)
        assert said, "the command did not say it asked the broker"
        first = asker.stderr.readline()
        died = time.monotonic()
        broker.kill9()
        out, err = asker.communicate(timeout=TIMEOUT)
        err = first + err
    finally:
        with contextlib.suppress(ProcessLookupError):
            asker.kill()
        asker.wait(TIMEOUT)
    assert time.monotonic() - died < TIMEOUT, "noticed at once, not at the deadline"
    assert asker.returncode == 1
    assert out == ""
    assert f"asked the broker (pid {broker.proc.pid}) to rotate-data-keys" in err
    assert f"the broker (pid {broker.proc.pid}) stopped before it answered" in err
    assert "Traceback" not in err
    assert _requests(broker) == [], "a withdrawn request must not run at the next start"

    broker.start()  # and the broker itself is fine: the command works against it
    result = cli_json("broker", "rotate-data-keys", "--config", str(broker.config))
    assert result["Online"] is True
    assert _requests(broker) == []
    assert broker.stop() == 0


def test_rotate_data_keys_gives_up_at_its_timeout_and_the_broker_goes_on(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        asker = _rotate(broker, "--timeout", "1")
        try:
            out, err = asker.communicate(timeout=TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                asker.kill()
            asker.wait(TIMEOUT)
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    assert asker.returncode == 1
    assert out == ""
    assert f"(pid {broker.proc.pid}) did not answer rotate-data-keys within 1 s" in err
    assert "--timeout" in err
    assert _requests(broker) == []
    # The resumed broker had nothing left to answer, and still answers the next one.
    result = cli_json("broker", "rotate-data-keys", "--config", str(broker.config))
    assert result["Online"] is True
    assert broker.stop() == 0


def test_rotate_data_keys_refuses_a_timeout_that_is_not_positive(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new()
    for value in ("0", "-5", "nan"):
        result = cli(
            "broker", "rotate-data-keys", "--config", str(broker.config), "--timeout", value
        )
        assert result.returncode == 1
        assert "--timeout must be a positive number of seconds" in result.stderr
