"""Users are hashed with the ``[security]`` costs: production defaults, cheap ones in tests."""

from __future__ import annotations

import logging
from pathlib import Path

import argon2
import pytest

from sealmq.config import SecuritySettings
from tests.support import TEST_SECURITY, BrokerThread, make_settings, stomp_connect


def stored_hash_costs(broker: BrokerThread) -> tuple[int, int, int]:
    def first_hash() -> str:
        assert broker.running is not None
        return broker.running.authenticator.records[0].password_hash

    found = argon2.extract_parameters(broker.call(first_hash))
    assert found.type is argon2.Type.ID
    return found.time_cost, found.memory_cost, found.parallelism


def test_default_settings_hash_users_with_the_rfc_9106_profile(tmp_path: Path) -> None:
    broker = BrokerThread(make_settings(tmp_path / "data", security=SecuritySettings())).start()
    try:
        assert stored_hash_costs(broker) == (3, 65536, 4)
        conn, _ = stomp_connect(broker.stomp_port, broker.ca_file)
        conn.disconnect()
    finally:
        broker.stop()


@pytest.mark.parametrize("configured_users", [True, False])
def test_test_settings_hash_users_cheaply_and_logins_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, configured_users: bool
) -> None:
    overrides = {} if configured_users else {"users": ()}  # no users: a generated admin
    with caplog.at_level(logging.WARNING, logger="sealmq"):
        broker = BrokerThread(make_settings(tmp_path / "data", **overrides)).start()
    try:
        assert stored_hash_costs(broker) == (
            TEST_SECURITY.password_hash_time_cost,
            TEST_SECURITY.password_hash_memory_kib,
            TEST_SECURITY.password_hash_parallelism,
        )
        assert "[security] argon2 costs are below the defaults: for tests only" in caplog.text
        if configured_users:
            conn, _ = stomp_connect(broker.stomp_port, broker.ca_file)
            conn.disconnect()
    finally:
        broker.stop()
