"""Creating a broker with its key, later starts, the store's provider, shredding, the check."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sealmq.control.keys import (
    BrokerKeyError,
    EmbeddedKeys,
    KeyAccessError,
    check_key_access,
    load_record,
)
from sealmq.kms.errors import KmsError
from sealmq.kms.service import KeyService, open_key_service
from sealmq.store.keys import generate_data_key

CONTEXT = {"purpose": "sealmq-journal", "broker": "", "segment": "1"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    made = open_key_service(tmp_path / "kms", audit_fsync=False)
    yield made
    made.close()


def _customer(service: KeyService, alias: str | None = None) -> str:
    key = str(service.call("CreateKey", {})["KeyMetadata"]["KeyId"])
    if alias:
        service.call("CreateAlias", {"AliasName": alias, "TargetKeyId": key})
    return key


def _context(broker_id: str) -> dict[str, str]:
    return {**CONTEXT, "broker": broker_id}


@pytest.mark.parametrize("kms_key", [None, "managed", "owned", "alias/app"])
def test_each_kind_makes_a_working_provider_through_a_grant(
    tmp_path: Path, service: KeyService, kms_key: str | None
) -> None:
    if kms_key == "alias/app":
        _customer(service, kms_key)
    keys = EmbeddedKeys(service)
    (tmp_path / "data").mkdir()
    record, created = keys.open_broker(tmp_path / "data", kms_key)
    assert created and load_record(tmp_path / "data") == record
    assert record.key_kind == {None: "managed", "alias/app": "customer"}.get(kms_key, kms_key)
    assert record.storage_principal.endswith(f":role/sealmq-storage/{record.broker_id}")
    assert len(record.grant_ids) == (0 if kms_key == "owned" else 1)
    provider = keys.provider(record)
    dek, wrapped = generate_data_key(provider, _context(record.broker_id))
    assert provider.decrypt_data_key(wrapped, _context(record.broker_id)) == dek
    # The grant is bound to the broker's context: another broker id is refused.
    if kms_key != "owned":
        with pytest.raises(KmsError, match="AccessDenied"):
            provider.generate_data_key(_context("b-other"))
    # A second open finds it as it was.
    assert keys.open_broker(tmp_path / "data", kms_key) == (record, False)


@pytest.mark.parametrize("form", ["key id", "key ARN", "alias name", "alias ARN"])
def test_a_customer_key_named_in_any_form_at_creation(
    tmp_path: Path, service: KeyService, form: str
) -> None:
    key = _customer(service, "alias/app")
    arn = service.keystore.key_arn(key)
    forms = {
        "key id": key,
        "key ARN": arn,
        "alias name": "alias/app",
        "alias ARN": service.keystore.alias_arn("alias/app"),
    }
    ref = forms[form]
    keys = EmbeddedKeys(service)
    record, created = keys.open_broker(tmp_path, ref)
    assert created and load_record(tmp_path) == record
    assert (record.key_kind, record.kms_key_id, record.kms_key_arn) == ("customer", key, arn)
    assert record.named_as == ref
    # The grant is on the key itself, whatever named it.
    grants = service.call("ListGrants", {"KeyId": key})["Grants"]
    assert [g["GrantId"] for g in grants] == list(record.grant_ids)
    assert grants[0]["GranteePrincipal"] == record.storage_principal
    provider = keys.provider(record)
    dek, wrapped = generate_data_key(provider, _context(record.broker_id))
    assert provider.decrypt_data_key(wrapped, _context(record.broker_id)) == dek
    # Later starts naming it the same way, or any other way, find the same broker.
    for same in (*forms.values(), None):
        assert keys.open_broker(tmp_path, same) == (record, False)


def test_another_key_on_a_later_start_is_refused(tmp_path: Path, service: KeyService) -> None:
    first = _customer(service, "alias/first")
    second = _customer(service, "alias/second")
    keys = EmbeddedKeys(service)
    record, _ = keys.open_broker(tmp_path, "alias/first")
    for same in (None, "alias/first", first, record.kms_key_arn):
        keys.verify(record, same)
    for other, said in (
        ("alias/second", f"names {service.keystore.key_arn(second)}"),
        (second, "names another key"),
        ("managed", "names another key"),
        ("owned", "names another key"),
        ("alias/nope", "cannot be resolved"),
    ):
        with pytest.raises(BrokerKeyError, match="fixed") as info:
            keys.verify(record, other)
        assert said in str(info.value)


def test_unusable_customer_keys_fail_creation_and_leave_nothing(
    tmp_path: Path, service: KeyService
) -> None:
    keys = EmbeddedKeys(service)
    off = _customer(service, "alias/off")
    service.call("DisableKey", {"KeyId": off})
    doomed = _customer(service, "alias/doomed")
    service.call("ScheduleKeyDeletion", {"KeyId": doomed, "PendingWindowInDays": 7})
    for ref, said in (
        ("alias/off", "is disabled"),
        ("alias/doomed", "pending deletion"),
        ("alias/none", "NotFoundException"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "NotFoundException"),
    ):
        with pytest.raises(BrokerKeyError, match=said):
            keys.open_broker(tmp_path, ref)
    assert load_record(tmp_path) is None
    assert service.call("ListGrants", {"KeyId": off})["Grants"] == []


def test_restore_and_shred(tmp_path: Path, service: KeyService) -> None:
    key = _customer(service, "alias/app")
    keys = EmbeddedKeys(service)
    record, _ = keys.open_broker(tmp_path, "alias/app")
    provider = keys.provider(record)
    check_key_access(provider, record.broker_id, "k")
    service.call("RevokeGrant", {"KeyId": key, "GrantId": record.grant_ids[0]})
    with pytest.raises(KeyAccessError) as info:
        check_key_access(provider, record.broker_id, "the key")
    assert info.value.code == "INVALID_KMS_KEY" and "AccessDeniedException" in info.value.info
    record, grant = keys.restore_access(record)
    assert record.grant_ids[-1] == grant
    check_key_access(provider, record.broker_id, "k")
    _, wrapped = provider.generate_data_key(_context(record.broker_id))

    assert keys.shred(record) == [grant]
    assert service.call("ListGrants", {"KeyId": key})["Grants"] == []
    with pytest.raises(KmsError):
        service.call(
            "Decrypt", {"CiphertextBlob": wrapped, "EncryptionContext": _context(record.broker_id)}
        )
    keys.shred(record)  # again (an interrupted delete is run again): nothing left to do


def test_owned_brokers_have_no_access_to_restore(tmp_path: Path, service: KeyService) -> None:
    keys = EmbeddedKeys(service)
    record, _ = keys.open_broker(tmp_path, "owned")
    with pytest.raises(BrokerKeyError, match="no grants"):
        keys.restore_access(record)


class Flaky:
    """A provider that fails ``failures`` times with ``error`` before answering."""

    key_id = "k"

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return b"k" * 32, b"wrapped"

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return b"k" * 32


def test_the_check_retries_an_unreachable_service_within_its_budget() -> None:
    sleeps: list[float] = []
    flaky = Flaky(2, ConnectionRefusedError("refused"))
    check_key_access(flaky, "b", "k", attempts=3, backoff=0.1, sleep=sleeps.append)
    assert flaky.calls == 3 and sleeps == [0.1, 0.2]

    down = Flaky(10, ConnectionRefusedError("refused"))
    with pytest.raises(KeyAccessError) as info:
        check_key_access(down, "b", "the key", attempts=3, backoff=0.1, sleep=sleeps.append)
    assert info.value.code == "KMS_KEY_UNREACHABLE" and "3 attempts" in info.value.info

    refused = Flaky(10, KmsError("DisabledException", "off"))
    with pytest.raises(KeyAccessError) as info:
        check_key_access(refused, "b", "the key", attempts=3, sleep=sleeps.append)
    assert refused.calls == 1  # a refusal is not retried
    assert info.value.code == "INVALID_KMS_KEY" and "DisabledException: off" in info.value.info
