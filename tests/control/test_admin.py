"""The generated admin password file (``sealmq.control.admin``)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import argon2
import pytest

from sealmq.control.admin import (
    forget_generated_password,
    generated_password,
    password_file,
    remember_generated_password,
)
from sealmq.core.security import UserRecord

_CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _admin(password: str) -> UserRecord:
    return UserRecord.create("admin", password, hasher=_CHEAP)


def test_the_kept_password_is_private_and_given_back_while_it_is_the_admins(
    tmp_path: Path,
) -> None:
    path = remember_generated_password(tmp_path, "s3cret-generated")
    assert path == password_file(tmp_path) == tmp_path / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin-password"]  # no temp file left
    records = [UserRecord.create("app", "other", hasher=_CHEAP), _admin("s3cret-generated")]
    assert generated_password(tmp_path, records) == "s3cret-generated"
    assert path.exists()


def test_a_password_that_is_no_longer_the_admins_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    remember_generated_password(tmp_path, "s3cret-generated")
    with caplog.at_level(logging.INFO, logger="sealmq.control"):
        assert generated_password(tmp_path, [_admin("changed-since")]) is None
    assert not password_file(tmp_path).exists()
    assert "no longer the password of 'admin'" in caplog.text
    assert "s3cret-generated" not in caplog.text

    remember_generated_password(tmp_path, "s3cret-generated")
    assert generated_password(tmp_path, [UserRecord.create("app", "x", hasher=_CHEAP)]) is None
    assert not password_file(tmp_path).exists()


def test_a_password_file_others_may_read_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = remember_generated_password(tmp_path, "s3cret-generated")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="sealmq.control"):
        assert generated_password(tmp_path, [_admin("s3cret-generated")]) is None
    assert "chmod 600" in caplog.text
    assert "s3cret-generated" not in caplog.text


def test_forgetting_is_idempotent(tmp_path: Path) -> None:
    assert generated_password(tmp_path, []) is None
    assert forget_generated_password(tmp_path, why="test") is False
    remember_generated_password(tmp_path, "p")
    assert forget_generated_password(tmp_path, why="test") is True
    assert not password_file(tmp_path).exists()
