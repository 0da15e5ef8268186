"""The broker against a second, independent KMS implementation: moto's server mode.

moto (``moto_server``) is started by the test as a separate process on a free
127.0.0.1 port, serving HTTPS with a certificate from a CA made for the test. The
broker is configured with ``kms_endpoint`` pointing at it, a key created there by
boto3, and static credentials: every data key of the store is then generated and
unwrapped by moto. Nothing of sealmq's key service runs, so this proves the
broker's client side speaks the real KMS JSON protocol with SigV4, not only our
own dialect.

moto gets key state wrong on Decrypt (a disabled key still decrypts), so
revocation is tested against sealmq's own key service (test_kms_revocation.py,
test_kms_external.py), not here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sealmq.net.certs import check_or_create
from tests.cli.support import KeyBroker, cli, external_encryption, segment_wrapped_keys
from tests.support import TIMEOUT, free_port, stomp_connect, wait_until

pytestmark = pytest.mark.slow

_CREDENTIALS = {"aws_access_key_id": "moto-test-key", "aws_secret_access_key": "moto-test-secret"}


class Moto:
    """A ``moto_server`` process serving HTTPS on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        paths, _ = check_or_create(folder / "tls", [], datetime.now(UTC))
        self.ca = paths.ca
        self.port = free_port()
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self.log = folder / "moto.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    str(paths.cert),
                    "-k",
                    str(paths.key),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self._listening, TIMEOUT * 3, what="moto_server listening")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"moto_server exited: {self.log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def client(self) -> Any:
        return boto3.client(
            "kms",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            verify=str(self.ca),
            config=Config(retries={"max_attempts": 1}, connect_timeout=TIMEOUT),
            **_CREDENTIALS,
        )

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    server = Moto(tmp_path / "moto")
    yield server
    server.close()


def _encryption(moto: Moto, key: str) -> str:
    return external_encryption(
        moto.endpoint,
        key,
        region="us-east-1",
        access_key=(_CREDENTIALS["aws_access_key_id"], _CREDENTIALS["aws_secret_access_key"]),
        ca_bundle=moto.ca,
    )


def test_broker_keeps_its_messages_under_a_key_held_by_moto(moto: Moto, tmp_path: Path) -> None:
    kms = moto.client()
    key = kms.create_key(Description="sealmq broker key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/sealmq-moto", TargetKeyId=key["KeyId"])
    broker = KeyBroker.make(
        tmp_path / "broker",
        kms_listener=False,
        encryption=_encryption(moto, "alias/sealmq-moto"),
    )
    try:
        broker.start()
        status = broker.status()
        assert status["KeyKind"] == "external"
        assert status["KmsEndpoint"] == moto.endpoint
        # The alias was resolved by moto's DescribeKey to moto's own ARN.
        assert status["EncryptionOptions"]["KmsKeyId"] == key["Arn"]

        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            for i in range(20):
                conn.send(
                    "/queue/moto", f"kept by moto {i}", headers={"persistent": "true"}, receipt=i
                )
            wait_until(lambda: len(got.receipts) == 20, what="20 receipts")
        finally:
            conn.disconnect()
        assert broker.stop() == 0

        # Each segment's data key is a blob moto wrapped: moto itself unwraps it,
        # under the context the store binds, and names the broker's key.
        wrapped = segment_wrapped_keys(broker.data_dir / "journal")
        assert wrapped
        blob = next(iter(wrapped.values()))
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=blob)  # without the encryption context it was bound to
        for path in (broker.data_dir / "journal").glob("*.seg"):
            assert b"kept by moto" not in path.read_bytes()

        # A restart unwraps the data keys through moto again; every message is there.
        broker.start()
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            conn.subscribe("/queue/moto", id="s", ack="auto")
            bodies = sorted(got.get().body for _ in range(20))
        finally:
            conn.disconnect()
        assert bodies == sorted(f"kept by moto {i}" for i in range(20))
        assert broker.stop() == 0
    finally:
        broker.close()


def test_a_key_moto_does_not_have_refuses_creation(moto: Moto, tmp_path: Path) -> None:
    broker = KeyBroker.make(
        tmp_path / "broker",
        kms_listener=False,
        encryption=_encryption(moto, "alias/no-such-key"),
    )
    result = cli("serve", "--config", str(broker.config))
    assert result.returncode != 0
    assert "alias/no-such-key" in result.stderr
    assert "NotFoundException" in result.stderr
    assert "Traceback" not in result.stderr
