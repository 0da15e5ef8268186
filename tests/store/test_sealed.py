"""Sealed state files: envelope-encrypted, atomic, private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealmq.kms.local import LocalKeyService
from sealmq.store.errors import CorruptRecordError, KeyUnavailableError
from sealmq.store.sealed import (
    read_sealed,
    read_sealed_stream,
    write_sealed,
    write_sealed_stream,
)
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


def frames(path: Path) -> tuple[bytes, list[bytes]]:
    """A stream file cut into its head (preamble and header) and its chunk frames."""
    data = path.read_bytes()
    header_len = int.from_bytes(data[10:14], "big")
    pos = 14 + header_len
    head, out = data[:pos], []
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos : pos + 4 + n])
        pos += 4 + n
    return head, out


@pytest.mark.parametrize("chunks", [[], [b""], [b"one"], [b"a" * 1000, b"", b"b" * 3, b"c"]])
def test_a_stream_round_trips_chunk_by_chunk_and_never_in_clear(
    tmp_path: Path, kms: LocalKeyService, chunks: list[bytes]
) -> None:
    path = tmp_path / "state" / "checkpoint"
    marked = [c + b"Zq7marker" if c else c for c in chunks]
    write_sealed_stream(path, iter(marked), kms, CTX)
    assert list(read_sealed_stream(path, kms, CTX)) == (marked or [b""])
    assert b"Zq7marker" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint"]
    with pytest.raises(CorruptRecordError):  # the other form is not read as this one
        read_sealed(path, kms, CTX)


def test_a_stream_cut_reordered_or_damaged_is_refused(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    path = tmp_path / "s"
    write_sealed_stream(path, [b"first", b"second", b"third"], fake_keys, CTX)
    original = path.read_bytes()
    head, parts = frames(path)
    assert len(parts) == 3
    cases = {
        "cut at a chunk boundary": head + parts[0] + parts[1],
        "a chunk dropped": head + parts[0] + parts[2],
        "chunks swapped": head + parts[1] + parts[0] + parts[2],
        "a chunk repeated": head + parts[0] + parts[0] + parts[1] + parts[2],
        "cut inside a chunk": original[:-5],
        "bytes appended": original + b"\x00",
        "a bit flipped": original[:-20] + bytes([original[-20] ^ 1]) + original[-19:],
    }
    for what, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(CorruptRecordError):
            list(read_sealed_stream(path, fake_keys, CTX))
            pytest.fail(what)
    path.write_bytes(original)
    with pytest.raises(KeyUnavailableError):
        list(read_sealed_stream(path, fake_keys, {**CTX, "purpose": "other"}))
