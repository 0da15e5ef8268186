"""Private files: 0700 folders, 0600 files, atomic durable writes.

The one home of these helpers for the key service and every layer above it
(``net`` for the TLS folder, ``control`` for status and request files, ``app``
for the data folders): ``kms`` is the bottom layer and imports nothing of
sealmq, so all of them may use it. The store keeps its own
(:mod:`sealmq.store.files`), because the store must not import ``kms``
(it sees keys only through ``KeyProvider``; see pyproject's import contracts).

Every write goes to a fresh temporary file in the same folder, is fsynced, then
moved into place and the folder fsynced, so a crash leaves either the old file or
the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

__all__ = [
    "PrivateFileError",
    "create_private_file",
    "fsync_dir",
    "make_private_dir",
    "read_private_file",
    "replace_private_file",
]


class PrivateFileError(Exception):
    """A key-service file is unreadable or open to group or others."""


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) 0700, or tighten it to 0700 if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)


def read_private_file(path: Path) -> bytes:
    """The bytes of ``path``; refuses a file that group or others may read."""
    try:
        with open(path, "rb") as f:
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & 0o077:
                raise PrivateFileError(f"{path} is accessible by group or others; chmod 600 it")
            return f.read()
    except OSError as exc:
        raise PrivateFileError(f"cannot read {path}: {exc.strerror}") from exc


def _write_temp(path: Path, data: bytes, *, durable: bool = True) -> Path:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def fsync_dir(path: Path) -> None:
    """Make a creation, rename or unlink inside the folder ``path`` durable."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replace_private_file(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` (0600) atomically, replacing any previous content.

    ``durable`` False skips the fsyncs (of the file and its folder): for a file a
    crash may take back one step, still never half-written.
    """
    tmp = _write_temp(path, data, durable=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600) holding ``data``, atomically; False if it already exists."""
    tmp = _write_temp(path, data)
    try:
        try:
            # link() rather than rename(): never replaces a file another process made first.
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True
