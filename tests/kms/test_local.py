"""The minimal local key service: one service-owned key sealed under a root key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from sealmq.kms.local import KEYSTORE_FILE, ROOT_KEY_FILE, KeyServiceError, LocalKeyService

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


def test_the_context_must_match(keys_dir: Path) -> None:
    service = LocalKeyService(keys_dir)
    _, wrapped = service.generate_data_key(CTX)
    for context in ({**CTX, "segment": "2"}, {"purpose": "sealmq-journal"}, {}, {**CTX, "x": ""}):
        with pytest.raises(KeyServiceError, match="context"):
            service.decrypt_data_key(wrapped, context)


def test_damaged_or_foreign_blobs_are_refused(keys_dir: Path, tmp_path: Path) -> None:
    service = LocalKeyService(keys_dir)
    _, wrapped = service.generate_data_key(CTX)
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


def test_keys_persist_across_instances(keys_dir: Path) -> None:
    first = LocalKeyService(keys_dir)
    dek, wrapped = first.generate_data_key(CTX)
    second = LocalKeyService(keys_dir)
    assert second.key_id == first.key_id
    assert second.decrypt_data_key(wrapped, CTX) == dek


def test_files_are_private_and_the_material_sealed(keys_dir: Path) -> None:
    service = LocalKeyService(keys_dir)
    root = keys_dir / ROOT_KEY_FILE
    keystore = keys_dir / KEYSTORE_FILE
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o600
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert len(root.read_bytes()) == 32
    sealed = keystore.read_bytes()
    for material in service._versions.values():
        assert material not in sealed
        assert base64.b64encode(material) not in sealed
    assert service.key_id.encode() not in sealed
    assert sorted(p.name for p in keys_dir.iterdir()) == [KEYSTORE_FILE, ROOT_KEY_FILE]


def test_a_wrong_root_key_or_open_permissions_are_refused(keys_dir: Path) -> None:
    LocalKeyService(keys_dir)
    root = keys_dir / ROOT_KEY_FILE
    os.chmod(root, 0o644)
    with pytest.raises(KeyServiceError, match="chmod"):
        LocalKeyService(keys_dir)
    os.chmod(root, 0o600)
    root.write_bytes(os.urandom(32))
    with pytest.raises(KeyServiceError, match="root key"):
        LocalKeyService(keys_dir)
    root.write_bytes(b"short")
    with pytest.raises(KeyServiceError, match="256-bit"):
        LocalKeyService(keys_dir)


def test_a_keystore_without_its_root_key_is_refused(keys_dir: Path) -> None:
    LocalKeyService(keys_dir)
    (keys_dir / ROOT_KEY_FILE).unlink()
    with pytest.raises(KeyServiceError, match="missing"):
        LocalKeyService(keys_dir)
    assert not (keys_dir / ROOT_KEY_FILE).exists()  # no new root key was made in its place
