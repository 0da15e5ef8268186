"""The data folder's exclusive lock, with a fencing token.

``<data_dir>/lock`` is held with ``flock`` for as long as a store is open, so a
second broker (an active/standby pair sharing a folder on NFS or EFS) cannot
open the same store. Each successful open increments the fencing token kept in
the file; a successor after a crash gets a higher token than the broker it
replaces, and the journal records it in every segment it creates.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sealmq.store.errors import StoreLockedError
from sealmq.store.files import FILE_MODE, datasync

__all__ = ["LOCK_FILE", "DataDirLock"]

LOCK_FILE = "lock"


class DataDirLock:
    """Holds ``<data_dir>/lock`` exclusively from construction until :meth:`release`.

    Raises :class:`StoreLockedError` when another open file (in this or another
    process) holds it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(f"{self.path} is held by another broker") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            raw = os.pread(fd, 64, 0)
            try:
                previous = int(raw.decode("ascii").strip() or "0")
            except ValueError:
                previous = 0
            self.fencing_token = previous + 1
            data = f"{self.fencing_token}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            datasync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the folder up; closing the descriptor releases the flock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
