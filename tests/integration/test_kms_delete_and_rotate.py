"""Crypto-shredding at deletion, and data-key rotation while the broker serves.

``sealmq broker delete`` retires the broker's grants and destroys its per-broker
key in the key service before removing its files: a copy of the journal taken
before cannot be decrypted afterwards, even by the key service that still holds
the chosen key; for each kind of key (managed, owned, customer). ``sealmq broker
rotate-data-keys`` gives a running broker new data keys and moves every live
record under them, the broker serving throughout: also while a producer and a
consumer keep it busy, nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sealmq.control.keys import load_record
from sealmq.kms.clients import ServiceKeyProvider
from sealmq.kms.service import KeyService, open_key_service
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.filestore import FileStore
from tests.cli.support import KeyBroker, cli, segment_wrapped_keys
from tests.support import TIMEOUT, stomp_connect, wait_until


def _send(broker: KeyBroker, bodies: list[str]) -> None:
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        for i, body in enumerate(bodies):
            conn.send("/queue/q", body, headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda: len(got.receipts) == len(bodies), what="receipts")
    finally:
        conn.disconnect()


_SHRED_CASES = [
    # kms_key (None: unset, the managed key), key service beside the data folder?
    pytest.param(None, True, id="managed"),
    pytest.param(None, False, id="managed-key-service-in-the-data-folder"),
    pytest.param("owned", True, id="owned"),
    pytest.param("alias/keep", True, id="customer"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kms_key", "separate_kms_dir"), _SHRED_CASES)
def test_delete_shreds_so_an_earlier_copy_of_the_journal_is_unreadable(
    tmp_path: Path, kms_key: str | None, separate_kms_dir: bool
) -> None:
    # With the key service beside the data folder, deleting the broker removes the
    # whole data folder; inside it, the key service's files are kept. Either way the
    # key service (and the chosen key) outlive the broker.
    broker = KeyBroker.make(
        tmp_path / "b",
        encryption=f"kms_key = {kms_key!r}" if kms_key else "",
        separate_kms_dir=separate_kms_dir,
    )
    if kms_key == "alias/keep":
        broker.sealmq("kms", "create-key", "--alias", kms_key)
    broker.start()
    try:
        _send(broker, [f"secret-{i}" for i in range(5)])
        assert broker.stop() == 0
    finally:
        broker.close()
    record = load_record(broker.data_dir)
    assert record is not None and record.broker_key_id is not None
    kind = {None: "managed", "owned": "owned"}.get(kms_key, "customer")
    assert record.key_kind == kind
    # The thief's copy: the journal and the broker record, not the key service.
    copy = tmp_path / "stolen"
    shutil.copytree(broker.data_dir / "journal", copy / "journal")
    shutil.copy2(broker.data_dir / "broker.json", copy / "broker.json")

    def open_copy(provider_for: Callable[[KeyService], ServiceKeyProvider]) -> int:
        service = open_key_service(broker.kms_dir)
        store = FileStore(copy, provider_for(service), record.broker_id)
        try:
            return len(store.recover().messages)
        finally:
            asyncio.run(store.close())
            service.close()

    def as_the_broker(service: KeyService) -> ServiceKeyProvider:
        # What EmbeddedKeys.provider gives the store.
        assert record.broker_key_id is not None
        return ServiceKeyProvider(
            service, record.broker_key_id, record.storage_principal, via_service=False
        )

    def through_the_service(service: KeyService) -> ServiceKeyProvider:
        # As Amazon MQ calls: the storage principal through the service.
        assert record.broker_key_id is not None
        return ServiceKeyProvider(service, record.broker_key_id, record.storage_principal)

    def as_the_admin(service: KeyService) -> ServiceKeyProvider:
        # The account's admin, in-process, the blob naming its own key.
        return ServiceKeyProvider(service, record.kms_key_id, via_service=False, pin_decrypt=False)

    # The copy opens before the deletion (with the key service, as the broker would).
    assert open_copy(as_the_broker) == 5
    assert open_copy(through_the_service) == 5

    running = cli("broker", "delete", "--config", str(broker.config))
    assert running.returncode == 1 and "--yes" in running.stderr
    report = broker.sealmq("broker", "delete", "--yes")
    assert report["BrokerId"] == record.broker_id
    assert report["DestroyedBrokerKeyId"] == record.broker_key_id
    # The service-owned key takes no grants: nothing to retire, yet it shreds.
    assert len(report["RetiredGrantIds"]) == (0 if kind == "owned" else 1)
    assert "Warning" not in report
    if separate_kms_dir:
        assert not broker.data_dir.exists()
    else:
        assert sorted(p.name for p in broker.data_dir.iterdir()) == ["audit", "credentials", "keys"]

    # The key service and the chosen key are intact; the per-broker key is gone ...
    service = open_key_service(broker.kms_dir)
    try:
        chosen = service.keystore.keys[record.kms_key_id]
        assert chosen.state == "Enabled"
        assert record.broker_key_id not in service.keystore.keys
        if kind == "owned":
            assert chosen.key_id == service.service_owned_key_id
        else:
            assert service.call("ListGrants", {"KeyId": record.kms_key_id})["Grants"] == []
    finally:
        service.close()
    if kind != "owned":
        described = broker.sealmq("kms", "describe-key", "--key-id", record.kms_key_arn)
        assert described["KeyMetadata"]["KeyState"] == "Enabled"
    # ... so the copy cannot be decrypted any more, whoever asks.
    for provider_for in (as_the_broker, through_the_service, as_the_admin):
        with pytest.raises(KeyUnavailableError, match=r"NotFoundException|AccessDenied"):
            open_copy(provider_for)
    # Not even with a new grant for the old storage principal: its key is gone. (Made
    # through the service, as at creation: the managed key takes grants only so.)
    if kind != "owned":
        service = open_key_service(broker.kms_dir)
        try:
            service.call(
                "CreateGrant",
                {
                    "KeyId": record.kms_key_id,
                    "GranteePrincipal": record.storage_principal,
                    "Operations": ["Decrypt", "GenerateDataKey"],
                },
                service.service_caller(),
            )
        finally:
            service.close()
    for provider_for in (as_the_broker, through_the_service):
        with pytest.raises(KeyUnavailableError, match="NotFoundException"):
            open_copy(provider_for)
    # The audit trail says who destroyed what, and still verifies.
    assert broker.sealmq("kms", "verify-audit")["Valid"] is True
    trail = (broker.kms_dir / "audit" / "kms.jsonl").read_text()
    assert trail.count('"eventName":"DestroyBrokerKey"') == 1


@pytest.mark.slow
def test_delete_is_refused_while_the_broker_runs_and_keeps_an_inner_key_service(
    tmp_path: Path,
) -> None:
    broker = KeyBroker.make(tmp_path / "b").start()
    try:
        result = cli("broker", "delete", "--yes", "--config", str(broker.config))
        assert result.returncode == 1
        assert "is running" in result.stderr and result.stderr.count("\n") == 1
    finally:
        assert broker.stop() == 0
    report = broker.sealmq("broker", "delete", "--yes")
    # The key service lives in the data folder here: only it is left.
    assert sorted(p.name for p in broker.data_dir.iterdir()) == ["audit", "credentials", "keys"]
    assert sorted(Path(p).name for p in report["KeptKeyService"]) == [
        "audit",
        "credentials",
        "keys",
    ]
    status = cli("status", "--config", str(broker.config))
    assert status.returncode == 1 and "no broker has been created" in status.stderr
    # The next start creates a new broker with the same key service.
    broker.start()
    try:
        assert broker.status()["BrokerId"] != report["BrokerId"]
    finally:
        broker.stop()


@pytest.mark.slow
def test_rotate_data_keys_while_serving(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b", extra="[store]\nsegment_size = 4096\n").start()
    try:
        bodies = [f"message-{i}-" + "x" * 600 for i in range(20)]
        _send(broker, bodies)
        before = segment_wrapped_keys(broker.data_dir / "journal")
        assert len(before) >= 2  # several segments, one data key each
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            result = broker.sealmq("broker", "rotate-data-keys")
            assert result["Online"] is True
            assert (
                sorted(result["RewrittenSegments"])
                == sorted(int(name.split(".")[0]) for name in before)[
                    : len(result["RewrittenSegments"])
                ]
            )
            assert result["RewrittenSegments"]
            # The connection stayed up through the rotation, and the broker still takes writes.
            conn.send("/queue/q", "after", headers={"persistent": "true"}, receipt="after")
            wait_until(lambda: "after" in got.receipts, what="receipt after the rotation")
        finally:
            conn.disconnect()
        after = segment_wrapped_keys(broker.data_dir / "journal")
        assert not set(after.values()) & set(before.values()), "a data key survived the rotation"
        assert not set(after) & set(before), "an old segment survived the rotation"
        assert broker.status()["BrokerState"] == "RUNNING"
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            conn.subscribe("/queue/q", id="s", ack="auto")
            assert [f.body for f in got.take(len(bodies) + 1)] == [*bodies, "after"]
        finally:
            conn.disconnect()
    finally:
        assert broker.stop() == 0
    # Stopped, the command rotates the store itself.
    result = broker.sealmq("broker", "rotate-data-keys")
    assert result["Online"] is False


#: The longest pause in service a client may see during an online rotation (seconds).
_MAX_PAUSE = max(2.0, TIMEOUT / 2)


def _longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest interval between consecutive events spanning ``[start, end]``."""
    before = [t for t in times if t <= start]
    during = [t for t in times if start < t <= end]
    after = [t for t in times if t > end]
    span = before[-1:] + during + after[:1]
    return max((b - a for a, b in itertools.pairwise(span)), default=float("inf"))


