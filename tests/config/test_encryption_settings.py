"""``[encryption]`` key choice and external KMS, and ``[kms]``: values and every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.config import ConfigError, KmsSettings, load_settings


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={})


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return {p.key: p.reason for p in info.value.problems}


@pytest.mark.parametrize(
    "key",
    [
        "managed",
        "owned",
        "alias/orders",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:alias/orders",
    ],
)
def test_kms_key_forms(tmp_path: Path, key: str) -> None:
    settings = load(tmp_path, f'[encryption]\nkms_key = "{key}"\n')
    assert settings.encryption.kms_key == key  # type: ignore[attr-defined]
    assert not settings.encryption.external  # type: ignore[attr-defined]


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.encryption.kms_key is None  # type: ignore[attr-defined]
    assert settings.kms == KmsSettings()  # type: ignore[attr-defined]
    assert settings.kms_dir == settings.data_dir  # type: ignore[attr-defined]
    assert settings.listener("kms").port == 9443  # type: ignore[attr-defined]


def test_external_kms_and_kms_table(tmp_path: Path) -> None:
    (tmp_path / "creds").write_text("")
    (tmp_path / "ca.pem").write_text("")
    settings = load(
        tmp_path,
        "\n".join(
            [
                "[encryption]",
                'kms_endpoint = "https://kms.eu-west-1.amazonaws.com"',
                'kms_key = "alias/orders"',
                'kms_region = "eu-west-1"',
                'kms_credentials_file = "creds"',
                'kms_profile = "prod"',
                'kms_ca_bundle = "ca.pem"',
                "[kms]",
                'region = "eu-central-1"',
                'account_id = "012345678901"',
                "min_pending_window_days = 1",
                'data_dir = "keys-here"',
            ]
        ),
    )
    enc = settings.encryption  # type: ignore[attr-defined]
    assert enc.external and enc.kms_region == "eu-west-1" and enc.kms_profile == "prod"
    assert enc.kms_credentials_file == tmp_path / "creds"
    assert enc.kms_ca_bundle == tmp_path / "ca.pem"
    assert settings.kms == KmsSettings(  # type: ignore[attr-defined]
        region="eu-central-1",
        account_id="012345678901",
        min_pending_window_days=1,
        data_dir=tmp_path / "keys-here",
    )
    assert settings.kms_dir == tmp_path / "keys-here"  # type: ignore[attr-defined]


def test_every_problem_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "\n".join(
            [
                "[encryption]",
                'kms_key = "my key"',
                'kms_endpoint = "http://kms.local"',
                'kms_access_key_id = "AKIA"',
                'kms_credentials_file = "missing"',
                "[kms]",
                'region = "Mars"',
                "account_id = 123456789012",
                "min_pending_window_days = 0",
                "colour = 1",
            ]
        ),
    )
    assert "alias name" in found["encryption.kms_key"]
    assert "https://" in found["encryption.kms_endpoint"]
    assert "other half" in found["encryption.kms_secret_access_key"]
    assert "file not found" in found["encryption.kms_credentials_file"]
    assert "region" in found["kms.region"]
    assert "string of exactly 12 digits" in found["kms.account_id"]
    assert "an integer" in found["kms.account_id"]
    assert "between 1 and 7" in found["kms.min_pending_window_days"]
    assert "unknown key" in found["kms.colour"]


def test_external_needs_a_customer_key_and_options_need_the_endpoint(tmp_path: Path) -> None:
    found = problems(tmp_path, '[encryption]\nkms_endpoint = "https://x"\nkms_key = "managed"\n')
    assert "customer managed key" in found["encryption.kms_key"]
    found = problems(tmp_path, '[encryption]\nkms_endpoint = "https://x"\n')
    assert "required with kms_endpoint" in found["encryption.kms_key"]
    found = problems(tmp_path, '[encryption]\nkms_profile = "p"\n')
    assert "only used with encryption.kms_endpoint" in found["encryption.kms_profile"]


@pytest.mark.parametrize(
    "value",
    ['"12345678901"', '"1234567890123"', '"12345678901x"', '""', '"１２３４５６７８９０１２"'],
)
def test_an_account_id_is_twelve_digits(tmp_path: Path, value: str) -> None:
    found = problems(tmp_path, f"[kms]\naccount_id = {value}\n")
    assert list(found) == ["kms.account_id"]
    assert "exactly 12 digits" in found["kms.account_id"]


def test_no_account_id_means_one_is_generated(tmp_path: Path) -> None:
    assert load(tmp_path, "[kms]\n").kms.account_id is None  # type: ignore[attr-defined]
    settings = load(tmp_path, '[kms]\naccount_id = "000000000042"\n')
    assert settings.kms.account_id == "000000000042"  # type: ignore[attr-defined]


def test_the_store_clients_bounds_and_the_audit_size(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "\n".join(
            [
                "[encryption]",
                'kms_endpoint = "https://kms.eu-west-1.amazonaws.com"',
                'kms_key = "alias/orders"',
                "kms_connect_timeout = 0.5",
                "kms_read_timeout = 4",
                "kms_max_attempts = 1",
                "[kms]",
                "audit_max_bytes = 1048576",
            ]
        ),
    )
    enc = settings.encryption  # type: ignore[attr-defined]
    assert (enc.kms_connect_timeout, enc.kms_read_timeout, enc.kms_max_attempts) == (0.5, 4.0, 1)
    assert settings.kms.audit_max_bytes == 1048576  # type: ignore[attr-defined]
    defaults = load(tmp_path, "")
    assert defaults.kms.audit_max_bytes == 64 * 1024 * 1024  # type: ignore[attr-defined]
    found = problems(
        tmp_path,
        "\n".join(
            [
                "[encryption]",
                'kms_endpoint = "https://x"',
                'kms_key = "alias/x"',
                "kms_connect_timeout = 0",
                'kms_read_timeout = "2"',
                "kms_max_attempts = 0",
                "[kms]",
                "audit_max_bytes = 100",
            ]
        ),
    )
    assert "more than 0" in found["encryption.kms_connect_timeout"]
    assert "number of seconds" in found["encryption.kms_read_timeout"]
    assert "between 1 and 10" in found["encryption.kms_max_attempts"]
    assert "kms.audit_max_bytes" in found
    found = problems(tmp_path, "[encryption]\nkms_read_timeout = 1\n")
    assert "only used with encryption.kms_endpoint" in found["encryption.kms_read_timeout"]
