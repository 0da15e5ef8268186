"""Support for tests of the key lifecycle: configs with the kms listener, the CLI, boto3.

Brokers run as real ``sealmq serve`` processes (``tests.support.BrokerProcess``);
the ``sealmq`` command runs as a real process too (:func:`sealmq_cli`), so exit
codes, stdout JSON and stderr lines are what an operator sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from sealmq.cli.main import main
from tests.support import (
    PASSWORD,
    TEST_SECURITY_TOML,
    TIMEOUT,
    USER,
    BrokerProcess,
    free_port,
    stomp_connect,
    wait_until,
)

__all__ = [
    "KeyBroker",
    "boto_kms",
    "cli",
    "cli_json",
    "cli_process",
    "external_encryption",
    "receive_exactly",
    "segment_wrapped_keys",
    "send_persistent",
    "write_kms_config",
]


def write_kms_config(
    path: Path,
    data_dir: Path,
    *,
    stomp_port: int,
    kms_port: int | None,
    encryption: str = "",
    kms: str = "",
    extra: str = "",
    mqtt_port: int | None = None,
) -> Path:
    """A config for a process broker: STOMP (and optionally kms, MQTT) on 127.0.0.1.

    ``encryption`` and ``kms`` are TOML lines for the ``[encryption]`` and ``[kms]``
    tables; ``extra`` is appended at the end; ``mqtt_port`` also serves MQTT over TLS.
    """
    lines = [
        f"data_dir = {str(data_dir)!r}",
        'host = "127.0.0.1"',
        "[listeners]",
        f"stomp = {stomp_port}",
        f"kms = {kms_port if kms_port is not None else 'false'}",
        f"mqtt = {mqtt_port if mqtt_port is not None else 'false'}",
        *(f"{name} = false" for name in ("amqp", "openwire", "wss", "console")),
        "[[users]]",
        f"username = {USER!r}",
        f"password = {PASSWORD!r}",
        'groups = ["admins"]',
        TEST_SECURITY_TOML,
        "[encryption]",
        encryption,
        "[kms]",
        kms,
        extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def external_encryption(
    endpoint: str,
    key: str,
    *,
    ca_bundle: Path,
    credentials_file: Path | None = None,
    access_key: tuple[str, str] | None = None,
    region: str | None = None,
    cache_seconds: float | None = None,
) -> str:
    """``[encryption]`` lines for a broker whose key is ``key`` in the KMS at ``endpoint``.

    Credentials come from ``credentials_file`` or ``access_key`` (id, secret).
    """
    lines = [f"kms_endpoint = {endpoint!r}", f"kms_key = {key!r}"]
    if region is not None:
        lines.append(f"kms_region = {region!r}")
    if credentials_file is not None:
        lines.append(f"kms_credentials_file = {str(credentials_file)!r}")
    if access_key is not None:
        lines += [
            f"kms_access_key_id = {access_key[0]!r}",
            f"kms_secret_access_key = {access_key[1]!r}",
        ]
    lines.append(f"kms_ca_bundle = {str(ca_bundle)!r}")
    if cache_seconds is not None:
        lines.append(f"data_key_cache_seconds = {cache_seconds}")
    return "\n".join(lines)


def send_persistent(broker: KeyBroker, destination: str, bodies: list[str]) -> None:
    """Send ``bodies`` persistently over STOMP; return once every RECEIPT is in."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        for i, body in enumerate(bodies):
            conn.send(destination, body, headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda: len(got.receipts) == len(bodies), what="receipts")
    finally:
        conn.disconnect()


