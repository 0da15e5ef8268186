"""The run lock, the status file and control requests."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from sealmq.control.requests import CONTROL_DIR, run_pending_requests
from sealmq.control.state import (
    ActionRequired,
    BrokerRunningError,
    RunLock,
    is_running,
    read_status,
    write_status,
)


def test_the_run_lock_is_exclusive_and_seen(tmp_path: Path) -> None:
    assert not is_running(tmp_path)
    with RunLock(tmp_path):
        assert is_running(tmp_path)
        with pytest.raises(BrokerRunningError, match="stop it first"):
            RunLock(tmp_path)
    assert not is_running(tmp_path)
    assert stat.S_IMODE((tmp_path / "run.lock").stat().st_mode) == 0o600


def test_status_file(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    write_status(
        tmp_path,
        broker_id="b-1",
        state="CRITICAL_ACTION_REQUIRED",
        actions=[ActionRequired("INVALID_KMS_KEY", "grant revoked")],
        encryption={"EncryptionOptions": {"UseAwsOwnedKey": True}},
    )
    status = read_status(tmp_path)
    assert status is not None
    assert status["BrokerState"] == "CRITICAL_ACTION_REQUIRED"
    assert status["ActionsRequired"] == [
        {"ActionRequiredCode": "INVALID_KMS_KEY", "ActionRequiredInfo": "grant revoked"}
    ]
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary file left


def test_pending_requests_are_answered_once(tmp_path: Path) -> None:
    folder = tmp_path / CONTROL_DIR
    folder.mkdir()
    (folder / "a.request").write_text(json.dumps({"action": "rotate-data-keys"}))
    (folder / "b.request").write_text(json.dumps({"action": "format-disk"}))
    calls: list[str] = []

    async def rotate() -> dict[str, Any]:
        calls.append("rotate")
        return {"RewrittenSegments": [1, 2]}

    handlers = {"rotate-data-keys": rotate}
    assert asyncio.run(run_pending_requests(tmp_path, handlers)) == 2
    assert asyncio.run(run_pending_requests(tmp_path, handlers)) == 0
    assert calls == ["rotate"]
    assert json.loads((folder / "a.result").read_text()) == {
        "ok": True,
        "RewrittenSegments": [1, 2],
    }
    assert json.loads((folder / "b.result").read_text())["ok"] is False
