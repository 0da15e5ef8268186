"""``[security]``: password hashing costs, production defaults, every problem at once."""

from __future__ import annotations

from pathlib import Path

import argon2
import pytest

from sealmq.config import ConfigError, SecuritySettings, Settings, load_settings


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={})


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return {p.key: p.reason for p in info.value.problems}


def test_defaults_are_argon2_cffis_rfc_9106_low_memory_profile(tmp_path: Path) -> None:
    profile = argon2.profiles.RFC_9106_LOW_MEMORY
    for security in (SecuritySettings(), load(tmp_path, "").security, Settings(tmp_path).security):
        assert security.password_hash_time_cost == profile.time_cost == 3
        assert security.password_hash_memory_kib == profile.memory_cost == 65536
        assert security.password_hash_parallelism == profile.parallelism == 4
        assert not security.weaker_than_default
    hasher = argon2.PasswordHasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 65536, 4)


def test_cheap_costs_are_read_and_flagged(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[security]\npassword_hash_time_cost = 1\npassword_hash_memory_kib = 64\n"
        "password_hash_parallelism = 1\n",
    )
    assert settings.security == SecuritySettings(1, 64, 1)
    assert settings.security.weaker_than_default


def test_higher_costs_are_not_flagged(tmp_path: Path) -> None:
    settings = load(tmp_path, "[security]\npassword_hash_memory_kib = 131072\n")
    assert settings.security == SecuritySettings(3, 131072, 4)
    assert not settings.security.weaker_than_default


def test_every_problem_is_reported(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "[security]\npassword_hash_time_cost = 0\npassword_hash_memory_kib = 4\n"
        'password_hash_parallelism = "4"\npassword_cost = 1\n',
    )
    assert found == {
        "security.password_hash_time_cost": "must be between 1 and 64, got 0",
        "security.password_hash_memory_kib": "must be between 8 and 4194304 KiB, got 4",
        "security.password_hash_parallelism": "expected an integer, got a string",
        "security.password_cost": "unknown key (did you mean 'password_hash_time_cost'?)",
    }


def test_memory_must_cover_every_lane(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "[security]\npassword_hash_memory_kib = 16\npassword_hash_parallelism = 4\n"
    )
    assert found == {
        "security.password_hash_memory_kib": (
            "argon2 needs at least 8 KiB per lane (32 for password_hash_parallelism = 4), got 16"
        )
    }
