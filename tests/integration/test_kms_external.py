"""A broker whose key lives in another KMS-compatible service (``kms_endpoint``).

Broker A serves its key service on its ``kms`` listener; broker B names A's
endpoint, a customer key there, A's credentials file and CA: B's data keys are
wrapped by that key over HTTPS with SigV4, exactly as with AWS KMS. Disabling the
key in A stops B within its cache period; deleting B cannot shred anything in A,
and says so. Stopping A altogether stops B too (KMS_KEY_UNREACHABLE) within its
cache period plus the check's retry budget, and B serves again, every message
intact, once A is back on the same port; a frozen A (SIGSTOP: connections
accepted, never answered) is given up on within the check's bounded budget too.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from sealmq.control.keys import CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT
from tests.cli.support import KeyBroker, boto_kms, cli, external_encryption, receive_exactly
from tests.support import TIMEOUT, stomp_connect, wait_until

#: B's data-key cache period, in seconds.
CACHE_SECONDS = 2
#: How long B's key check may try a silent key service before it gives up: 3
#: attempts, 0.5 s then 1 s apart (docs/keys.md), each a single request that a
#: stopped service refuses at once.
RETRY_BUDGET = 1.5
#: The same when every request hangs: 3 attempts of at most the check's connect and
#: read timeouts each, plus the pauses.
HUNG_CHECK_BUDGET = 3 * (CHECK_CONNECT_TIMEOUT + CHECK_READ_TIMEOUT) + RETRY_BUDGET
#: What a loaded machine adds: the requests themselves, the status file, polling.
SLACK = 0.4 * TIMEOUT


def _remote_broker(folder: Path, a: KeyBroker, cache_seconds: float) -> KeyBroker:
    """A broker whose key is ``alias/remote`` in ``a``'s key service."""
    return KeyBroker.make(
        folder,
        kms_listener=False,
        encryption=external_encryption(
            a.endpoint,
            "alias/remote",
            credentials_file=a.credentials,
            ca_bundle=a.ca_file,
            cache_seconds=cache_seconds,
        ),
    )


@pytest.mark.slow
def test_a_broker_using_another_key_service(tmp_path: Path) -> None:
    a = KeyBroker.make(tmp_path / "a")
    key = a.sealmq("kms", "create-key", "--alias", "alias/remote")["KeyMetadata"]
    a.start()
    b = _remote_broker(tmp_path / "b", a, 1)
    try:
        b.start()
        status = b.status()
        assert status["KeyKind"] == "external"
        assert status["KmsEndpoint"] == a.endpoint
        assert status["EncryptionOptions"]["KmsKeyId"] == key["Arn"]
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            conn.send("/queue/r", "remote", headers={"persistent": "true"}, receipt="r")
            wait_until(lambda: "r" in got.receipts, what="receipt")
        finally:
            conn.disconnect()
        # B's own data folder holds no key service.
        assert not (b.data_dir / "keys").exists()

        kms = boto_kms(a)
        kms.disable_key(KeyId=key["KeyId"])
        action = b.wait_state("CRITICAL_ACTION_REQUIRED")["ActionsRequired"][0]
        assert action["ActionRequiredCode"] == "INVALID_KMS_KEY"
        assert "DisabledException" in action["ActionRequiredInfo"]
        kms.enable_key(KeyId=key["KeyId"])
        b.wait_state("RUNNING")
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            conn.subscribe("/queue/r", id="s", ack="auto")
            assert got.get().body == "remote"
        finally:
            conn.disconnect()
        assert b.stop() == 0
        report = b.sealmq("broker", "delete", "--yes")
        assert "destroyed no key material" in report["Warning"]
        assert not b.data_dir.exists()
    finally:
        b.close()
        a.close()


@pytest.mark.slow
def test_an_unreachable_key_service_stops_the_broker_until_it_is_back(tmp_path: Path) -> None:
    a = KeyBroker.make(tmp_path / "a")
    key = a.sealmq("kms", "create-key", "--alias", "alias/remote")["KeyMetadata"]
    a.start()
    b = _remote_broker(tmp_path / "b", a, CACHE_SECONDS)
    try:
        b.start()
        sent = [f"remote-{i}" for i in range(5)]
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            for i, body in enumerate(sent):
                conn.send("/queue/r", body, headers={"persistent": "true"}, receipt=f"r{i}")
            wait_until(lambda: len(got.receipts) == len(sent), what="receipts")

            assert a.stop() == 0  # the key service is gone; B's client stays connected
            gone = time.monotonic()
            status = b.wait_state(
                "CRITICAL_ACTION_REQUIRED", timeout=2 * CACHE_SECONDS + RETRY_BUDGET + TIMEOUT
            )
            took = time.monotonic() - gone
            assert took <= 2 * CACHE_SECONDS + RETRY_BUDGET + SLACK, f"after {took:.1f} s"
            told = got.error().headers["message"]
            assert "encryption key is unavailable (KMS_KEY_UNREACHABLE)" in told
        finally:
            conn.disconnect()
        [action] = status["ActionsRequired"]
        assert action["ActionRequiredCode"] == "KMS_KEY_UNREACHABLE"
        assert key["Arn"] in action["ActionRequiredInfo"]
        assert a.endpoint in action["ActionRequiredInfo"]
        assert "did not answer after 3 attempts" in action["ActionRequiredInfo"]
        assert "CRITICAL_ACTION_REQUIRED KMS_KEY_UNREACHABLE" in b.process.run_output()
        # Nothing for sealmq to grant: access is restored at the key service.
        refused = cli("broker", "restore-key-access", "--config", str(b.config))
        assert refused.returncode == 1
        assert "restore the access of the broker's credentials there" in refused.stderr
        assert refused.stderr.count("\n") == 1

        a.start()  # the same config: the same port, keys and credentials
        b.wait_state("RUNNING", timeout=CACHE_SECONDS + TIMEOUT)
        receive_exactly(b, "/queue/r", sent)
    finally:
        b.close()
        a.close()


@pytest.mark.slow
def test_a_hung_key_service_is_given_up_on_within_the_check_budget(tmp_path: Path) -> None:
    """A key service that accepts connections and never answers (SIGSTOP) is unreachable.

    Each of the check's 3 attempts is one request bounded by the check's connect and
    read timeouts (no hidden retries of the KMS client), so B reports
    KMS_KEY_UNREACHABLE within its cache period plus that budget.
    """
    a = KeyBroker.make(tmp_path / "a")
    a.sealmq("kms", "create-key", "--alias", "alias/remote")
    a.start()
    b = _remote_broker(tmp_path / "b", a, CACHE_SECONDS)
    assert a.process.proc is not None
    try:
        b.start()
        a.process.proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        budget = 2 * CACHE_SECONDS + HUNG_CHECK_BUDGET
        status = b.wait_state("CRITICAL_ACTION_REQUIRED", timeout=budget + TIMEOUT)
        took = time.monotonic() - frozen
        assert took <= budget + SLACK, f"after {took:.1f} s"
        [action] = status["ActionsRequired"]
        assert action["ActionRequiredCode"] == "KMS_KEY_UNREACHABLE"
        assert "did not answer after 3 attempts" in action["ActionRequiredInfo"]
        a.process.proc.send_signal(signal.SIGCONT)
        b.wait_state("RUNNING", timeout=CACHE_SECONDS + HUNG_CHECK_BUDGET + TIMEOUT)
    finally:
        a.process.proc.send_signal(signal.SIGCONT)
        b.close()
        a.close()
