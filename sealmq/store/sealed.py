"""Sealed state files: whole-file envelope encryption.

:func:`write_sealed` (small files: the user list, broker settings) writes
``preamble || header || nonce || AES-256-GCM(dek, data)`` where the header holds
the key id and the wrapped data key, and the associated data binds the preamble,
the header and the caller's encryption context.

:func:`write_sealed_stream` (large files: the index checkpoint) writes the same
preamble (format 2) and header, then chunks, each ``u32 length ||
AES-256-GCM(dek, chunk)`` under a counter nonce (the chunk's number; the data key
is fresh, so a nonce never repeats under it). Each chunk's associated data binds
the preamble, header and context, its number and whether it is the last, so
chunks cannot be reordered, dropped, or cut off at a chunk boundary unnoticed.
:func:`read_sealed_stream` hands them back one at a time: neither side holds the
whole file, in clear or sealed.

Every write uses a fresh data key and replaces the file atomically (temporary
file, fsync, rename, fsync of the folder), created 0600.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.store.crypto import (
    NONCE_BYTES,
    TAG_BYTES,
    counter_nonce,
    encode_context,
    encode_fields,
)
from sealmq.store.errors import CorruptRecordError, KeyUnavailableError
from sealmq.store.files import (
    FILE_MODE,
    fsync_dir,
    make_private_dir,
    remove_quietly,
    write_all,
)
from sealmq.store.keys import KeyProvider, decrypt_data_key, generate_data_key

__all__ = [
    "SEALED_MAGIC",
    "read_sealed",
    "read_sealed_stream",
    "write_sealed",
    "write_sealed_stream",
]

SEALED_MAGIC = b"SEALMQS\x00"
_FORMAT = 1
_STREAM_FORMAT = 2
_PREAMBLE = struct.Struct(">8sHI")  # magic, format, header length
_U32 = struct.Struct(">I")
_CHUNK = struct.Struct(">QB")  # chunk number, last
_MAX_HEADER = 64 * 1024
#: The largest chunk a reader accepts (a writer's chunks are far smaller).
MAX_CHUNK = 64 * 1024 * 1024


def write_sealed(
    path: Path,
    data: bytes | bytearray,
    key_provider: KeyProvider,
    context: Mapping[str, str],
) -> None:
    """Replace ``path`` with ``data`` sealed under a fresh data key bound to ``context``.

    Blocking (file I/O and a key-provider call): run it off the event loop.
    Raises :class:`KeyUnavailableError` or ``OSError``.
    """
    dek, preamble = _new_key(key_provider, context, _FORMAT)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(dek).encrypt(nonce, data, _aad(preamble, context))
    # Not joined: a large file's sealed part is written as it is.
    _replace(Path(path), [preamble + nonce, sealed])


def write_sealed_stream(
    path: Path,
    chunks: Iterable[bytes | bytearray],
    key_provider: KeyProvider,
    context: Mapping[str, str],
) -> None:
    """Replace ``path`` with ``chunks`` sealed one by one under a fresh data key bound
    to ``context`` (see the module's docstring); ``chunks`` is consumed as it is
    written. Blocking. Raises :class:`KeyUnavailableError` or ``OSError``."""
    dek, preamble = _new_key(key_provider, context, _STREAM_FORMAT)
    aead = AESGCM(dek)
    bound = _aad(preamble, context)

    def sealed() -> Iterator[bytes | bytearray]:
        yield preamble
        number = 0
        held: bytes | bytearray | None = None
        for chunk in chunks:
            if held is not None:
                yield _seal_chunk(aead, bound, number, held, last=False)
                number += 1
            held = chunk
        yield _seal_chunk(aead, bound, number, b"" if held is None else held, last=True)

    _replace(Path(path), sealed())


def _seal_chunk(
    aead: AESGCM, bound: bytes, number: int, chunk: bytes | bytearray, *, last: bool
) -> bytes:
    if len(chunk) > MAX_CHUNK - TAG_BYTES:
        raise ValueError("a sealed chunk is limited to 64 MiB")
    sealed = aead.encrypt(counter_nonce(number), chunk, bound + _CHUNK.pack(number, last))
    return _U32.pack(len(sealed)) + sealed


def _new_key(
    key_provider: KeyProvider, context: Mapping[str, str], fmt: int
) -> tuple[bytes, bytes]:
    """A fresh data key and the preamble and header that name it."""
    dek, wrapped = generate_data_key(key_provider, context)
    try:
        key_id = str(key_provider.key_id)
    except Exception as exc:
        raise KeyUnavailableError(f"key id unavailable: {type(exc).__name__}") from exc
    header = encode_fields(key_id.encode(), wrapped)
    return dek, _PREAMBLE.pack(SEALED_MAGIC, fmt, len(header)) + header


def _replace(path: Path, parts: Iterable[bytes | bytearray]) -> None:
    """Write ``parts`` to a new private file and rename it over ``path``, durably."""
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            for part in parts:
                write_all(fd, part)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


def read_sealed(path: Path, key_provider: KeyProvider, context: Mapping[str, str]) -> bytes:
    """The data of a file written by :func:`write_sealed` with the same ``context``.

    Raises ``FileNotFoundError`` if there is none, :class:`CorruptRecordError` if it
    was damaged or sealed for another context, :class:`KeyUnavailableError`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        blob = f.read()
    dek, end = _open_key(path, memoryview(blob), _FORMAT, key_provider, context)
    if len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise CorruptRecordError("sealed file is truncated", path, 0)
    try:
        return AESGCM(dek).decrypt(
            blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :], _aad(blob[:end], context)
        )
    except InvalidTag:
        raise CorruptRecordError("sealed file failed authentication", path, end) from None