def receive_exactly(broker: KeyBroker, destination: str, sent: list[str]) -> None:
    """Every message of ``sent`` is delivered from ``destination``, in order, and nothing else."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        conn.subscribe(destination, id="s", ack="auto")
        assert [frame.body for frame in got.take(len(sent))] == sent
        assert got.nothing_more()
    finally:
        conn.disconnect()


def cli(*args: str, timeout: float = TIMEOUT * 3) -> subprocess.CompletedProcess[str]:
    """Run ``sealmq <args>``: its exit code, stdout and stderr.

    ``serve`` runs as a real process; other commands run ``sealmq.cli.main.main``
    in this process (the same code, without an interpreter start per call), their
    output captured.
    """
    if args and args[0] == "serve":
        return subprocess.run(
            [sys.executable, "-m", "sealmq", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["sealmq", *args], code, out.getvalue(), err.getvalue())


def cli_process(*args: str, timeout: float = TIMEOUT * 3) -> subprocess.CompletedProcess[str]:
    """Run ``sealmq <args>`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "sealmq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(*args: str) -> Any:
    """Run ``sealmq <args>``, require success, parse stdout as JSON."""
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


@dataclass
class KeyBroker:
    """A process broker with the kms listener, and what tests need around it."""

    folder: Path
    config: Path
    data_dir: Path
    kms_dir: Path
    stomp_port: int
    kms_port: int
    process: BrokerProcess
    kms_text: str = ""
    extra: str = ""
    #: The TLS MQTT port; 0 when MQTT is off (``make(mqtt=True)`` turns it on).
    mqtt_port: int = 0

    @classmethod
    def make(
        cls,
        folder: Path,
        *,
        encryption: str = "",
        kms: str = "",
        separate_kms_dir: bool = False,
        kms_listener: bool = True,
        extra: str = "",
        mqtt: bool = False,
    ) -> KeyBroker:
        """A configured, not yet started broker under ``folder``.

        ``mqtt``: also serve MQTT over TLS (on ``mqtt_port``).
        """
        folder.mkdir(parents=True, exist_ok=True)
        data_dir = folder / "data"
        kms_dir = folder / "kms" if separate_kms_dir else data_dir
        if separate_kms_dir:
            kms = f"data_dir = {str(kms_dir)!r}\n{kms}"
        stomp_port, kms_port = free_port(), free_port()
        mqtt_port = free_port() if mqtt else 0
        config = write_kms_config(
            folder / "sealmq.toml",
            data_dir,
            stomp_port=stomp_port,
            kms_port=kms_port if kms_listener else None,
            encryption=encryption,
            kms=kms,
            extra=extra,
            mqtt_port=mqtt_port or None,
        )
        process = BrokerProcess(
            config, data_dir, folder / "broker.log", stomp_port=stomp_port, mqtt_port=mqtt_port
        )
        return cls(
            folder, config, data_dir, kms_dir, stomp_port, kms_port, process, kms, extra, mqtt_port
        )

    def config_with(self, encryption: str, name: str = "other.toml") -> Path:
        """Another config for the same folders and ports, with other ``[encryption]`` lines."""
        return write_kms_config(
            self.folder / name,
            self.data_dir,
            stomp_port=self.stomp_port,
            kms_port=self.kms_port,
            encryption=encryption,
            kms=self.kms_text,
            extra=self.extra,
            mqtt_port=self.mqtt_port or None,
        )

    def start(self) -> KeyBroker:
        self.process.start()
        return self

    def stop(self) -> int:
        return self.process.stop()

    def close(self) -> None:
        self.process.close()

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def credentials(self) -> Path:
        return self.kms_dir / "credentials"

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.kms_port}"

    def sealmq(self, *args: str) -> Any:
        """``sealmq <args> --config <this broker's config>``, JSON result."""
        return cli_json(*args, "--config", str(self.config))

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.sealmq("status")
        return status

    def wait_state(self, state: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def reached() -> bool:
            found.update(self.status())
            return bool(found.get("BrokerState") == state)

        try:
            wait_until(reached, timeout, what=f"broker state {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc} (last: {found.get('BrokerState')})") from None
        return found


def boto_kms(broker: KeyBroker) -> Any:
    """A boto3 KMS client of the broker's kms listener, with the credentials file it wrote.

    Exactly what ``AWS_SHARED_CREDENTIALS_FILE=<kms_dir>/credentials`` gives boto3
    and the AWS CLI, without changing this process's environment.
    """
    core = botocore.session.Session()
    core.set_config_variable("credentials_file", str(broker.credentials))
    core.set_config_variable("profile", "default")
    session = boto3.session.Session(botocore_session=core, region_name="us-east-1")
    return session.client(
        "kms",
        endpoint_url=broker.endpoint,
        verify=str(broker.ca_file),
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
        ),
    )


_PREAMBLE = struct.Struct(">8sHII")
_U32 = struct.Struct(">I")


def _fields(body: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(body):
        (n,) = _U32.unpack_from(body, pos)
        yield body[pos + 4 : pos + 4 + n]
        pos += 4 + n


def segment_wrapped_keys(journal: Path) -> dict[str, bytes]:
    """Segment file name -> the wrapped data key in its header (docs/store.md's layout).

    The broker may be running: a segment deleted, or just started, between listing
    and reading is read again.
    """
    for _ in range(100):
        try:
            return _read_wrapped_keys(journal)
        except (FileNotFoundError, struct.error, IndexError):
            continue
    raise AssertionError(f"could not read the segment headers of {journal}")


def _read_wrapped_keys(journal: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(journal.glob("*.seg")):
        data = path.read_bytes()
        _, _, header_len, _ = _PREAMBLE.unpack_from(data)
        body = data[_PREAMBLE.size : _PREAMBLE.size + header_len]
        fields = list(_fields(body))
        # broker | segment | token | key id | context | wrapped DEK (| the chain, format 2)
        found[path.name] = fields[5]
    return found
