"""``[tls]`` client certificates per listener, the replaced keys, ``[[certificate_users]]``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.config import CertificateUserSettings, ClientAuth, ConfigError, Settings, load_settings


def load(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "devices.pem").write_text("x")
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={})


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return {p.key: p.reason for p in info.value.problems}


def test_a_default_and_per_listener_modes(tmp_path: Path) -> None:
    tls = load(
        tmp_path,
        """
[tls]
client_ca = "ca.pem"
client_auth = "optional"
[tls.listeners.mqtt]
client_auth = "required"
client_ca = "devices.pem"
[tls.listeners.wss]
client_auth = "none"
""",
    ).tls
    assert tls.client_auth_for("stomp") == ClientAuth("optional", tmp_path / "ca.pem")
    assert tls.client_auth_for("mqtt") == ClientAuth("required", tmp_path / "devices.pem")
    assert tls.client_auth_for("wss").mode == "none"
    assert not tls.legacy_client_keys


def test_the_replaced_keys_keep_meaning_what_they_meant(tmp_path: Path) -> None:
    assert load(tmp_path, "").tls.client_auth_for("stomp") == ClientAuth()
    tls = load(tmp_path, '[tls]\nca = "ca.pem"\n').tls
    assert tls.client_auth_for("stomp") == ClientAuth("optional", tmp_path / "ca.pem")
    assert tls.legacy_client_keys
    tls = load(tmp_path, '[tls]\nca = "ca.pem"\nrequire_client_cert = true\n').tls
    assert tls.client_auth_for("mqtt") == ClientAuth("required", tmp_path / "ca.pem")


def test_mixing_old_and_new_or_a_mode_without_a_ca_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[tls]\nca = "ca.pem"\nclient_ca = "ca.pem"\nrequire_client_cert = true\n'
        'client_auth = "required"\n',
    )
    assert found["tls.ca"] == "replaced by tls.client_ca: give only client_ca"
    assert found["tls.require_client_cert"].startswith("replaced by tls.client_auth")
    found = problems(tmp_path, '[tls.listeners.stomp]\nclient_auth = "required"\n')
    assert found["tls.listeners.stomp.client_ca"].startswith('client_auth = "required" needs')
    found = problems(tmp_path, '[tls]\nclient_auth = "sometimes"\n[tls.listeners.nope]\n')
    assert found["tls.client_auth"].startswith('must be one of "none", "optional", "required"')
    assert found["tls.listeners.nope"].startswith("unknown key")


def test_certificate_users(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
[[certificate_users]]
subject = "CN=app,O=Example"
username = "app"
groups = ["apps"]
[[certificate_users]]
san = "DNS:device-1.example"
username = "device-1"
""",
    )
    assert settings.certificate_users == (
        CertificateUserSettings("app", "CN=app,O=Example", None, frozenset({"apps"})),
        CertificateUserSettings("device-1", None, "DNS:device-1.example"),
    )
    found = problems(
        tmp_path,
        """
[[certificate_users]]
username = "x"
[[certificate_users]]
subject = "CN=a"
san = "DNS:a"
username = "y"
[[certificate_users]]
san = "dns-a"
""",
    )
    assert found["certificate_users[0].subject"] == "give exactly one of subject and san"
    assert found["certificate_users[1].subject"] == "give exactly one of subject and san"
    assert found["certificate_users[2].username"] == "required"
    assert found["certificate_users[2].san"].startswith('must be "DNS:..."')
