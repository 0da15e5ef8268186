"""The audit trail: one CloudTrail-shaped JSON line per key-service call, chained by hashes.

Each line is a JSON object carrying ``previousHash``: the SHA-256 (hex) of the
previous line's bytes (without its newline); the first line carries
:data:`GENESIS_HASH`. Editing, removing or reordering any line breaks the link
of the line after it, which :func:`verify_audit` reports. What the chain alone
cannot show is lines cut from the *end*: keep :attr:`AuditLog.head` somewhere
else (a monitoring system, a second machine) and pass it as ``expected_head``.

The trail never holds plaintext, data keys, key material or ciphertext blobs:
the service passes only key ids, encryption contexts, grant ids and the like as
``requestParameters`` (see ``service.py``), as AWS CloudTrail does for KMS.

A torn last line (a crash in the middle of a write) is cut when the log is
reopened, and the next line says how many bytes were cut
(``additionalEventData.truncatedTailBytes``).

Several processes may append to one trail (a broker and the ``sealmq kms``
command sharing a key service): each append holds an exclusive ``flock`` on the
file and first reads whatever other processes appended since this one last
wrote, so the chain continues from the true last line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from sealmq.kms.files import make_private_dir

__all__ = ["GENESIS_HASH", "AuditLog", "verify_audit"]

#: ``previousHash`` of the first line.
GENESIS_HASH = "0" * 64


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """An append-only, hash-chained JSON-lines file (0600, in a 0700 folder).

    Thread-safe. With ``fsync`` (the default) each line is on disk before
    :meth:`record` returns.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        make_private_dir(self._path.parent)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._head, self._lines, self._end = GENESIS_HASH, 0, 0
        self._cut = 0
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._catch_up()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Under the ``flock``: take in the lines appended since ``_end`` (by anyone).

        A torn last line (its writer crashed mid-write) is cut and counted in ``_cut``.
        """
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size == self._end:
            return
        if size < self._end:  # cut by someone else: read it all again
            self._head, self._lines, self._end = GENESIS_HASH, 0, 0
        self._file.seek(self._end)
        data = self._file.read(size - self._end)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            self._cut += len(data) - keep
            os.ftruncate(fd, self._end + keep)
            os.fsync(fd)
            data = data[:keep]
        lines = data.splitlines()
        if lines:
            self._head = _line_hash(lines[-1])
            self._lines += len(lines)
        self._end += len(data)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def head(self) -> str:
        """The hash of the last line written (the value the next line will chain to)."""
        with self._lock:
            return self._head

    def __len__(self) -> int:
        with self._lock:
            return self._lines

    def record(self, event: dict[str, Any]) -> None:
        """Append ``event`` as one line chained to the previous one."""
        with self._lock:
            fd = self._file.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._append(event)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _append(self, event: dict[str, Any]) -> None:
        self._catch_up()
        if self._cut:
            extra = dict(event.get("additionalEventData") or {})
            extra["truncatedTailBytes"] = self._cut
            event = {**event, "additionalEventData": extra}
            self._cut = 0
        line = json.dumps(
            {**event, "previousHash": self._head}, separators=(",", ":"), ensure_ascii=True
        ).encode()
        self._file.write(line + b"\n")
        if self._fsync:
            os.fsync(self._file.fileno())
        self._head = _line_hash(line)
        self._lines += 1
        self._end += len(line) + 1

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_audit(path: Path, expected_head: str | None = None) -> tuple[bool, int | None, str]:
    """Check the chain of an audit file: ``(ok, first bad line number (1-based), reason)``.

    A line whose ``previousHash`` does not match the line before it means that
    line or its predecessor was edited, a line between them was removed, or the
    lines were reordered. With ``expected_head`` the last line must hash to it
    (detecting lines cut from the end).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return False, None, f"cannot read {path}: {exc.strerror}"
    if data and not data.endswith(b"\n"):
        return False, data.count(b"\n") + 1, "the last line is incomplete"
    expected = GENESIS_HASH
    lines = data.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
        except ValueError:
            return False, number, "not a JSON line"
        if not isinstance(event, dict):
            return False, number, "not a JSON object"
        if event.get("previousHash") != expected:
            what = "the start of the trail" if number == 1 else f"line {number - 1}"
            return (
                False,
                number,
                f"previousHash does not match {what}: a line was edited, removed or reordered",
            )
        expected = _line_hash(line)
    if expected_head is not None and expected != expected_head:
        return (
            False,
            len(lines) + 1,
            "the trail does not end at the expected head: lines are missing",
        )
    return True, None, ""
