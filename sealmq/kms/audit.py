"""The audit trail: one CloudTrail-shaped JSON line per key-service call, chained by hashes.

Each line is a JSON object carrying ``previousHash``: the SHA-256 (hex) of the
previous line's bytes (without its newline); the first line carries
:data:`GENESIS_HASH`. Editing, removing or reordering any line breaks the link
of the line after it, which :func:`verify_audit` reports.

What the chain alone cannot show is lines cut from the *end* (nor a tail
rewritten with its hashes recomputed: the chain has no key). For that the key
service keeps a :class:`Checkpoint` (line count and the hash of that line) in
its sealed keystore, authenticated by the root key: written whenever the
keystore is saved anyway, every :data:`CHECKPOINT_LINES` lines or
:data:`CHECKPOINT_SECONDS` seconds of activity, and when the service closes, so
the hot path (Decrypt, GenerateDataKey) pays no extra fsync'd write.
:func:`verify_audit` requires the trail to reach the checkpoint with the same
hash there; it may hold *more* lines (written since), never fewer. Lines written
after the last checkpoint are covered only against a head kept elsewhere (a
monitoring system, a second machine): pass it as ``expected_head``. A keystore
file restored from an older backup brings an older checkpoint back.

A trail that shrinks or stops matching the checkpoint while the service runs (or
when it opens) is logged at ERROR and stated in the next line written
(``additionalEventData.auditTrailDamage``), never silently chained over; such a
line makes :func:`verify_audit` fail for good, since the lines it replaced are
gone.

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
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from sealmq.kms.files import fsync_dir, make_private_dir

__all__ = [
    "CHECKPOINT_LINES",
    "CHECKPOINT_SECONDS",
    "DAMAGE_FIELD",
    "GENESIS_HASH",
    "AuditLog",
    "Checkpoint",
    "verify_audit",
]

log = logging.getLogger(__name__)

#: ``previousHash`` of the first line.
GENESIS_HASH = "0" * 64
#: The service checkpoints at least every this many lines (one sealed-file write
#: per thousand calls: well under 1% of the cost of the calls' own fsyncs) ...
CHECKPOINT_LINES = 1000
#: ... and at least this often while lines are being written (seconds).
CHECKPOINT_SECONDS = 300.0
#: Key in ``additionalEventData`` of a line written after the trail was found damaged.
DAMAGE_FIELD = "auditTrailDamage"


class Checkpoint(NamedTuple):
    """A prefix of the trail: its number of lines and the hash of its last line."""

    lines: int
    head: str

    def to_doc(self) -> dict[str, Any]:
        return {"lines": self.lines, "head": self.head}

    @classmethod
    def from_doc(cls, doc: Any) -> Checkpoint | None:
        if doc is None:
            return None
        lines, head = int(doc["lines"]), str(doc["head"])
        if lines < 0 or len(head) != len(GENESIS_HASH):
            raise ValueError("malformed audit checkpoint")
        return cls(lines, head)


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """An append-only, hash-chained JSON-lines file (0600, in a 0700 folder).

    Thread-safe. With ``fsync`` (the default) each line is on disk before
    :meth:`record` returns. ``checkpoint`` (the one the keystore holds) is
    checked against the file as it is first read: a trail that does not reach
    it, or differs at it, is reported (see the module docstring).
    """

    def __init__(
        self, path: Path, *, fsync: bool = True, checkpoint: Checkpoint | None = None
    ) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        make_private_dir(self._path.parent)
        created = not self._path.exists()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        if created:  # the trail's name outlives a crash, as the checkpoint of its lines does
            fsync_dir(self._path.parent)
        self._head, self._lines, self._end = GENESIS_HASH, 0, 0
        self._cut = 0
        #: What was found wrong with the trail, for the next line to say.
        self._damage: list[str] = []
        #: A checkpoint still to be checked as lines are read.
        self._expect = checkpoint if checkpoint is not None and checkpoint.lines > 0 else None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._catch_up()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if self._expect is not None:
            self._damaged(
                f"the trail has {self._lines} lines but the key service checkpointed "
                f"{self._expect.lines}: lines were cut from its end"
            )
            self._expect = None
        self._checkpointed = (self._lines, time.monotonic())

    def _damaged(self, reason: str) -> None:
        log.error("audit trail %s: %s", self._path, reason)
        self._damage.append(reason)

    def _catch_up(self) -> None:
        """Under the ``flock``: take in the lines appended since ``_end`` (by anyone).

        A torn last line (its writer crashed mid-write) is cut and counted in
        ``_cut``. A file shorter than what was read before is damage: it is
        noted for the next line, then read again from the start.
        """
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size == self._end:
            return
        if size < self._end:
            self._damaged(
                f"the trail shrank from {self._end} to {size} bytes "
                f"(it had {self._lines} lines) while the key service had it open"
            )
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
        expect = self._expect
        if expect is not None and self._lines < expect.lines <= self._lines + len(lines):
            self._expect = None
            if _line_hash(lines[expect.lines - self._lines - 1]) != expect.head:
                self._damaged(
                    f"line {expect.lines} is not the line the key service checkpointed: "
                    "lines up to it were rewritten"
                )
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

    def checkpoint(self) -> Checkpoint | None:
        """The trail as this process last saw it, for the keystore to seal.

        None while damage is waiting to be written into the trail: a checkpoint
        taken then would vouch for a trail that has lost lines. Without ``fsync``
        the file is synced first, so the checkpoint never runs ahead of the disk.
        """
        with self._lock:
            if self._damage:
                return None
            if not self._fsync and not self._file.closed:
                os.fsync(self._file.fileno())
            self._checkpointed = (self._lines, time.monotonic())
            return Checkpoint(self._lines, self._head)

    def checkpoint_due(self) -> bool:
        """True after :data:`CHECKPOINT_LINES` lines, or :data:`CHECKPOINT_SECONDS` of them."""
        with self._lock:
            lines, at = self._checkpointed
            if self._lines <= lines:
                return False
            return (
                self._lines - lines >= CHECKPOINT_LINES
                or time.monotonic() - at >= CHECKPOINT_SECONDS
            )

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
        if self._cut or self._damage:
            extra = dict(event.get("additionalEventData") or {})
            if self._cut:
                extra["truncatedTailBytes"] = self._cut
            if self._damage:
                extra[DAMAGE_FIELD] = list(self._damage)
            event = {**event, "additionalEventData": extra}
        line = json.dumps(
            {**event, "previousHash": self._head}, separators=(",", ":"), ensure_ascii=True
        ).encode()
        self._file.write(line + b"\n")
        if self._fsync:
            os.fsync(self._file.fileno())
        self._cut = 0
        self._damage = []
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


def verify_audit(
    path: Path,
    expected_head: str | None = None,
    *,
    checkpoint: Checkpoint | None = None,
) -> tuple[bool, int | None, str]:
    """Check the chain of an audit file: ``(ok, first bad line number (1-based), reason)``.

    A line whose ``previousHash`` does not match the line before it means that
    line or its predecessor was edited, a line between them was removed, or the
    lines were reordered. With ``checkpoint`` (the key service's, from its
    sealed keystore) the trail must reach line ``checkpoint.lines`` and that
    line must hash to ``checkpoint.head``; more lines may follow. With
    ``expected_head`` the last line must hash to it. Both detect lines cut from
    the end. A line in which the key service recorded damage it found
    (``additionalEventData.auditTrailDamage``) fails too.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return False, None, f"cannot read {path}: {exc.strerror}"
    if data and not data.endswith(b"\n"):
        return False, data.count(b"\n") + 1, "the last line is incomplete"
    expected = GENESIS_HASH
    lines = data.splitlines()
    damage: tuple[int, str] | None = None
    at_checkpoint: str | None = None
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
        if checkpoint is not None and number == checkpoint.lines:
            at_checkpoint = expected
        extra = event.get("additionalEventData")
        if damage is None and isinstance(extra, dict) and extra.get(DAMAGE_FIELD):
            found = extra[DAMAGE_FIELD]
            said = "; ".join(map(str, found)) if isinstance(found, list) else str(found)
            damage = (number, f"the key service found the trail damaged before this line: {said}")
    problems: list[tuple[int, str]] = [] if damage is None else [damage]
    if checkpoint is not None and checkpoint.lines > len(lines):
        problems.append(
            (
                len(lines) + 1,
                f"the trail ends at line {len(lines)} but the key service checkpointed "
                f"{checkpoint.lines} lines: lines were cut from its end",
            )
        )
    elif checkpoint is not None and checkpoint.lines > 0 and at_checkpoint != checkpoint.head:
        problems.append(
            (
                checkpoint.lines,
                "this line is not the one the key service checkpointed: "
                "the trail was rewritten up to here",
            )
        )
    if expected_head is not None and expected != expected_head:
        problems.append(
            (len(lines) + 1, "the trail does not end at the expected head: lines are missing")
        )
    if problems:
        line_number, reason = min(problems, key=lambda problem: problem[0])
        return False, line_number, reason
    return True, None, ""
