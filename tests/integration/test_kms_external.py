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

import contextlib
import select
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from sealmq.control.keys import CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT
from tests.cli.support import KeyBroker, boto_kms, cli, external_encryption, receive_exactly
from tests.support import TIMEOUT, MqttClients, stomp_connect, wait_until

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
#: The store client's bounds in the hung-service test: one attempt answered within
#: 1.5 s (connecting may take 2 s on a loaded test machine), far below botocore's
#: own (3 attempts of 5 s connect + 10 s read: 10 s for the first alone), so the
#: test shows that the configured bounds are the ones the writer thread waits on.
STORE_CONNECT_TIMEOUT, STORE_READ_TIMEOUT, STORE_ATTEMPTS = 2.0, 1.5, 1
#: The longest the store's client may then hold the writer thread on a hung key
#: service: its attempts of at most connect + read timeout each, plus botocore's
#: backoff between them (under 1 s before the second attempt).
STORE_CALL_BUDGET = STORE_ATTEMPTS * (STORE_CONNECT_TIMEOUT + STORE_READ_TIMEOUT) + (
    STORE_ATTEMPTS - 1
)


class HangingProxy:
    """A TCP relay to ``port`` that, once :meth:`hang` is called, never answers again.

    Until then bytes flow both ways. Afterwards nothing is relayed on open
    connections, and new ones are accepted and left silent: a key service that
    froze. :meth:`resume` relays again (new connections reach the target).
    """

    def __init__(self, port: int) -> None:
        self._target = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self._hung = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def hang(self) -> None:
        self._hung.set()

    def resume(self) -> None:
        self._hung.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._sockets.append(client)
            if self._hung.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=TIMEOUT)
            self._sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if self._hung.is_set():
                self._closed.wait(0.1)
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(TIMEOUT)


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


@pytest.mark.slow
def test_a_hung_key_service_refuses_producers_within_the_store_budget(tmp_path: Path) -> None:
    """The store's own KMS client is bounded: producers get an ERROR, not a long stall.

    B's key service freezes (every request hangs) while a producer keeps sending
    persistent messages. Once the data-key cache expires, the writer thread's
    re-check hangs for at most the store client's budget; then every client is told
    that the key is unavailable, well before the key check's own longer budget
    would have said so, and nothing receipted is lost.
    """
    a = KeyBroker.make(tmp_path / "a")
    a.sealmq("kms", "create-key", "--alias", "alias/remote")
    a.start()
    proxy = HangingProxy(a.kms_port)
    b = KeyBroker.make(
        tmp_path / "b",
        kms_listener=False,
        encryption=external_encryption(
            f"https://127.0.0.1:{proxy.port}",
            "alias/remote",
            credentials_file=a.credentials,
            ca_bundle=a.ca_file,
            cache_seconds=CACHE_SECONDS,
        )
        + f"\nkms_connect_timeout = {STORE_CONNECT_TIMEOUT}"
        + f"\nkms_read_timeout = {STORE_READ_TIMEOUT}"
        + f"\nkms_max_attempts = {STORE_ATTEMPTS}",
        mqtt=True,
    )
    mqtt = MqttClients(b.mqtt_port, b.ca_file)
    try:
        try:
            b.start()
        except AssertionError:
            raise AssertionError(b.process.run_output()) from None
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        v5 = mqtt.paho(version=5, client_id="v5-producer")
        sent: list[str] = []
        try:
            conn.send("/queue/h", "before", headers={"persistent": "true"}, receipt="r-before")
            wait_until(lambda: "r-before" in got.receipts, what="receipt")
            sent.append("before")
            proxy.hang()
            hung = time.monotonic()
            deadline = hung + 2 * CACHE_SECONDS + HUNG_CHECK_BUDGET + TIMEOUT
            number = 0
            attempted = ["before"]
            while got.errors.empty() and time.monotonic() < deadline:
                body = f"during-{number}"
                with contextlib.suppress(Exception):  # the socket closes under the ERROR
                    conn.send("/queue/h", body, headers={"persistent": "true"}, receipt=body)
                attempted.append(body)
                number += 1
                got.disconnected.wait(0.2)
            told = got.error(timeout=0.1)
            took = time.monotonic() - hung
            sent += [r for r in got.receipts if r.startswith("during-")]
        finally:
            with contextlib.suppress(Exception):
                conn.disconnect()
        said = told.headers["message"]
        assert "encryption key is unavailable (KMS_KEY_UNREACHABLE)" in said, b.process.run_output()
        # The MQTT 5 client is told the same in its DISCONNECT (server shutting down).
        assert v5.wait_disconnected() == 0x8B
        assert v5.disconnect_properties is not None
        assert "(KMS_KEY_UNREACHABLE)" in v5.disconnect_properties.ReasonString
        # The cache period until the writer asks again, then one bounded call.
        assert took <= CACHE_SECONDS + STORE_CALL_BUDGET + SLACK, f"after {took:.1f} s"
        assert took < 2 * CACHE_SECONDS + HUNG_CHECK_BUDGET  # the store, not the key check
        status = b.wait_state("CRITICAL_ACTION_REQUIRED", timeout=HUNG_CHECK_BUDGET + TIMEOUT)
        assert status["ActionsRequired"][0]["ActionRequiredCode"] == "KMS_KEY_UNREACHABLE"
        proxy.resume()
        b.wait_state("RUNNING", timeout=CACHE_SECONDS + HUNG_CHECK_BUDGET + TIMEOUT)
        # Every receipted message is there; others only if their write was durable
        # before the ERROR closed the connection (receipt lost with it), in order.
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            conn.subscribe("/queue/h", id="s", ack="auto")
            received = [frame.body for frame in got.take(len(sent))]
            extra: list[str] = []
            with contextlib.suppress(AssertionError):
                while len(extra) < 3:
                    extra.append(got.get(timeout=0.5).body)
        finally:
            conn.disconnect()
        assert received == sent
        # (a message may be stored with its receipt lost to the closing connection)
        assert extra == attempted[len(sent) : len(sent) + len(extra)]
    finally:
        mqtt.close_all()
        b.close()
        proxy.close()
        a.close()
