"""The ``[websocket]`` table: the wss listener's limits and origin checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealmq.config import ConfigError, WebSocketSettings, load_settings


def load(tmp_path: Path, text: str) -> WebSocketSettings:
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={}).websocket


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings == WebSocketSettings()
    assert settings.allowed_origins == ()  # every origin
    assert settings.permessage_deflate is False
    # The largest STOMP frame [limits] allows fits in one message.
    assert settings.max_message_size >= 100 * 1024 * 1024 + 64 * 1024


def test_every_key(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[websocket]\n"
        'allowed_origins = ["https://app.example.com", "http://localhost:8080"]\n'
        "max_message_size = 65536\n"
        "max_handshake_size = 8192\n"
        "handshake_timeout = 2.5\n"
        "permessage_deflate = true\n",
    )
    assert settings == WebSocketSettings(
        allowed_origins=("https://app.example.com", "http://localhost:8080"),
        max_message_size=65536,
        max_handshake_size=8192,
        handshake_timeout=2.5,
        permessage_deflate=True,
    )


def test_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sealmq.toml"
    path.write_text(
        "[websocket]\n"
        'allowed_origins = ["https://app.example.com/path"]\n'
        "max_message_size = 10\n"
        "max_handshake_size = 1e9\n"
        "handshake_timeout = 0\n"
        'permessage_deflate = "yes"\n'
        "max_frame = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    found = {problem.key: problem.reason for problem in info.value.problems}
    assert "no path" in found["websocket.allowed_origins"]
    assert "between 1024 and" in found["websocket.max_message_size"]
    assert "expected an integer" in found["websocket.max_handshake_size"]
    assert "more than 0" in found["websocket.handshake_timeout"]
    assert "true or false" in found["websocket.permessage_deflate"]
    assert "unknown key" in found["websocket.max_frame"]


@pytest.mark.parametrize("value", ['"https://a.example"', "[1]", '["a.example"]'])
def test_origins_are_a_list_of_scheme_host(tmp_path: Path, value: str) -> None:
    path = tmp_path / "sealmq.toml"
    path.write_text(f"[websocket]\nallowed_origins = {value}\n")
    with pytest.raises(ConfigError, match=r"websocket\.allowed_origins"):
        load_settings(path, env={})


def test_the_docs_show_the_defaults(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"
    blocks = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.S)
    assert blocks
    for block in blocks:
        assert load(tmp_path, block) == WebSocketSettings()