def read_sealed_stream(
    path: Path, key_provider: KeyProvider, context: Mapping[str, str]
) -> Iterator[bytes]:
    """The chunks of a file written by :func:`write_sealed_stream` with the same
    ``context``, in order, each read and authenticated as it is asked for.

    The file is opened (and the data key unwrapped) at the first ``next``. Raises
    ``FileNotFoundError``, :class:`CorruptRecordError` (damaged, reordered, cut off
    or another context's: possibly after earlier chunks were handed out, so use
    nothing of them until the iteration ends), :class:`KeyUnavailableError`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        start = f.read(_PREAMBLE.size + _MAX_HEADER)
        dek, end = _open_key(path, memoryview(start), _STREAM_FORMAT, key_provider, context)
        aead = AESGCM(dek)
        bound = _aad(start[:end], context)
        f.seek(end)
        number = 0
        frame = _read_frame(f, path)
        while True:
            if frame is None:
                raise CorruptRecordError("sealed file is truncated", path, f.tell())
            following = _read_frame(f, path)
            aad = bound + _CHUNK.pack(number, following is None)
            try:
                chunk = aead.decrypt(counter_nonce(number), frame, aad)
            except InvalidTag:
                raise CorruptRecordError(
                    "sealed file failed authentication", path, f.tell()
                ) from None
            yield chunk
            if following is None:
                return
            number += 1
            frame = following


def _read_frame(f: BinaryIO, path: Path) -> bytes | None:
    """The next chunk's sealed bytes, or None at the end of the file."""
    head = f.read(_U32.size)
    if not head:
        return None
    if len(head) < _U32.size:
        raise CorruptRecordError("sealed file is truncated", path, f.tell())
    (length,) = _U32.unpack(head)
    if not TAG_BYTES <= length <= MAX_CHUNK:
        raise CorruptRecordError("sealed file chunk has a bad length", path, f.tell())
    frame = f.read(length)
    if len(frame) < length:
        raise CorruptRecordError("sealed file is truncated", path, f.tell())
    return frame


def _open_key(
    path: Path,
    blob: memoryview,
    fmt: int,
    key_provider: KeyProvider,
    context: Mapping[str, str],
) -> tuple[bytes, int]:
    """Check the preamble and header at the start of ``blob``; the data key and where
    the header ends."""
    if len(blob) < _PREAMBLE.size:
        raise CorruptRecordError("sealed file is truncated", path, 0)
    magic, found, header_len = _PREAMBLE.unpack_from(blob)
    if magic != SEALED_MAGIC or found != fmt or header_len > _MAX_HEADER:
        raise CorruptRecordError("not a sealed file of this version", path, 0)
    end = _PREAMBLE.size + header_len
    if len(blob) < end:
        raise CorruptRecordError("sealed file is truncated", path, 0)
    header = bytes(blob[_PREAMBLE.size : end])
    if len(header) < 4:
        raise CorruptRecordError("sealed file header is malformed", path, 0)
    (id_len,) = _U32.unpack_from(header)
    pos = 4 + id_len
    if pos + 4 > len(header) or _U32.unpack_from(header, pos)[0] != len(header) - pos - 4:
        raise CorruptRecordError("sealed file header is malformed", path, 0)
    return decrypt_data_key(key_provider, header[pos + 4 :], context), end


def _aad(preamble_and_header: bytes, context: Mapping[str, str]) -> bytes:
    return encode_fields(b"sealmq-sealed-file", preamble_and_header, encode_context(context))
