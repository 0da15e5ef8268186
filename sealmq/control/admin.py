"""The generated ``admin`` password, kept readable by the operator until it is changed.

With no ``[[users]]`` configured, the first start creates the user ``admin`` with a
random password. The broker stores the user only as an argon2 hash inside an
encrypted file, so the password itself would exist only in the start message; a
start that fails after creating the user (a port already taken) would lock the
operator out. So the password is also written to ``<data_dir>/admin-password``
(0600, in the 0700 data folder, like the key service's ``credentials``), before
the user is stored, and every start prints it again while that file is there.

The file goes as soon as the password it holds is no longer the admin's: when
configured ``[[users]]`` replace the generated admin, or when the stored admin's
hash no longer matches it. Nothing else writes or logs the password.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from sealmq.core.security import UserRecord, verify_password
from sealmq.kms.files import PrivateFileError, fsync_dir, read_private_file, replace_private_file

__all__ = [
    "ADMIN_PASSWORD_FILE",
    "ADMIN_USER",
    "RECOVERY_HINT",
    "forget_generated_password",
    "generated_password",
    "password_file",
    "remember_generated_password",
]

log = logging.getLogger("sealmq.control")

ADMIN_USER = "admin"
ADMIN_PASSWORD_FILE = "admin-password"

#: How to get in again without the password (printed next to it; the README says more).
RECOVERY_HINT = (
    "If it is ever lost: stop the broker, add [[users]] entries with new passwords to "
    "the configuration file (they replace 'admin'), and start it again "
    "(README: Users and a lost admin password)."
)


def password_file(data_dir: Path) -> Path:
    """Where the generated admin password is kept: ``<data_dir>/admin-password``."""
    return Path(data_dir) / ADMIN_PASSWORD_FILE


def remember_generated_password(data_dir: Path, password: str) -> Path:
    """Keep ``password`` in the 0600 password file, durably; call before storing the user."""
    path = password_file(data_dir)
    replace_private_file(path, (password + "\n").encode())
    return path


def generated_password(data_dir: Path, records: Iterable[UserRecord]) -> str | None:
    """The kept password if it still logs ``admin`` in, else None (a stale file is removed).

    Costs one argon2 verify when the file exists.
    """
    path = password_file(data_dir)
    if not path.exists():
        return None
    try:
        password = read_private_file(path).decode().strip()
    except (PrivateFileError, UnicodeDecodeError) as exc:
        log.warning("not using the generated admin password: %s", exc)
        return None
    admin = next((record for record in records if record.username == ADMIN_USER), None)
    if password and admin is not None and verify_password(admin.password_hash, password):
        return password
    forget_generated_password(data_dir, why="it is no longer the password of 'admin'")
    return None


def forget_generated_password(data_dir: Path, *, why: str) -> bool:
    """Remove the password file, if any (``why`` is logged); True if there was one."""
    path = password_file(data_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
    log.info("removed %s: %s", path, why)
    return True
