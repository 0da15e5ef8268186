"""``sealmq user create|update|delete|list``: users managed while the broker runs, applied
to new connections without a restart; argon2id hashes only; Amazon MQ's password rules."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp

from tests.cli.support import cli
from tests.support import PASSWORD, USER, BrokerProcess, ProcessBrokers, stomp_connect

MAP = """
[[authorization]]
destination = "queue://jobs.>"
read = ["readers"]
write = ["writers"]
admin = ["readers", "writers"]
"""


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


def user(
    monkeypatch: pytest.MonkeyPatch, broker: BrokerProcess, *args: str, password: str = ""
) -> tuple[int, Any, str]:
    """``sealmq user <args> --config <broker's>`` with ``password`` on stdin: exit
    code, parsed JSON output (or None), stderr."""
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    result = cli("user", *args, "--config", str(broker.config))
    out = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, out, result.stderr


def can_login(broker: BrokerProcess, name: str, password: str) -> bool:
    try:
        conn, _ = stomp_connect(broker.stomp_port, broker.ca_file, login=name, passcode=password)
    except stomp.exception.ConnectFailedException:
        return False
    conn.disconnect()
    return True


def may(broker: BrokerProcess, name: str, password: str) -> tuple[bool, bool]:
    """(may send to, may subscribe to) queue://jobs.a, for a new connection of ``name``."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file, login=name, passcode=password)
    try:
        conn.send("/queue/jobs.a", "x", headers={"receipt": "s"})
        conn.subscribe("/queue/jobs.a", id="1", headers={"receipt": "r"})
        answers = {}
        for _ in range(2):
            # Each frame gets either its RECEIPT or an ERROR naming its receipt.
            try:
                error = got.error(timeout=1.5)
                answers[error.headers["receipt-id"]] = False
            except AssertionError:
                break
        for receipt in ("s", "r"):
            answers.setdefault(receipt, receipt in got.receipts)
        return answers["s"], answers["r"]
    finally:
        conn.disconnect()


def test_users_change_for_new_connections_while_the_broker_runs(
    processes: ProcessBrokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = processes.new(sections=MAP).start()
    secret = "carol-pass-1234"
    code, out, err = user(
        monkeypatch, broker, "create", "carol", "--groups", "readers", password=secret
    )
    assert code == 0, err
    assert out == {
        "Username": "carol",
        "Groups": ["readers"],
        "ConsoleAccess": False,
        "Source": "managed",
        "Applied": "now, for new connections",
    }
    assert can_login(broker, "carol", secret)
    assert may(broker, "carol", secret) == (False, True)

    code, out, err = user(
        monkeypatch, broker, "update", "carol", "--groups", "writers", "--console-access"
    )
    assert code == 0, err
    assert out["Groups"] == ["writers"] and out["ConsoleAccess"] is True
    assert may(broker, "carol", secret) == (True, False)

    new = "carol-pass-5678"
    assert user(monkeypatch, broker, "update", "carol", "--password", password=new)[0] == 0
    assert not can_login(broker, "carol", secret)
    assert can_login(broker, "carol", new)

    code, out, _ = user(monkeypatch, broker, "list")
    assert code == 0
    assert out == {
        "Users": [
            {"Username": USER, "Groups": ["admins"], "Source": "config"},
            {
                "Username": "carol",
                "Groups": ["writers"],
                "ConsoleAccess": True,
                "Source": "managed",
            },
        ]
    }
    code, out, err = user(monkeypatch, broker, "delete", "carol")
    assert code == 0, err
    assert not can_login(broker, "carol", new)
    assert can_login(broker, USER, PASSWORD)
    # Only hashes are stored, sealed; no password or user name in any file or the log.
    for path in broker.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and new.encode() not in data, path
    assert secret not in broker.output() and new not in broker.output()
    assert "users reloaded" in broker.output()


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw", "at least 12 characters"),
        ("has,a-comma-long", "may not contain ','"),
        ("has:colon=equals", "may not contain ':' '='"),
    ],
)
def test_password_rules_are_amazon_mqs(
    processes: ProcessBrokers, monkeypatch: pytest.MonkeyPatch, password: str, reason: str
) -> None:
    broker = processes.new()
    code, _, err = user(monkeypatch, broker, "create", "dave", password=password)
    assert code == 1 and reason in err


def test_refusals_are_one_line_and_change_nothing(
    processes: ProcessBrokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = processes.new().start()
    broker.stop()
    good = "a-good-password-1"
    code, _, err = user(monkeypatch, broker, "update", USER, "--groups", "x")
    assert code == 1 and "declared in the configuration file's [[users]]" in err
    code, _, err = user(monkeypatch, broker, "create", USER, password=good)
    assert code == 1 and "declared in the configuration" in err
    assert user(monkeypatch, broker, "create", "erin", password=good)[0] == 0
    code, _, err = user(monkeypatch, broker, "create", "erin", password=good)
    assert code == 1 and "already exists" in err
    code, _, err = user(monkeypatch, broker, "create", "bad name", password=good)
    assert code == 1 and "user name 'bad name'" in err
    code, _, err = user(monkeypatch, broker, "delete", "nobody")
    assert code == 1 and "no managed user 'nobody'" in err
    code, _, err = user(monkeypatch, broker, "update", "erin")
    assert code == 1 and "nothing to update" in err


def test_users_made_while_stopped_are_there_at_start_beside_the_configured_ones(
    processes: ProcessBrokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = processes.new().start()
    broker.stop()
    code, out, err = user(monkeypatch, broker, "create", "frank", password="frank-password-1")
    assert code == 0, err
    assert out["Applied"] == "at the next start"
    broker.start()
    assert can_login(broker, "frank", "frank-password-1")
    assert can_login(broker, USER, PASSWORD)


def test_the_generated_admin_can_be_managed(
    processes: ProcessBrokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = processes.new(users=()).start()
    generated = (broker.data_dir / "admin-password").read_text().strip()
    assert can_login(broker, "admin", generated)
    code, out, _ = user(monkeypatch, broker, "list")
    assert out["Users"] == [
        {"Username": "admin", "Groups": ["admin"], "ConsoleAccess": False, "Source": "managed"}
    ]
    code, _, err = user(monkeypatch, broker, "delete", "admin")
    assert code == 1 and "last user" in err
    new = "new-admin-password"
    assert user(monkeypatch, broker, "update", "admin", "--password", password=new)[0] == 0
    assert not (broker.data_dir / "admin-password").exists()
    assert can_login(broker, "admin", new)
    assert not can_login(broker, "admin", generated)
