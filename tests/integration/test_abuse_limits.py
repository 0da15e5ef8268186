"""Abuse limits through real clients: connections per user, subscriptions per
connection, destinations, failed-login throttling; each answered with the protocol's
error, never a crash."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stomp

from sealmq.config import LimitSettings
from tests.support import (
    PASSWORD,
    TIMEOUT,
    BrokerThread,
    PahoClient,
    mqtt_settings,
    stomp_connect,
    wait_until,
)

LIMITS = dataclasses.replace(
    LimitSettings(),
    max_connections_per_user=2,
    max_subscriptions_per_connection=2,
    max_destinations=3,
    max_login_failures=3,
    # Long enough that the logins right after the 3rd failure still meet the lockout
    # on a loaded machine (it scales with the tests' timeout factor).
    login_lockout=TIMEOUT / 2,
)


@pytest.fixture
def broker(tmp_path: Any) -> Iterator[BrokerThread]:
    thread = BrokerThread(mqtt_settings(tmp_path / "data", limits=LIMITS)).start()
    yield thread
    thread.stop()


def _connections(broker: BrokerThread) -> int:
    assert broker.running is not None
    core = broker.running.broker
    return int(broker.call(lambda: len(core.connections)))


def test_connections_per_user(broker: BrokerThread) -> None:
    first, _ = stomp_connect(broker.stomp_port, broker.ca_file)
    second = PahoClient(broker.mqtt_port, broker.ca_file, version=5)
    try:
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file, wait=False)
        error = got.error()
        assert error.headers["message"] == (
            "Connection refused: user app has its maximum of 2 connections"
        )
        wait_until(lambda: not conn.is_connected(), what="refused STOMP connection closed")
        for version, code in ((5, 0x97), (4, 0x88)):
            client = PahoClient(broker.mqtt_port, broker.ca_file, version=version, connect=False)
            try:
                connack = client.connect()
                # MQTT 5: quota exceeded; 3.1.1: return code 3, server unavailable
                # (paho reports it as 0x88).
                assert connack is not None and connack.reason_code == code
            finally:
                client.close()
    finally:
        first.disconnect()
        second.close()
    # Places come back as connections close.
    wait_until(lambda: _connections(broker) == 0, what="connections closed")
    again, _ = stomp_connect(broker.stomp_port, broker.ca_file)
    again.disconnect()


@pytest.mark.parametrize("version", [4, 5])
def test_subscriptions_per_connection_mqtt(broker: BrokerThread, version: int) -> None:
    client = PahoClient(broker.mqtt_port, broker.ca_file, version=version)
    try:
        assert client.subscribe_many([("a/1", 1), ("a/2", 1), ("a/3", 1)]) == [
            1,
            1,
            0x97 if version == 5 else 0x80,
        ]
        assert client.unsubscribe("a/1") is not None
        assert client.subscribe("a/3", 1) == [1]  # the connection goes on
    finally:
        client.close()


def test_subscriptions_and_destinations_stomp(broker: BrokerThread) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe("/topic/t.1", id="1")
        conn.subscribe("/topic/t.2", id="2")
        conn.subscribe("/topic/t.3", id="3", headers={"receipt": "s3"})
        error = got.error()
        assert error.headers["receipt-id"] == "s3"
        assert error.headers["message"] == "a connection may hold at most 2 subscriptions"
        for n in range(3):
            conn.send(f"/queue/q.{n}", "x", headers={"receipt": f"q{n}"})
        wait_until(lambda: {"q0", "q1", "q2"} <= set(got.receipts), what="three queues")
        conn.send("/queue/q.3", "x", headers={"receipt": "q3"})
        error = got.error()
        assert error.headers["receipt-id"] == "q3"
        assert error.headers["message"] == "the broker has its maximum of 3 destinations"
        conn.send("/queue/q.0", "still", headers={"receipt": "again"})
        wait_until(lambda: "again" in got.receipts, what="a send to an existing queue")
    finally:
        conn.disconnect()


def _login(broker: BrokerThread, password: str) -> bool:
    try:
        conn, _ = stomp_connect(broker.stomp_port, broker.ca_file, passcode=password)
    except stomp.exception.ConnectFailedException:
        return False
    conn.disconnect()
    return True


@pytest.mark.slow  # it waits out a lockout of TIMEOUT / 2 seconds
def test_failed_logins_are_throttled_then_locked_out_for_a_while(
    broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sealmq.security"):
        for _ in range(3):
            assert not _login(broker, "wrong-guess-1")
        # Locked: even the right password is refused, unchecked, like a wrong one.
        assert not _login(broker, PASSWORD)
        client = PahoClient(broker.mqtt_port, broker.ca_file, version=5, connect=False)
        try:
            connack = client.connect()
            assert connack is not None and connack.reason_code == 0x86
        finally:
            client.close()
    assert f"login throttling: user app refused for {TIMEOUT / 2:g} s after 3 failed" in caplog.text
    assert "login throttling: address 127.0.0.1 refused" in caplog.text
    assert "wrong-guess-1" not in caplog.text and PASSWORD not in caplog.text
    # After the lockout (counted from the last failure) the right password works.
    deadline = time.monotonic() + TIMEOUT * 2
    while not _login(broker, PASSWORD):
        assert time.monotonic() < deadline, "still locked out"
        time.sleep(0.2)  # a bounded poll: each try is a real login
