"""Nothing secret in the logs, even at ``log_level = "debug"``.

A real ``sealmq serve`` process at debug level goes through a session: logins
(one with a wrong password), persistent messages with a recognisable body sent,
received and acknowledged, KMS calls with plaintext on its ``kms`` listener, a
data-key rotation while it serves. Then its log (and the key service's audit
trail) is searched for every secret of the session: the bodies, the passwords,
the admin's secret access key, the plaintexts the key service saw and returned,
the root key, the chosen and per-broker keys' material, and every data key the
journal ever used (unwrapped with the key service in-process, after the stop),
each as raw bytes, hex, base64 and Python's bytes repr.
"""

from __future__ import annotations

import base64
import configparser
import secrets
from pathlib import Path

import pytest
import stomp

from sealmq.control.keys import BrokerRecord, load_record
from sealmq.kms.clients import ServiceKeyProvider
from sealmq.kms.service import open_key_service
from tests.cli.support import KeyBroker, boto_kms, external_encryption, segment_wrapped_keys
from tests.support import PASSWORD, TIMEOUT, USER, stomp_connect, wait_until


def _forms(secret: bytes) -> dict[str, bytes]:
    """The ways a secret could be written into a log."""
    return {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": base64.b64encode(secret).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(secret).rstrip(b"="),
        "bytes repr": repr(secret)[2:-1].encode(),
    }


def _leaks(text: bytes, found_in: str, named: dict[str, bytes]) -> list[str]:
    return [
        f"{name} ({form}) in {found_in}"
        for name, secret in named.items()
        for form, written in _forms(secret).items()
        if written in text
    ]


def _unwrap(provider: ServiceKeyProvider, broker_id: str, wrapped: dict[str, bytes]) -> set[bytes]:
    """The plaintext data keys of segment headers (file name -> wrapped key)."""
    return {
        provider.decrypt_data_key(
            blob,
            {
                "purpose": "sealmq-journal",
                "broker": broker_id,
                "segment": str(int(name.split(".")[0])),
            },
        )
        for name, blob in wrapped.items()
    }


def _data_keys(broker: KeyBroker, record: BrokerRecord, wrapped: dict[str, bytes]) -> set[bytes]:
    """The plaintext data keys of segment headers, unwrapped as the broker would."""
    assert record.broker_key_id is not None
    service = open_key_service(broker.kms_dir)
    try:
        provider = ServiceKeyProvider(
            service, record.broker_key_id, record.storage_principal, via_service=False
        )
        return _unwrap(provider, record.broker_id, wrapped)
    finally:
        service.close()


def _key_material(broker: KeyBroker, record: BrokerRecord) -> dict[str, bytes]:
    """The root key and the material of the chosen and per-broker keys."""
    service = open_key_service(broker.kms_dir)
    try:
        chosen = service.keystore.keys[record.kms_key_id]
        found = {f"chosen key v{v.number}": v.material for v in chosen.versions}
        broker_key = service.keystore.keys[record.broker_key_id or ""]
        material = service._material(broker_key, 1)  # what only the service ever unwraps
        assert material is not None
        found["per-broker key"] = material
    finally:
        service.close()
    found["root key"] = (broker.kms_dir / "keys" / "root.key").read_bytes()
    return found


def _admin_secret(credentials: Path) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(credentials)
    return parser["default"]["aws_secret_access_key"]


