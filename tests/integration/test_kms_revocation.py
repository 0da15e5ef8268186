"""Revoking the broker's access to its key stops it, closed and loud, with nothing lost.

A real broker process with ``data_key_cache_seconds = 2``; the key service is
driven with boto3 over the broker's own ``kms`` listener (the credentials file it
wrote) and with the ``sealmq`` command. Each time: within the cache period the
broker reports CRITICAL_ACTION_REQUIRED / INVALID_KMS_KEY (the time from the
refusal to that state is measured), the connected STOMP client gets an ERROR
frame and MQTT clients lose their connection (MQTT 5: DISCONNECT 0x8B) saying
the key is unavailable, new connections are refused; once access returns the
broker serves again and every persistent message sent before is delivered. The
cycles: RevokeGrant (back with a boto3 CreateGrant), DisableKey/EnableKey,
RevokeGrant with the CLI (back with ``sealmq broker restore-key-access``),
ScheduleKeyDeletion/CancelKeyDeletion; RevokeGrant on the service-managed key's
grant as on a customer key's; and MQTT 3.1.1 and 5 persistent sessions keeping
their unacknowledged QoS 1 messages across it. A broker on the service-owned key
has no grant to restore, and the command says so.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import KeyBroker, boto_kms, cli, receive_exactly, send_persistent
from tests.support import (
    TIMEOUT,
    MqttClients,
    paho_properties,
    stomp_connect,
)

#: The cache period; the broker must notice a refusal within about this long.
CACHE_SECONDS = 2
#: What a loaded machine may add to the bound of one refusal: the key check's own
#: calls, writing the status file, this test's polling (scaled with TIMEOUT).
SLACK = 0.4 * TIMEOUT
#: MQTT 5 DISCONNECT reason code "Server shutting down".
SERVER_SHUTTING_DOWN = 0x8B


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., KeyBroker]]:
    """Makes started brokers with the cache period above; kills them at teardown."""
    made: list[KeyBroker] = []

    def make(kms_key: str | None, *, mqtt: bool = False) -> KeyBroker:
        lines = [f"data_key_cache_seconds = {CACHE_SECONDS}"]
        if kms_key is not None:
            lines.append(f"kms_key = {kms_key!r}")
        broker = KeyBroker.make(tmp_path / f"b{len(made)}", encryption="\n".join(lines), mqtt=mqtt)
        made.append(broker)
        if kms_key is not None and kms_key.startswith("alias/"):
            broker.sealmq("kms", "create-key", "--alias", kms_key)
        return broker.start()

    yield make
    for broker in made:
        broker.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def _stops(broker: KeyBroker, cut_access: Callable[[], object], said: str) -> dict[str, Any]:
    """Cut the key off with a client connected; check what everyone sees; the status."""
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    try:
        cut_access()
        cut = time.monotonic()
        status = broker.wait_state("CRITICAL_ACTION_REQUIRED", timeout=2 * CACHE_SECONDS + TIMEOUT)
        took = time.monotonic() - cut
        # The key is checked every cache period: the refusal is seen at the next check.
        assert took <= 2 * CACHE_SECONDS + SLACK, f"CRITICAL after {took:.1f} s"
        error = got.error()
        assert "encryption key is unavailable" in error.headers["message"]
    finally:
        conn.disconnect()
    [action] = status["ActionsRequired"]
    assert action["ActionRequiredCode"] == "INVALID_KMS_KEY"
    assert status["EncryptionOptions"]["KmsKeyId"] in action["ActionRequiredInfo"]
    assert said in action["ActionRequiredInfo"]
    assert _refused(broker.stomp_port)
    log = broker.process.run_output()
    assert "CRITICAL_ACTION_REQUIRED INVALID_KMS_KEY" in log
    return status


def _revoke_storage_grant(broker: KeyBroker, kms: Any) -> Callable[[], object]:
    """RevokeGrant, with the admin's boto3, of the storage principal's one grant."""
    status = broker.status()
    key_arn = status["EncryptionOptions"]["KmsKeyId"]
    [grant] = kms.list_grants(KeyId=key_arn, GranteePrincipal=status["StoragePrincipal"])["Grants"]
    return lambda: kms.revoke_grant(KeyId=key_arn, GrantId=grant["GrantId"])


@pytest.mark.slow
def test_revoke_disable_delete_and_restore(brokers: Callable[..., KeyBroker]) -> None:
    broker = brokers("alias/app")
    kms = boto_kms(broker)
    status = broker.status()
    key_arn = status["EncryptionOptions"]["KmsKeyId"]
    principal = status["StoragePrincipal"]
    broker_id = status["BrokerId"]
    sent = [f"before-revoke-{i}" for i in range(5)]
    send_persistent(broker, "/queue/kept", sent)

    # 1. RevokeGrant; access comes back with a new grant made with boto3 (the call
    #    docs/keys.md gives).
    _stops(broker, _revoke_storage_grant(broker, kms), "AccessDeniedException")
    kms.create_grant(
        KeyId=key_arn,
        GranteePrincipal=principal,
        Operations=["Encrypt", "Decrypt", "GenerateDataKey"],
        Constraints={"EncryptionContextSubset": {"broker": broker_id}},
    )
    broker.wait_state("RUNNING")
    more = [f"before-disable-{i}" for i in range(3)]
    send_persistent(broker, "/queue/kept", more)
    sent += more

    # 2. DisableKey, then EnableKey.
    _stops(broker, lambda: kms.disable_key(KeyId=key_arn), "DisabledException")
    kms.enable_key(KeyId=key_arn)
    broker.wait_state("RUNNING")

    # 3. Revoked again (with the command this time); `sealmq broker restore-key-access`.
    grants = kms.list_grants(KeyId=key_arn, GranteePrincipal=principal)["Grants"]
    assert len(grants) == 1

    def revoke_with_cli() -> None:
        broker.sealmq(
            "kms", "revoke-grant", "--key-id", key_arn, "--grant-id", grants[0]["GrantId"]
        )

    _stops(broker, revoke_with_cli, "AccessDeniedException")
    restored = broker.sealmq("broker", "restore-key-access")
    assert restored["GranteePrincipal"] == principal
    broker.wait_state("RUNNING")

    # 4. ScheduleKeyDeletion; CancelKeyDeletion leaves the key disabled (as KMS does).
    _stops(
        broker,
        lambda: kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7),
        "pending deletion",
    )
    kms.cancel_key_deletion(KeyId=key_arn)
    kms.enable_key(KeyId=key_arn)
    broker.wait_state("RUNNING")

    receive_exactly(broker, "/queue/kept", sent)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kms_key", "kind"), [(None, "managed"), ("alias/app", "customer")], ids=["managed", "customer"]
)
def test_revoked_grant_then_restore_key_access(
    brokers: Callable[..., KeyBroker], kms_key: str | None, kind: str
) -> None:
    """The admin may revoke the storage grant on the service-managed key (``aws/mq``) too."""
    broker = brokers(kms_key)
    status = broker.status()
    assert status["KeyKind"] == kind
    sent = [f"{kind}-{i}" for i in range(5)]
    send_persistent(broker, "/queue/kept", sent)

    _stops(broker, _revoke_storage_grant(broker, boto_kms(broker)), "AccessDeniedException")
    restored = broker.sealmq("broker", "restore-key-access")
    assert restored["KeyId"] == status["EncryptionOptions"]["KmsKeyId"]
    assert restored["GranteePrincipal"] == status["StoragePrincipal"]
    assert broker.wait_state("RUNNING")["ActionsRequired"] == []
    receive_exactly(broker, "/queue/kept", sent)


@pytest.mark.slow
def test_the_service_owned_key_has_no_access_to_restore(
    brokers: Callable[..., KeyBroker],
) -> None:
    broker = brokers("owned")
    assert broker.status()["EncryptionOptions"]["UseAwsOwnedKey"] is True
    result = cli("broker", "restore-key-access", "--config", str(broker.config))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("sealmq: ")
    assert "service-owned key, which takes no grants" in line
    # Nothing changed for the broker.
    assert broker.status()["BrokerState"] == "RUNNING"
    send_persistent(broker, "/queue/kept", ["still-served"])
    receive_exactly(broker, "/queue/kept", ["still-served"])


@pytest.mark.slow
def test_mqtt_sessions_on_key_loss(brokers: Callable[..., KeyBroker]) -> None:
    """MQTT 5 and 3.1.1 clients are disconnected; their sessions' QoS 1 messages survive.

    Each session subscribes and goes offline; QoS 1 messages queue for it; it comes
    back with manual acknowledgement, so what it receives stays unconsumed when the
    key goes. After ``restore-key-access`` each session gets all of them again.
    """
    broker = brokers("alias/app", mqtt=True)
    mqtt = MqttClients(broker.mqtt_port, broker.ca_file)
    sessions: dict[str, dict[str, Any]] = {
        "kept/v5": {
            "version": 5,
            "client_id": "v5",
            "clean": False,
            "properties": paho_properties("CONNECT", SessionExpiryInterval=3600),
        },
        "kept/v311": {"version": 4, "client_id": "v311", "clean": False},
    }
    try:
        for topic, kept in sessions.items():
            client = mqtt.paho(**kept)
            assert client.subscribe(topic, 1) == [1]
            client.disconnect()
        queued = {topic: [f"{topic}-{i}".encode() for i in range(5)] for topic in sessions}
        publisher = mqtt.paho(version=4, client_id="producer")
        for topic, bodies in queued.items():
            for body in bodies:
                assert publisher.publish(topic, body, 1) == 0  # PUBACK: stored
        publisher.disconnect()
        online = {}
        for topic, kept in sessions.items():
            client = online[topic] = mqtt.paho(manual_ack=True, **kept)
            assert client.connack is not None and client.connack.session_present
            assert [m.payload for m in client.take(len(queued[topic]))] == queued[topic]

        _stops(broker, _revoke_storage_grant(broker, boto_kms(broker)), "AccessDeniedException")
        v5, v311 = online["kept/v5"], online["kept/v311"]
        assert v5.wait_disconnected() == SERVER_SHUTTING_DOWN
        assert v5.disconnect_properties is not None
        assert "encryption key is unavailable" in v5.disconnect_properties.ReasonString
        v311.wait_disconnected()  # MQTT 3.1.1 has no DISCONNECT from the server: closed
        assert _refused(broker.mqtt_port)

        broker.sealmq("broker", "restore-key-access")
        broker.wait_state("RUNNING")
        for topic, kept in sessions.items():
            client = mqtt.paho(**kept)
            assert client.connack is not None and client.connack.session_present
            got = client.take(len(queued[topic]))
            assert [m.payload for m in got] == queued[topic]
            assert {m.qos for m in got} == {1}
            assert client.nothing_more()
    finally:
        mqtt.close_all()
