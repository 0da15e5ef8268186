"""Client-side encryption with the real AWS Encryption SDK and sealmq's key service.

The README's recipe, end to end: an operator creates a customer key with
``sealmq kms create-key --alias``, points the AWS SDKs at the embedded key
service with ``eval "$(sealmq kms client-env)"`` (``AWS_ENDPOINT_URL_KMS``, the
credentials file, the CA bundle), and application code uses the unmodified
``aws-encryption-sdk``: the body is encrypted under the customer key before it
is sent over STOMP, received as that ciphertext and decrypted by the consumer.
The broker's journal holds neither the body nor the SDK's ciphertext: the
ciphertext itself is encrypted again by the store.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import aws_encryption_sdk
import pytest
from aws_encryption_sdk.identifiers import CommitmentPolicy

from tests.cli.support import KeyBroker, cli
from tests.support import stomp_connect, wait_until

pytestmark = pytest.mark.slow


def _apply_client_env(text: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What ``eval "$(sealmq kms client-env)"`` does to a shell's environment."""
    exported: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[0] == "unset":
            for name in words[1:]:
                monkeypatch.delenv(name, raising=False)
        else:
            assert words[0] == "export", line
            name, _, value = words[1].partition("=")
            monkeypatch.setenv(name, value)
            exported[name] = value
    return exported


def test_encryption_sdk_bodies_through_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = KeyBroker.make(tmp_path / "b")
    key = broker.sealmq("kms", "create-key", "--alias", "alias/orders-bodies")["KeyMetadata"]
    env = cli("kms", "client-env", "--config", str(broker.config))
    assert env.returncode == 0, env.stderr
    exported = _apply_client_env(env.stdout, monkeypatch)
    assert exported["AWS_ENDPOINT_URL_KMS"] == broker.endpoint
    assert exported["AWS_SHARED_CREDENTIALS_FILE"] == str(broker.credentials)
    assert exported["AWS_CA_BUNDLE"] == str(broker.ca_file)

    plaintext = b'{"order": 1842, "card": "4111-1111-1111-1111"}'
    context = {"queue": "orders", "tenant": "acme"}
    broker.start()
    try:
        client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        )
        provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key["Arn"]])
        sealed, _ = client.encrypt(
            source=plaintext, key_provider=provider, encryption_context=context
        )
        assert plaintext not in sealed

        conn, got = stomp_connect(broker.stomp_port, broker.ca_file, auto_decode=False)
        try:
            conn.send(
                "/queue/orders",
                sealed,
                headers={"persistent": "true", "content-type": "application/octet-stream"},
                receipt="sent",
            )
            wait_until(lambda: "sent" in got.receipts, what="receipt")
            conn.subscribe("/queue/orders", id="s", ack="client-individual")
            frame = got.get()
            assert frame.body == sealed  # the broker hands back the SDK's bytes, unchanged
            conn.ack(frame.headers["message-id"], "s")
        finally:
            conn.disconnect()

        # A consumer with only the key ARN decrypts; the context travelled signed.
        consumer = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key["Arn"]])
        opened, header = client.decrypt(source=frame.body, key_provider=consumer)
        assert opened == plaintext
        assert {k: header.encryption_context[k] for k in context} == context
    finally:
        assert broker.stop() == 0
        broker.close()

    # The store keeps the message only as its own ciphertext of the SDK ciphertext.
    journal = b"".join(p.read_bytes() for p in (broker.data_dir / "journal").glob("*.seg"))
    assert journal
    assert plaintext not in journal
    assert sealed[-64:] not in journal and sealed[:64] not in journal

    # The key service recorded the SDK's calls, with the context, never the data key.
    events = [
        json.loads(line)
        for line in (broker.kms_dir / "audit" / "kms.jsonl").read_text().split("\n")
        if line
    ]
    on_key = [
        e
        for e in events
        if e["eventName"] in ("GenerateDataKey", "Decrypt")
        and key["KeyId"] in json.dumps(e.get("resources", e.get("requestParameters", {})))
    ]
    names = [e["eventName"] for e in on_key]
    assert names.count("GenerateDataKey") == 1 and names.count("Decrypt") == 1
    for event in on_key:
        assert event["requestParameters"]["encryptionContext"]["tenant"] == "acme"
        assert "Plaintext" not in json.dumps(event)


def test_client_env_refuses_without_the_kms_listener(tmp_path: Path) -> None:
    broker = KeyBroker.make(tmp_path / "b", kms_listener=False)
    result = cli("kms", "client-env", "--config", str(broker.config))
    assert result.returncode == 1
    assert "kms listener is off" in result.stderr
