"""The broker's state as Amazon MQ reports it, the status file, and the run lock.

States are Amazon MQ's ``BrokerState`` values (plus ``STOPPED`` for a data
folder no process serves); ``actionsRequired`` entries are
``{"ActionRequiredCode", "ActionRequiredInfo"}`` as in DescribeBroker.

``<data_dir>/status.json`` (0600) is rewritten atomically by the broker on every
change of state, so ``sealmq status`` answers while the broker runs without
talking to it. It holds the broker id, state, actions required, the process id
and key ids: nothing a client sent.

``<data_dir>/run.lock`` is ``flock``-ed by ``sealmq serve`` for the life of the
process (the store's own ``lock`` is released while the broker waits in
``CRITICAL_ACTION_REQUIRED``), so commands that must not run next to a broker
(``broker delete``, an offline ``rotate-data-keys``) can tell.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealmq.kms.files import replace_private_file

__all__ = [
    "ACTION_INVALID_KMS_KEY",
    "ACTION_KMS_UNREACHABLE",
    "CREATION_IN_PROGRESS",
    "CRITICAL_ACTION_REQUIRED",
    "DELETION_IN_PROGRESS",
    "REBOOT_IN_PROGRESS",
    "RUNNING",
    "RUN_LOCK_FILE",
    "STATUS_FILE",
    "STOPPED",
    "ActionRequired",
    "BrokerRunningError",
    "RunLock",
    "is_running",
    "read_status",
    "write_json_private",
    "write_status",
]

CREATION_IN_PROGRESS = "CREATION_IN_PROGRESS"
RUNNING = "RUNNING"
REBOOT_IN_PROGRESS = "REBOOT_IN_PROGRESS"
CRITICAL_ACTION_REQUIRED = "CRITICAL_ACTION_REQUIRED"
DELETION_IN_PROGRESS = "DELETION_IN_PROGRESS"
#: Not an Amazon MQ state: no process serves this data folder.
STOPPED = "STOPPED"

#: The key service refuses the broker's key (grant revoked, key disabled or pending
#: deletion, key gone).
ACTION_INVALID_KMS_KEY = "INVALID_KMS_KEY"
#: The key service could not be reached within the retry budget.
ACTION_KMS_UNREACHABLE = "KMS_KEY_UNREACHABLE"

STATUS_FILE = "status.json"
RUN_LOCK_FILE = "run.lock"


@dataclass(frozen=True, slots=True)
class ActionRequired:
    """What the operator must do, as Amazon MQ's ``actionsRequired`` says it."""

    code: str
    info: str

    def to_doc(self) -> dict[str, str]:
        return {"ActionRequiredCode": self.code, "ActionRequiredInfo": self.info}


class BrokerRunningError(Exception):
    """A broker process serves this data folder; stop it first."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_private(path: Path, doc: dict[str, Any], *, durable: bool = True) -> None:
    """Replace ``path`` with ``doc`` as JSON, atomically, mode 0600.

    ``durable`` also fsyncs the file and its folder (a status that a crash may
    take back a step needs neither).
    """
    data = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
    replace_private_file(path, data, durable=durable)


def write_status(
    data_dir: Path,
    *,
    broker_id: str,
    state: str,
    actions: list[ActionRequired],
    encryption: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Record the broker's state in ``<data_dir>/status.json``."""
    doc: dict[str, Any] = {
        "BrokerId": broker_id,
        "BrokerState": state,
        "ActionsRequired": [action.to_doc() for action in actions],
        **encryption,
        "Pid": os.getpid(),
        "Updated": _now_iso(),
    }
    if extra:
        doc.update(extra)
    # Rewritten at every change of state and read back by nobody after a crash (the
    # run lock then says STOPPED): atomic, not durable.
    write_json_private(Path(data_dir) / STATUS_FILE, doc, durable=False)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last state the broker recorded, or None if it never wrote one."""
    try:
        doc = json.loads((Path(data_dir) / STATUS_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class RunLock:
    """Holds ``<data_dir>/run.lock`` from construction until :meth:`release`.

    Raises :class:`BrokerRunningError` if another process (or another RunLock in
    this one) holds it.
    """

    def __init__(self, data_dir: Path, *, what: str = "a broker") -> None:
        self.path = Path(data_dir) / RUN_LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BrokerRunningError(
                f"{what} is running on {Path(data_dir)} (it holds {self.path}); stop it first"
            ) from None
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_running(data_dir: Path) -> bool:
    """Whether a process holds the data folder's run lock right now."""
    path = Path(data_dir) / RUN_LOCK_FILE
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