class _Load:
    """A producer and a consumer on one queue, each in a thread, until told to stop.

    The producer sends persistent messages with a receipt each (at most
    ``window`` unanswered); the consumer acks each message (client-individual).
    """

    def __init__(self, broker: KeyBroker, queue: str, window: int = 50) -> None:
        self.broker = broker
        self.queue = queue
        self.window = window
        self.sent: list[str] = []
        self.consumed: list[str] = []
        #: time.monotonic() of each consumption, and of each send (whose window was open).
        self.consumed_at: list[float] = []
        self.sent_at: list[float] = []
        self.failures: list[BaseException] = []
        self.stop_producing = threading.Event()
        self.start_consuming = threading.Event()
        self.stop_consuming = threading.Event()
        self.producer, self.produced = stomp_connect(broker.stomp_port, broker.ca_file)
        self.consumer, self.received = stomp_connect(broker.stomp_port, broker.ca_file)
        self.consumer.subscribe(queue, id="load", ack="client-individual")
        self._threads = [
            threading.Thread(target=self._guard, args=(self._produce,), daemon=True),
            threading.Thread(target=self._guard, args=(self._consume,), daemon=True),
        ]

    def start(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def _guard(self, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:
            self.failures.append(exc)

    def _produce(self) -> None:
        receipts = self.produced.receipts
        i = 0
        while not self.stop_producing.is_set():
            wait_until(lambda: len(self.sent) - len(receipts) < self.window, what="receipts")
            body = f"load-{i:06d}"
            self.producer.send(self.queue, body, headers={"persistent": "true"}, receipt=f"p{i}")
            self.sent.append(body)
            self.sent_at.append(time.monotonic())
            i += 1
        wait_until(lambda: len(receipts) == len(self.sent), what="every receipt")
        assert not self.produced.disconnected.is_set(), "the producer was disconnected"

    def _consume(self) -> None:
        self.start_consuming.wait(TIMEOUT * 3)
        while not self.stop_consuming.is_set():
            try:
                frame = self.received.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            self.consumer.ack(frame.headers["ack"])  # STOMP 1.2: the ack header's id
            self.consumed.append(frame.body)
            self.consumed_at.append(time.monotonic())
        assert not self.received.disconnected.is_set(), "the consumer was disconnected"
        # stomp.py's disconnect() does not wait: wait for the DISCONNECT's receipt, which
        # the broker sends once every earlier ACK has been taken. (Acks still unread in
        # the socket when the broker stops are not taken: those messages come back.)
        self.consumer.disconnect(receipt="consumer-done")
        wait_until(lambda: "consumer-done" in self.received.receipts, what="DISCONNECT receipt")

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until ``predicate`` holds; a failed thread fails at once."""
        wait_until(lambda: predicate() or bool(self.failures), TIMEOUT * 3, what=what)
        if self.failures:
            raise self.failures[0]

    def join(self) -> None:
        for thread in self._threads:
            thread.join(TIMEOUT * 3)
            assert not thread.is_alive(), "a load thread is stuck"
        if self.failures:
            raise self.failures[0]

    def close(self) -> None:
        self.stop_consuming.set()
        self.start_consuming.set()
        self.stop_producing.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(TIMEOUT)
        for conn in (self.producer, self.consumer):
            with contextlib.suppress(Exception):
                if conn.is_connected():
                    conn.disconnect()


@pytest.mark.slow
def test_rotate_data_keys_under_load(tmp_path: Path) -> None:
    # Small segments: the backlog spreads over many, each with its own data key.
    broker = KeyBroker.make(tmp_path / "b", extra="[store]\nsegment_size = 4096\n").start()
    load: _Load | None = None
    try:
        load = _Load(broker, "/queue/load").start()
        receipts = load.produced.receipts
        # A backlog over several segments, and the consumer working through it.
        load.wait(lambda: len(receipts) >= 600, "a backlog")
        load.start_consuming.set()
        load.wait(lambda: len(load.consumed) >= 100, "the consumer at work")
        before = segment_wrapped_keys(broker.data_dir / "journal")
        assert len(before) >= 3
        started = time.monotonic()
        result = broker.sealmq("broker", "rotate-data-keys")
        ended = time.monotonic()
        assert result["Online"] is True and len(result["RewrittenSegments"]) >= 3
        # Both clients were served throughout: no pause in either longer than a bound,
        # across the rotation (a rotation may take less time than a thread's time slice
        # on a loaded machine, so "progress during the call" alone would be a race).
        load.wait(lambda: len(load.consumed) > 0 and load.consumed_at[-1] > ended, "consumption")
        load.wait(lambda: load.sent_at[-1] > ended, "sends after the rotation")
        for name, times in (("consumer", load.consumed_at), ("producer", load.sent_at)):
            gap = _longest_pause(times, started, ended)
            assert gap < _MAX_PAUSE, f"the {name} waited {gap:.2f} s during the rotation"
        after = segment_wrapped_keys(broker.data_dir / "journal")
        assert not set(after) & set(before), "an old segment survived the rotation"
        assert not set(after.values()) & set(before.values()), "a data key survived"
        # Traffic goes on after it; then the consumer stops and the producer leaves a rest.
        answered, consumed = len(receipts), len(load.consumed)
        load.wait(
            lambda: len(receipts) >= answered + 200 and len(load.consumed) >= consumed + 100,
            "traffic after the rotation",
        )
        load.stop_consuming.set()
        answered = len(receipts)
        load.wait(lambda: len(receipts) >= answered + 100, "a rest for the drain")
        load.stop_producing.set()
        load.join()
        for got in (load.produced, load.received):
            assert got.errors.empty(), got.errors.get().headers
        assert sorted(receipts, key=lambda r: int(r[1:])) == [
            f"p{i}" for i in range(len(load.sent))
        ]
        assert broker.status()["BrokerState"] == "RUNNING"
        consumed_set = set(load.consumed)
        assert len(consumed_set) == len(load.consumed), "a message was delivered twice"
        assert load.consumed == sorted(load.consumed)  # one producer, one consumer: FIFO
        # The rest: whatever the consumer did not ack, exactly once, from the rewritten
        # journal after a restart.
        rest = len(load.sent) - len(load.consumed)
        assert broker.stop() == 0
        broker.start()
        conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            conn.subscribe("/queue/load", id="drain", ack="auto")
            drained = [f.body for f in got.take(rest, TIMEOUT * 3)]
            assert got.nothing_more()
            assert got.errors.empty()
        finally:
            conn.disconnect()
        assert not consumed_set & set(drained), "a consumed message came back"
        assert sorted([*load.consumed, *drained]) == load.sent
        assert len(load.sent) >= 900
    finally:
        if load is not None:
            load.close()
        broker.close()
