"""LocalKeyService: the service-owned key of a keystore folder as a plain KeyProvider."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealmq.kms.clients import ServiceKeyProvider
from sealmq.kms.local import KEYSTORE_FILE, ROOT_KEY_FILE, KeyServiceError, LocalKeyService
from sealmq.kms.service import open_key_service
from tests.kms.legacy import LegacyKeys

CTX = {"purpose": "sealmq-journal", "broker": "b1", "segment": "1"}


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def test_data_keys_wrap_and_unwrap(keys_dir: Path) -> None:
    service = LocalKeyService(keys_dir)
    dek, wrapped = service.generate_data_key(CTX)
    assert len(dek) == 32 and dek not in wrapped
    assert service.key_id.encode() in wrapped  # the blob names its key (and version)
    assert service.decrypt_data_key(wrapped, dict(reversed(list(CTX.items())))) == dek
    other, _ = service.generate_data_key(CTX)
    assert other != dek
    assert LocalKeyService(keys_dir).decrypt_data_key(wrapped, CTX) == dek  # persisted
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for name in (ROOT_KEY_FILE, KEYSTORE_FILE):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600


def test_the_context_must_match_and_damage_is_refused(keys_dir: Path, tmp_path: Path) -> None:
    service = LocalKeyService(keys_dir)
    _, wrapped = service.generate_data_key(CTX)
    for context in ({**CTX, "segment": "2"}, {"purpose": "sealmq-journal"}, {}, {**CTX, "x": ""}):
        with pytest.raises(KeyServiceError, match="context"):
            service.decrypt_data_key(wrapped, context)
    for i in range(len(wrapped)):
        damaged = bytearray(wrapped)
        damaged[i] ^= 0x01
        with pytest.raises(KeyServiceError):
            service.decrypt_data_key(bytes(damaged), CTX)
    for cut in (0, 3, 10, len(wrapped) - 1):
        with pytest.raises(KeyServiceError):
            service.decrypt_data_key(wrapped[:cut], CTX)
    elsewhere = LocalKeyService(tmp_path / "other")
    with pytest.raises(KeyServiceError, match="another key"):
        elsewhere.decrypt_data_key(wrapped, CTX)


def test_it_is_the_key_services_own_service_owned_key(tmp_path: Path) -> None:
    local = LocalKeyService(tmp_path / "keys")
    dek, wrapped = local.generate_data_key(CTX)
    with open_key_service(tmp_path, audit_fsync=False) as service:
        assert service.service_owned_key_id == local.key_id
        provider = ServiceKeyProvider(service, service.service_owned_key_id)
        assert provider.decrypt_data_key(wrapped, CTX) == dek
        other, other_wrapped = provider.generate_data_key(CTX)
    assert local.decrypt_data_key(other_wrapped, CTX) == other


def test_a_legacy_folder_is_opened_with_its_key(keys_dir: Path) -> None:
    legacy = LegacyKeys(keys_dir)
    dek, wrapped = legacy.generate_data_key(CTX)
    service = LocalKeyService(keys_dir)
    assert service.key_id == legacy.key_id
    assert service.decrypt_data_key(wrapped, CTX) == dek


def test_a_keystore_without_its_root_key_is_refused(keys_dir: Path) -> None:
    LocalKeyService(keys_dir)
    (keys_dir / ROOT_KEY_FILE).unlink()
    with pytest.raises(KeyServiceError, match="missing"):
        LocalKeyService(keys_dir)
    assert not (keys_dir / ROOT_KEY_FILE).exists()  # no new root key was made in its place
