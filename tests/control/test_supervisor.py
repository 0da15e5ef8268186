"""The supervisor's state machine, with a fake Serving and a key check the test controls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sealmq.control.keys import KeyAccessError
from sealmq.control.state import ACTION_INVALID_KMS_KEY, read_status
from sealmq.control.supervisor import BrokerNotServingError, Supervisor
from sealmq.store.errors import KeyUnavailableError
from tests.support import TIMEOUT

INTERVAL = 0.02


class FakeServing:
    def __init__(self, number: int) -> None:
        self.number = number
        self.stopped: str | None = None
        self.rotations = 0

    async def stop(self, reason: str) -> None:
        self.stopped = reason

    async def rotate_data_keys(self) -> list[int]:
        self.rotations += 1
        return [1]


class World:
    """The key's availability, and every Serving built so far."""

    def __init__(self) -> None:
        self.refusal: str | None = None
        self.built: list[FakeServing] = []

    def check(self) -> None:
        if self.refusal is not None:
            raise KeyAccessError(ACTION_INVALID_KMS_KEY, self.refusal)

    async def open_serving(self) -> FakeServing:
        if self.refusal is not None:
            raise KeyUnavailableError(f"cannot decrypt a data key: {self.refusal}")
        serving = FakeServing(len(self.built))
        self.built.append(serving)
        return serving


def make(tmp_path: Path, world: World) -> Supervisor:
    return Supervisor(
        data_dir=tmp_path,
        broker_id="b-1",
        encryption={"EncryptionOptions": {"UseAwsOwnedKey": True}},
        open_serving=world.open_serving,
        check_access=world.check,
        check_interval=INTERVAL,
        retry_interval=INTERVAL,
    )


async def wait_for(predicate: object, timeout: float = TIMEOUT) -> None:
    async def loop() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


@pytest.mark.asyncio
async def test_refusal_stops_serving_and_access_coming_back_rebuilds(tmp_path: Path) -> None:
    world = World()
    supervisor = make(tmp_path, world)
    await supervisor.start()
    try:
        assert supervisor.state == "RUNNING"
        assert read_status(tmp_path)["BrokerState"] == "RUNNING"  # type: ignore[index]
        first = world.built[0]
        world.refusal = "AccessDeniedException: grant revoked"
        await wait_for(lambda: supervisor.state == "CRITICAL_ACTION_REQUIRED")
        assert first.stopped is not None and "encryption key is unavailable" in first.stopped
        status = read_status(tmp_path)
        assert status is not None
        assert status["ActionsRequired"] == [
            {
                "ActionRequiredCode": "INVALID_KMS_KEY",
                "ActionRequiredInfo": "AccessDeniedException: grant revoked",
            }
        ]
        with pytest.raises(BrokerNotServingError):
            await supervisor.rotate_data_keys()
        world.refusal = None
        await wait_for(lambda: supervisor.state == "RUNNING")
        assert len(world.built) == 2 and world.built[1].stopped is None
        assert await supervisor.rotate_data_keys() == [1]
    finally:
        await supervisor.close()
    assert world.built[1].stopped == "The broker is shutting down"
    assert json.loads((tmp_path / "status.json").read_text())["BrokerState"] == "STOPPED"


@pytest.mark.asyncio
async def test_a_failed_store_write_triggers_it_at_once(tmp_path: Path) -> None:
    world = World()
    supervisor = Supervisor(
        data_dir=tmp_path,
        broker_id="b-1",
        encryption={},
        open_serving=world.open_serving,
        check_access=world.check,
        check_interval=3600,  # the periodic check will not come in this test
        retry_interval=3600,
    )
    await supervisor.start()
    try:
        world.refusal = "DisabledException: key disabled"
        supervisor.store_failed(KeyUnavailableError("cannot generate a data key"))
        await wait_for(lambda: supervisor.state == "CRITICAL_ACTION_REQUIRED")
        # The action says what the key service says now, not only that a write failed.
        assert supervisor.actions[0].info == "DisabledException: key disabled"
        world.refusal = None
        supervisor.wake()
        await wait_for(lambda: supervisor.state == "RUNNING")
    finally:
        await supervisor.close()


@pytest.mark.asyncio
async def test_a_key_refused_at_start_waits_in_critical(tmp_path: Path) -> None:
    world = World()
    world.refusal = "NotFoundException: gone"
    supervisor = make(tmp_path, world)
    await supervisor.start()
    try:
        assert supervisor.state == "CRITICAL_ACTION_REQUIRED"
        assert supervisor.serving is None and world.built == []
        world.refusal = None
        await wait_for(lambda: supervisor.state == "RUNNING")
    finally:
        await supervisor.close()
