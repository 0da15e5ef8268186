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

Rotation: once the live file (``kms.jsonl``) would grow past ``max_bytes``
(``[kms] audit_max_bytes``), it is renamed ``kms.000001.jsonl`` (then
``.000002`` ...) and a new live file begins. Its first line chains to the
renamed file's last line, as any line does, and also says which file came
before and how many lines the trail had (``previousFile``), so
:func:`verify_audit`, reading every file oldest first, reports a missing,
renamed or reordered file by name. Line numbers and the checkpoint count lines
across all files. Rotated files are never deleted by the service: archive them
whole (with the live file), as ``verify-audit`` needs them all.

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
    "AUDIT_MAX_BYTES",
    "CHECKPOINT_LINES",
    "CHECKPOINT_SECONDS",
    "DAMAGE_FIELD",
    "GENESIS_HASH",
    "AuditLog",
    "Checkpoint",
    "audit_files",
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
#: Size past which the live file is rotated (bytes): 64 MiB is about 40,000 calls,
#: a file any JSON-lines tool reads whole; CloudTrail itself delivers smaller files.
AUDIT_MAX_BYTES = 64 * 1024 * 1024
#: Field of a file's first line naming the file before it and the lines before it.
PREVIOUS_FILE_FIELD = "previousFile"


def _rotated_name(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.{number:06d}{path.suffix}")


def _rotated(path: Path) -> list[tuple[int, Path]]:
    """The rotated files of the live file ``path``, by number, oldest first."""
    prefix, suffix = f"{path.stem}.", path.suffix
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        middle = name[len(prefix) : len(name) - len(suffix)] if suffix else name[len(prefix) :]
        if name.startswith(prefix) and name.endswith(suffix) and middle.isdigit():
            found.append((int(middle), path.with_name(name)))
    return sorted(found)


def audit_files(path: Path) -> list[Path]:
    """Every file of the trail whose live file is ``path``: rotated ones oldest first, then it."""
    path = Path(path)
    files = [p for _, p in _rotated(path)]
    if path.exists():
        files.append(path)
    return files


def _previous_file(line: bytes) -> tuple[str, int] | None:
    """The ``previousFile`` a first line names: (file name, lines before), if any."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    found = event.get(PREVIOUS_FILE_FIELD) if isinstance(event, dict) else None
    if not isinstance(found, dict):
        return None
    name, lines = found.get("name"), found.get("lines")
    if not isinstance(name, str) or not isinstance(lines, int) or isinstance(lines, bool):
        return None
    return name, lines


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
        self,
        path: Path,
        *,
        fsync: bool = True,
        checkpoint: Checkpoint | None = None,
        max_bytes: int = AUDIT_MAX_BYTES,
    ) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        make_private_dir(self._path.parent)
        self._file = self._open_live()
        self._head, self._lines, self._end = GENESIS_HASH, 0, 0
        #: Lines of the rotated files before the live one (from its first line).
        self._base = 0
        self._cut = 0
        #: What was found wrong with the trail, for the next line to say.
        self._damage: list[str] = []
        #: A checkpoint still to be checked as lines are read.
        self._expect = checkpoint if checkpoint is not None and checkpoint.lines > 0 else None
        #: The first line of the next file to write: (previous file's name, lines before).
        self._previous: tuple[str, int] | None = None
        self._lock_live()
        try:
            self._catch_up()
        finally:
            self._unlock_live()
        if self._expect is not None:
            self._damaged(
                f"the trail has {self._lines} lines but the key service checkpointed "
                f"{self._expect.lines}: lines were cut from its end"
            )
            self._expect = None
        self._checkpointed = (self._lines, time.monotonic())

    def _open_live(self) -> Any:
        created = not self._path.exists()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if created:  # the trail's name outlives a crash, as the checkpoint of its lines does
            fsync_dir(self._path.parent)
        return os.fdopen(fd, "r+b", buffering=0)

    def _lock_live(self) -> None:
        """Take the ``flock`` of the live file, following a rotation another process made."""
        while True:
            fd = self._file.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self._path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return
            # Rotated away: take in what was appended to it before, then move to the new file.
            self._catch_up()
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._file.close()
            self._file = self._open_live()
            self._end = 0
            self._base = self._lines
            self._previous = None

    def _unlock_live(self) -> None:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _rotate(self) -> None:
        """Under the ``flock``: rename the live file to the next number; start a new one."""
        rotated = _rotated(self._path)
        number = rotated[-1][0] + 1 if rotated else 1
        target = _rotated_name(self._path, number)
        if self._fsync:
            os.fsync(self._file.fileno())
        os.rename(self._path, target)
        old = self._file
        self._file = self._open_live()  # fsyncs the folder: the rename and the new name
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        # Processes waiting on the old file's lock see it renamed and follow (_lock_live).
        fcntl.flock(old.fileno(), fcntl.LOCK_UN)
        old.close()
        self._base = self._lines
        self._end = 0
        self._previous = (target.name, self._lines)
        log.info("audit trail: %s rotated to %s", self._path, target.name)

    def _resume_from_rotated(self) -> None:
        """An empty live file after rotated ones (a crash right after a rotation): continue."""
        rotated = _rotated(self._path)
        if not rotated:
            return
        last = rotated[-1][1]
        lines = last.read_bytes().splitlines()
        if not lines:
            return
        previous = _previous_file(lines[0])
        self._lines = self._base = (previous[1] if previous is not None else 0) + len(lines)
        self._head = _line_hash(lines[-1])
        self._previous = (last.name, self._lines)
        if self._expect is not None and self._expect.lines <= self._lines:
            self._expect = None

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
        if size == 0 and self._end == 0 and self._previous is None:
            self._resume_from_rotated()
        if size == self._end:
            return
        if size < self._end:
            self._damaged(
                f"the trail shrank from {self._end} to {size} bytes "
                f"(it had {self._lines} lines) while the key service had it open"
            )
            self._head, self._lines, self._end = GENESIS_HASH, self._base, 0
        self._file.seek(self._end)
        data = self._file.read(size - self._end)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            self._cut += len(data) - keep
            os.ftruncate(fd, self._end + keep)
            os.fsync(fd)
            data = data[:keep]
        lines = data.splitlines()
        if self._end == 0 and lines:
            # A live file that continues rotated ones says how many lines came before.
            previous = _previous_file(lines[0])
            self._base = self._lines = previous[1] if previous is not None else 0
            self._previous = None
        expect = self._expect
        if expect is not None and expect.lines <= self._lines:
            self._expect = None  # checkpointed in a rotated file: verify_audit checks it
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
            self._lock_live()
            try:
                self._append(event)
            finally:
                self._unlock_live()

    def _append(self, event: dict[str, Any]) -> None:
        self._catch_up()
        if self._cut or self._damage:
            extra = dict(event.get("additionalEventData") or {})
            if self._cut:
                extra["truncatedTailBytes"] = self._cut
            if self._damage:
                extra[DAMAGE_FIELD] = list(self._damage)
            event = {**event, "additionalEventData": extra}
        line = self._encode(event)
        if self._end > 0 and self._end + len(line) + 1 > self._max_bytes:
            self._rotate()
            line = self._encode(event)
        self._file.write(line + b"\n")
        if self._fsync:
            os.fsync(self._file.fileno())
        self._cut = 0
        self._damage = []
        self._head = _line_hash(line)
        self._lines += 1
        self._end += len(line) + 1

    def _encode(self, event: dict[str, Any]) -> bytes:
        doc = {**event, "previousHash": self._head}
        if self._end == 0 and self._previous is not None:
            name, lines = self._previous
            doc[PREVIOUS_FILE_FIELD] = {"name": name, "lines": lines}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()

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
    """Check the chain of a whole trail: ``(ok, first bad line number (1-based), reason)``.

    ``path`` is the live file; its rotated files (``kms.000001.jsonl`` ...) are
    read first, oldest first, and line numbers count across all of them. A line
    whose ``previousHash`` does not match the line before it means that line or
    its predecessor was edited, a line between them was removed, or the lines
    were reordered; a file whose first line names another predecessor
    (``previousFile``) than the file before it, or a gap in the numbers, means a
    file was removed, renamed or put back from elsewhere. With ``checkpoint``
    (the key service's, from its sealed keystore) the trail must reach line
    ``checkpoint.lines`` and that line must hash to ``checkpoint.head``; more
    lines may follow. With ``expected_head`` the last line must hash to it. Both
    detect lines cut from the end. A line in which the key service recorded
    damage it found (``additionalEventData.auditTrailDamage``) fails too.
    """
    path = Path(path)
    rotated = _rotated(path)
    for expected_number, (number, _) in enumerate(rotated, start=1):
        if number != expected_number:
            missing = _rotated_name(path, expected_number).name
            return False, None, f"{missing} is missing: the trail's files must all be present"
    files = [p for _, p in rotated] + [path]
    expected = GENESIS_HASH
    total = 0
    damage: tuple[int, str] | None = None
    at_checkpoint: str | None = None
    previous_name: str | None = None
    for file in files:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            if file == path and rotated:
                continue  # rotated, and stopped before the new live file's first line
            return False, None, f"cannot read {file}: no such file"
        except OSError as exc:
            return False, None, f"cannot read {file}: {exc.strerror}"
        lines = data.splitlines()
        if data and not data.endswith(b"\n"):
            return False, total + len(lines), f"{file.name}: the last line is incomplete"
        if lines:
            named = _previous_file(lines[0])
            if previous_name is None and named is not None:
                return (
                    False,
                    total + 1,
                    f"{file.name} continues {named[0]}, which is missing: "
                    "the trail's first files were removed",
                )
            if previous_name is not None and named != (previous_name, total):
                said = f"{named[0]} after {named[1]} lines" if named else "no file"
                return (
                    False,
                    total + 1,
                    f"{file.name} continues {said}, not {previous_name} after {total} lines: "
                    "a file was removed, replaced or reordered",
                )
        for offset, line in enumerate(lines, start=1):
            number = total + offset
            try:
                event = json.loads(line)
            except ValueError:
                return False, number, f"{file.name} line {offset}: not a JSON line"
            if not isinstance(event, dict):
                return False, number, f"{file.name} line {offset}: not a JSON object"
            if event.get("previousHash") != expected:
                what = "the start of the trail" if number == 1 else f"line {number - 1}"
                return (
                    False,
                    number,
                    f"{file.name} line {offset}: previousHash does not match {what}: "
                    "a line was edited, removed or reordered",
                )
            expected = _line_hash(line)
            if checkpoint is not None and number == checkpoint.lines:
                at_checkpoint = expected
            extra = event.get("additionalEventData")
            if damage is None and isinstance(extra, dict) and extra.get(DAMAGE_FIELD):
                found = extra[DAMAGE_FIELD]
                said = "; ".join(map(str, found)) if isinstance(found, list) else str(found)
                damage = (
                    number,
                    f"the key service found the trail damaged before this line: {said}",
                )
        total += len(lines)
        previous_name = file.name
    problems: list[tuple[int, str]] = [] if damage is None else [damage]
    if checkpoint is not None and checkpoint.lines > total:
        problems.append(
            (
                total + 1,
                f"the trail ends at line {total} but the key service checkpointed "
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
            (total + 1, "the trail does not end at the expected head: lines are missing")
        )
    if problems:
        line_number, reason = min(problems, key=lambda problem: problem[0])
        return False, line_number, reason
    return True, None, ""
