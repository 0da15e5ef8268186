"""Sealed state files: envelope-encrypted, atomic, private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealmq.kms.local import LocalKeyService
from sealmq.store.errors import CorruptRecordError, KeyUnavailableError
from sealmq.store.sealed import read_sealed, write_sealed
from tests.store.conftest import FakeKeyProvider

CTX = {"purpose": "sealmq-users", "broker": "broker-1"}


def test_round_trip_private_and_never_in_clear(tmp_path: Path, kms: LocalKeyService) -> None:
    path = tmp_path / "state" / "users.sealed"
    secret = b'{"user": "alice-Zq7marker", "password_hash": "..."}'
    write_sealed(path, secret, kms, CTX)
    assert read_sealed(path, kms, CTX) == secret
    assert b"Zq7marker" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["users.sealed"]  # no temp file left


def test_every_write_uses_a_fresh_data_key(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    path = tmp_path / "s"
    write_sealed(path, b"one", fake_keys, CTX)
    first = path.read_bytes()
    write_sealed(path, b"one", fake_keys, CTX)
    assert path.read_bytes() != first
    assert fake_keys.generated == 2
    assert read_sealed(path, fake_keys, CTX) == b"one"


def test_another_context_or_damage_is_refused(tmp_path: Path, kms: LocalKeyService) -> None:
    path = tmp_path / "s"
    write_sealed(path, b"data", kms, CTX)
    with pytest.raises(KeyUnavailableError):
        read_sealed(path, kms, {**CTX, "purpose": "other"})
    original = path.read_bytes()
    for offset in (0, 12, len(original) // 2, len(original) - 1):
        damaged = bytearray(original)
        damaged[offset] ^= 0x04
        path.write_bytes(bytes(damaged))
        with pytest.raises((CorruptRecordError, KeyUnavailableError)):
            read_sealed(path, kms, CTX)
    path.write_bytes(original[:20])
    with pytest.raises(CorruptRecordError):
        read_sealed(path, kms, CTX)
    with pytest.raises(FileNotFoundError):
        read_sealed(tmp_path / "missing", kms, CTX)


def test_an_unavailable_key_is_reported(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    fake_keys.available = False
    with pytest.raises(KeyUnavailableError):
        write_sealed(tmp_path / "s", b"x", fake_keys, CTX)
    assert not (tmp_path / "s").exists()
