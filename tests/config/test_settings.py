"""Settings dataclasses: defaults a newcomer gets and the documented accessors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sealmq.config import DEFAULT_TLS_PORTS, KNOWN_LISTENERS, Listener, Settings, UserSettings


def test_defaults_are_amazon_mq_tls_ports(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.listener_ports() == {
        "openwire": 61617,
        "amqp": 5671,
        "stomp": 61614,
        "mqtt": 8883,
        "wss": 61619,
        "console": 8162,
        "kms": 9443,
    }
    assert settings.listener_ports(tls=False) == {}
    assert set(DEFAULT_TLS_PORTS) == set(KNOWN_LISTENERS)
    assert all(listener.tls for listener in settings.listeners)
    assert settings.tls.generate
    assert settings.tls_dir == tmp_path / "tls"


def test_data_dir_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir=Path("d")).data_dir == tmp_path / "d"


def test_with_free_ports_and_listener_lookup(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        listeners=(Listener("stomp", 61614), Listener("stomp", 61613, tls=False)),
    ).with_free_ports()
    assert settings.listener("stomp") == Listener("stomp", 0, True)
    assert settings.listener("stomp", tls=False) == Listener("stomp", 0, False)
    assert settings.listener("mqtt") is None


def test_frozen_and_password_not_in_repr(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, users=(UserSettings("app", "hunter2-secret"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.host = "x"  # type: ignore[misc]
    assert "hunter2-secret" not in repr(settings)
    hash(settings)  # usable as a dict key / in sets


@pytest.mark.parametrize(
    ("bind", "given", "expected"),
    [
        ("0.0.0.0", None, "127.0.0.1"),
        ("::", None, "127.0.0.1"),
        ("10.1.2.3", None, "10.1.2.3"),
        ("::1", None, "[::1]"),
        ("0.0.0.0", "broker.example", "broker.example"),
        ("0.0.0.0", "fe80::1", "[fe80::1]"),
    ],
)
def test_url_host_is_what_local_clients_put_in_a_url(
    tmp_path: Path, bind: str, given: str | None, expected: str
) -> None:
    assert Settings(data_dir=tmp_path, host=bind).url_host(given) == expected
