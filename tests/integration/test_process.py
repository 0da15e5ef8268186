"""``python -m sealmq serve --config F`` as an operator meets it: start, refusal, first run."""

from __future__ import annotations

import re
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import stomp

from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    Collector,
    ProcessBrokers,
    free_port,
    iter_files,
    sealmq_command,
    stomp_connect,
    wait_until,
    write_config,
)


def round_trip(conn: stomp.Connection, got: Collector, queue: str = "/queue/hello") -> None:
    conn.subscribe(queue, id="s", ack="auto", headers={"receipt": "sub"})
    wait_until(lambda: "sub" in got.receipts, what="SUBSCRIBE receipt")
    conn.send(queue, "hello", headers={"persistent": "true"})
    assert got.get().body == "hello"
    conn.disconnect()


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("colour = 'blue'\n", "colour: unknown key"),
        ("[limits]\nmax_frame_bodyy = 10\n", "limits.max_frame_bodyy: unknown key"),
        ("[listeners]\nstompp = 61614\n", "listeners.stompp: unknown key"),
    ],
    ids=["top level", "in a table", "a listener"],
)
def test_unknown_key_exits_2_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    config = tmp_path / "sealmq.toml"
    data_dir = tmp_path / "data"
    config.write_text(f"data_dir = {str(data_dir)!r}\n" + toml)
    result = subprocess.run(
        sealmq_command(config), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists(), "a refused configuration must not start anything"


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        sealmq_command(tmp_path / "absent.toml"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "absent.toml" in result.stderr
    assert "not found" in result.stderr


def test_ready_line_names_the_endpoint_and_the_ca_path_is_printed(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    output = broker.run_output()
    assert re.search(rf"ready: .*stomp\+ssl://127\.0\.0\.1:{broker.stomp_port}\b", output)
    assert str(broker.ca_file) in output
    assert broker.ca_file.is_file()
    round_trip(*stomp_connect(broker.stomp_port, broker.ca_file))
    assert broker.stop() == 0


def _printed_password(output: str, said: str = "Created user 'admin' with password:") -> str:
    found = re.findall(rf"{re.escape(said)} (\S+)", output)
    assert len(found) == 1, output
    password: str = found[0]
    assert output.count(password) == 1, "printed once per start, and nowhere else"
    return password


def test_without_users_an_admin_password_is_printed_kept_and_logs_in(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new(users=None).start()
    output = broker.run_output()
    password = _printed_password(output)
    kept = broker.data_dir / "admin-password"
    assert f"kept in {kept}" in output
    assert "If it is ever lost: stop the broker, add [[users]] entries" in output
    round_trip(*stomp_connect(broker.stomp_port, broker.ca_file, login="admin", passcode=password))
    _, refused = stomp_connect(
        broker.stomp_port, broker.ca_file, login="admin", passcode="guess", wait=False
    )
    assert "Authentication failed" in refused.error().headers["message"]
    assert broker.stop() == 0

    # Readable by the operator only, in the password file; anywhere else only as a hash,
    # inside an encrypted file.
    assert kept.read_text() == password + "\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(broker.data_dir.stat().st_mode) == 0o700
    assert all(
        password.encode() not in path.read_bytes()
        for path in iter_files(broker.data_dir)
        if path != kept
    )

    broker.start()  # the same admin, and its password printed again until it is changed
    assert (
        _printed_password(broker.run_output(), "User 'admin' still has its generated password:")
        == password
    )
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file, login="admin", passcode=password)
    round_trip(conn, got, "/queue/again")
    assert broker.stop() == 0


@pytest.mark.slow
def test_a_failed_first_start_does_not_lock_the_admin_out(processes: ProcessBrokers) -> None:
    # At DEBUG too, the password appears in the start message only (_printed_password).
    broker = processes.new(users=None, mqtt=True, log_level='"debug"')
    # Port 8883 taken, say by a Mosquitto already running: the first start fails after
    # it created 'admin'.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", broker.mqtt_port))
        taken.listen()
        failed = subprocess.run(
            sealmq_command(broker.config),
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 3,
            check=False,
        )
    assert failed.returncode == 1
    assert "cannot start" in failed.stderr
    kept = broker.data_dir / "admin-password"
    assert (broker.data_dir / "users.sealed").is_file(), "the scenario: admin was created"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    broker.start()  # the port is free now: the password is printed, and it works
    password = _printed_password(
        broker.run_output(), "User 'admin' still has its generated password:"
    )
    assert kept.read_text() == password + "\n"
    assert "If it is ever lost: stop the broker" in broker.run_output()
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file, login="admin", passcode=password)
    round_trip(conn, got)
    assert broker.stop() == 0
    assert broker.run_output().count(password) == 1, "logins log no password, even at DEBUG"

    # The documented way to a new password: [[users]] in the configuration replace the
    # generated admin, and its kept password goes.
    write_config(
        broker.config,
        broker.data_dir,
        broker.stomp_port,
        users=(("admin", "a-new-password"),),
        mqtt_port=broker.mqtt_port,
    )
    broker.start()
    output = broker.run_output()
    assert password not in output
    assert "generated password" not in output
    assert f"removed {kept}: the configured [[users]] replace the generated 'admin'" in output
    assert not kept.exists()
    conn, got = stomp_connect(
        broker.stomp_port, broker.ca_file, login="admin", passcode="a-new-password"
    )
    round_trip(conn, got, "/queue/configured")
    _, refused = stomp_connect(
        broker.stomp_port, broker.ca_file, login="admin", passcode=password, wait=False
    )
    assert "Authentication failed" in refused.error().headers["message"]
    assert broker.stop() == 0


def test_a_configured_plain_listener_serves_plain_tcp_and_logs_a_warning(
    processes: ProcessBrokers,
) -> None:
    plain_port = free_port()
    broker = processes.new(sections=f"[listeners.plain]\nstomp = {plain_port}\n").start()
    output = broker.run_output()
    assert re.search(rf"WARNING .*plain-text listener stomp on port {plain_port}.*NOT", output)
    assert f"stomp+tcp://127.0.0.1:{plain_port}" in output

    hosts = [("127.0.0.1", plain_port)]
    conn = stomp.Connection12(hosts, auto_content_length=True, heartbeats=(0, 0))
    got = Collector()
    conn.set_listener("collector", got)
    conn.connect(USER, PASSWORD, wait=True)
    round_trip(conn, got, "/queue/plain")

    # The TLS port is unchanged: TLS only.
    round_trip(*stomp_connect(broker.stomp_port, broker.ca_file), "/queue/tls")
    assert broker.stop() == 0


def test_sigint_stops_cleanly_too(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGINT)
    assert broker.proc.wait(TIMEOUT) == 0
    broker.close()
    assert "stopped" in broker.run_output()


def test_a_second_broker_on_the_same_data_folder_is_refused(processes: ProcessBrokers) -> None:
    first = processes.new().start()
    config = write_config(
        first.config.parent / "second.toml", first.data_dir, free_port(), log_level='"info"'
    )
    result = subprocess.run(
        sealmq_command(config), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # The first one is unaffected.
    round_trip(*stomp_connect(first.stomp_port, first.ca_file))
    assert first.stop() == 0
