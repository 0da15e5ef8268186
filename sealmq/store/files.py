"""File-system helpers: private folders, whole writes, durable renames and unlinks.

The store's own copy of the private-folder helper: every layer above uses
:mod:`sealmq.kms.files`, which the store may not import (it sees keys only
through ``KeyProvider``, an import contract in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "datasync",
    "fsync_dir",
    "make_private_dir",
    "remove_quietly",
    "write_all",
]

#: Every file the store creates: owner read/write only.
FILE_MODE = 0o600
#: Every folder the store creates: owner only.
FOLDER_MODE = 0o700

log = logging.getLogger("sealmq.store")

#: fdatasync is enough after an append: it flushes the size change with the data.
datasync = getattr(os, "fdatasync", os.fsync)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700, or tighten an existing folder to 0700."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.info("tightening permissions of %s from %o to 700", path, mode)
        os.chmod(path, FOLDER_MODE)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a creation, rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