@pytest.mark.slow
def test_nothing_secret_in_a_debug_log(tmp_path: Path) -> None:
    marker = secrets.token_hex(6)
    body = f"LOGSCAN-body-{marker}"
    other_password = f"pw-{secrets.token_hex(8)}"
    wrong_password = f"wrong-{secrets.token_hex(8)}"
    kms_plaintext = f"LOGSCAN-kms-plaintext-{marker}".encode()
    broker = KeyBroker.make(
        tmp_path / "b",
        encryption='kms_key = "alias/logs"\ndata_key_cache_seconds = 1',
        extra="\n".join(
            [
                "[store]",
                "segment_size = 4096",
                "[[users]]",
                'username = "other"',
                f"password = {other_password!r}",
                'groups = ["admins"]',
            ]
        ),
    )
    broker.config.write_text('log_level = "debug"\n' + broker.config.read_text())
    broker.sealmq("kms", "create-key", "--alias", "alias/logs")
    broker.start()
    seen_plaintexts: dict[str, bytes] = {}
    try:
        sent = [f"{body}-{i:03d}-" + "x" * 300 for i in range(40)]
        producer, produced = stomp_connect(broker.stomp_port, broker.ca_file)
        try:
            for i, text in enumerate(sent[:30]):
                producer.send("/queue/logs", text, headers={"persistent": "true"}, receipt=f"r{i}")
            wait_until(lambda: len(produced.receipts) == 30, what="receipts")
        finally:
            producer.disconnect()
        wrapped = segment_wrapped_keys(broker.data_dir / "journal")
        # A refused login: the wrong password must not be logged either.
        with pytest.raises(stomp.exception.ConnectFailedException):
            conn, _ = stomp_connect(
                broker.stomp_port, broker.ca_file, login="other", passcode=wrong_password
            )
            conn.disconnect()
        consumer, received = stomp_connect(
            broker.stomp_port, broker.ca_file, login="other", passcode=other_password
        )
        try:
            consumer.subscribe("/queue/logs", id="s", ack="client-individual")
            for frame in received.take(10):
                consumer.ack(frame.headers["ack"])
            # The key service's own listener, with plaintext in and out.
            kms = boto_kms(broker)
            blob = kms.encrypt(KeyId="alias/logs", Plaintext=kms_plaintext)["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == kms_plaintext
            made = kms.generate_data_key(KeyId="alias/logs", KeySpec="AES_256")
            seen_plaintexts["GenerateDataKey plaintext"] = made["Plaintext"]
            seen_plaintexts["Encrypt plaintext"] = kms_plaintext
            before = segment_wrapped_keys(broker.data_dir / "journal")
            wrapped.update(before)
            result = broker.sealmq("broker", "rotate-data-keys")
            assert result["Online"] is True and result["RewrittenSegments"]
            producer, produced = stomp_connect(broker.stomp_port, broker.ca_file)
            try:
                for i, text in enumerate(sent[30:]):
                    producer.send(
                        "/queue/logs", text, headers={"persistent": "true"}, receipt=f"r{i}"
                    )
                wait_until(lambda: len(produced.receipts) == 10, what="receipts")
            finally:
                producer.disconnect()
            frames = received.take(30, TIMEOUT * 2)
            for frame in frames:
                consumer.ack(frame.headers["ack"])
            assert sorted(f.body for f in frames) == sorted(sent[10:])
        finally:
            consumer.disconnect()
        assert broker.stop() == 0
    finally:
        broker.close()

    record = load_record(broker.data_dir)
    assert record is not None
    after = segment_wrapped_keys(broker.data_dir / "journal")
    assert set(before.values()) - set(after.values()), "the rotation made no new data key"
    wrapped.update(after)
    data_keys = _data_keys(broker, record, wrapped)
    named: dict[str, bytes] = {
        "message body": body.encode(),
        f"{USER}'s password": PASSWORD.encode(),
        "other's password": other_password.encode(),
        "a wrong password": wrong_password.encode(),
        "admin secret access key": _admin_secret(broker.credentials).encode(),
        **seen_plaintexts,
        **_key_material(broker, record),
        **{f"journal data key {i}": key for i, key in enumerate(sorted(data_keys))},
    }
    log = broker.process.log_path.read_bytes()
    # The level took effect, and the log saw the session.
    assert b" DEBUG sealmq." in log and b"rewrote" in log
    audit = (broker.kms_dir / "audit" / "kms.jsonl").read_bytes()
    assert b'"eventName":"GenerateDataKey"' in audit
    leaks = _leaks(log, "the broker's log", named) + _leaks(audit, "the audit trail", named)
    assert not leaks, leaks


@pytest.mark.slow
def test_nothing_secret_in_a_debug_log_with_an_external_key_service(tmp_path: Path) -> None:
    # Broker B wraps its data keys with a key in A's key service, over HTTPS: B's KMS
    # client (botocore) logs at debug level too, and must not log what it sends or gets.
    marker = secrets.token_hex(6)
    body = f"LOGSCAN-external-{marker}"
    a = KeyBroker.make(tmp_path / "a")
    key = a.sealmq("kms", "create-key", "--alias", "alias/remote")["KeyMetadata"]
    a.start()
    b = KeyBroker.make(
        tmp_path / "b",
        kms_listener=False,
        encryption=external_encryption(
            a.endpoint,
            "alias/remote",
            credentials_file=a.credentials,
            ca_bundle=a.ca_file,
            cache_seconds=1,
        ),
        extra="[store]\nsegment_size = 4096\n",
    )
    b.config.write_text('log_level = "debug"\n' + b.config.read_text())
    try:
        b.start()
        sent = [f"{body}-{i:03d}-" + "x" * 300 for i in range(20)]
        conn, got = stomp_connect(b.stomp_port, b.ca_file)
        try:
            for i, text in enumerate(sent):
                conn.send("/queue/ext", text, headers={"persistent": "true"}, receipt=f"r{i}")
            wait_until(lambda: len(got.receipts) == len(sent), what="receipts")
            wrapped = segment_wrapped_keys(b.data_dir / "journal")
            assert b.sealmq("broker", "rotate-data-keys")["RewrittenSegments"]
            conn.subscribe("/queue/ext", id="s", ack="auto")
            assert sorted(f.body for f in got.take(len(sent))) == sent
        finally:
            conn.disconnect()
        assert b.stop() == 0
    finally:
        b.close()
        a.stop()
    record = load_record(b.data_dir)
    assert record is not None and record.key_kind == "external"
    wrapped.update(segment_wrapped_keys(b.data_dir / "journal"))
    # B's data keys are wrapped by A's key directly: A's admin unwraps them in-process.
    service = open_key_service(a.kms_dir)
    try:
        admin = ServiceKeyProvider(service, key["KeyId"], via_service=False)
        data_keys = _unwrap(admin, record.broker_id, wrapped)
        material = {
            f"chosen key v{v.number}": v.material
            for v in service.keystore.keys[key["KeyId"]].versions
        }
    finally:
        service.close()
    assert len(data_keys) >= 2
    named: dict[str, bytes] = {
        "message body": body.encode(),
        f"{USER}'s password": PASSWORD.encode(),
        "A's admin secret access key": _admin_secret(a.credentials).encode(),
        **material,
        **{f"journal data key {i}": k for i, k in enumerate(sorted(data_keys))},
    }
    log = b.process.log_path.read_bytes()
    assert b" DEBUG " in log
    a_log = a.process.log_path.read_bytes()
    leaks = _leaks(log, "B's log", named) + _leaks(a_log, "A's log", named)
    assert not leaks, leaks
