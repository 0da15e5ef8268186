"""Asking a running broker (``sealmq.control.requests``): the asker's wait is bounded.

The "broker" here is a child process holding nothing but a pid that ignores
SIGUSR1, and the run lock held by the test: a request folder nobody serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealmq.control.requests import (
    CONTROL_DIR,
    BrokerStoppedError,
    RequestTimeoutError,
    ask_running_broker,
    run_pending_requests,
)
from sealmq.control.state import RunLock, write_status
from tests.support import TIMEOUT, wait_until

_DEAF = (
    "import signal, sys; signal.signal(signal.SIGUSR1, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)


@pytest.fixture
def deaf_pid(tmp_path: Path) -> Iterator[int]:
    """The pid of a live process that ignores the request signal, in ``status.json``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEAF], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        write_status(tmp_path, broker_id="b-1", state="RUNNING", actions=[], encryption={})
        doc = json.loads((tmp_path / "status.json").read_text())
        doc["Pid"] = proc.pid
        (tmp_path / "status.json").write_text(json.dumps(doc))
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def _left_in_control(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / CONTROL_DIR).iterdir())


def test_a_broker_that_does_not_answer_times_out_and_the_request_is_withdrawn(
    tmp_path: Path, deaf_pid: int
) -> None:
    told: list[str] = []
    started = time.monotonic()
    with RunLock(tmp_path), pytest.raises(RequestTimeoutError) as caught:
        ask_running_broker(tmp_path, "rotate-data-keys", timeout=0.5, progress=told.append)
    assert time.monotonic() - started < TIMEOUT
    assert not isinstance(caught.value, BrokerStoppedError)
    assert f"(pid {deaf_pid}) did not answer rotate-data-keys within 0.5 s" in str(caught.value)
    assert told == [f"asked the broker (pid {deaf_pid}) to rotate-data-keys; waiting up to 0.5 s"]
    assert _left_in_control(tmp_path) == []


def test_a_broker_that_stops_while_asked_is_noticed_at_once(tmp_path: Path, deaf_pid: int) -> None:
    lock = RunLock(tmp_path)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            ask_running_broker(tmp_path, "rotate-data-keys", timeout=TIMEOUT * 6)
        except BaseException as exc:
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        wait_until(lambda: any((tmp_path / CONTROL_DIR).glob("*.request")), what="the request file")
        stopped = time.monotonic()
        lock.release()  # the broker's process ends: its run lock goes with it
        asker.join(TIMEOUT)
        assert not asker.is_alive(), "the asker still waits for a broker that stopped"
        # Noticed within a poll or two, not at the (one-minute) deadline.
        assert time.monotonic() - stopped < TIMEOUT
    finally:
        lock.release()
        asker.join(TIMEOUT * 6)
    assert len(outcome) == 1 and isinstance(outcome[0], BrokerStoppedError)
    assert f"the broker (pid {deaf_pid}) stopped before it answered" in str(outcome[0])
    assert _left_in_control(tmp_path) == [], "a withdrawn request must not run at the next start"


def test_no_process_to_signal_is_an_error_and_withdraws_the_request(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(ProcessLookupError, match="no broker process id"):
        ask_running_broker(tmp_path, "rotate-data-keys", timeout=TIMEOUT)
    assert _left_in_control(tmp_path) == []


def test_a_broker_gone_before_the_signal_is_reported_as_stopped(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(TIMEOUT)  # a pid that was a process and no longer is
    write_status(tmp_path, broker_id="b-1", state="RUNNING", actions=[], encryption={})
    doc = json.loads((tmp_path / "status.json").read_text())
    doc["Pid"] = proc.pid
    (tmp_path / "status.json").write_text(json.dumps(doc))
    with RunLock(tmp_path), pytest.raises(BrokerStoppedError, match="is not running"):
        ask_running_broker(tmp_path, "rotate-data-keys", timeout=TIMEOUT)
    assert _left_in_control(tmp_path) == []


def test_a_request_whose_asker_gave_up_leaves_no_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / CONTROL_DIR
    folder.mkdir()
    request = folder / "a.request"
    request.write_text(json.dumps({"action": "rotate-data-keys"}))

    async def rotate() -> dict[str, Any]:
        request.unlink()  # the asker's deadline passes while the broker works
        return {"RewrittenSegments": []}

    with caplog.at_level(logging.INFO, logger="sealmq.control"):
        assert asyncio.run(run_pending_requests(tmp_path, {"rotate-data-keys": rotate})) == 1
    assert _left_in_control(tmp_path) == []
    messages = [record.getMessage() for record in caplog.records]
    assert "control request rotate-data-keys done" in messages
    assert any("stopped waiting" in message for message in messages)
