"""The TOML loader: every key, every kind of error reported at once with file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.config import (
    ConfigError,
    ConfigProblem,
    Listener,
    Settings,
    UserSettings,
    load_settings,
)


def write(folder: Path, text: str, name: str = "sealmq.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    found = {problem.key: problem.reason for problem in info.value.problems}
    # str() lists each problem as "<file>: <key>: <reason>".
    for problem in info.value.problems:
        assert f"{path}: {problem.key}: {problem.reason}" in str(info.value).splitlines()
    return found


def test_pure_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings == Settings(data_dir=tmp_path / "data")
    assert settings.data_dir.is_absolute()
    assert settings.config_file is None
    assert settings.limits.max_frame_body == 100 * 1024 * 1024
    assert settings.policy.default_prefetch == 1000
    assert settings.policy.dead_letter_queue == "ActiveMQ.DLQ"


def test_data_dir_override_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    conf = write(tmp_path, 'data_dir = "from-file"\n')
    assert load_settings(None, data_dir=Path("x"), env={}).data_dir == tmp_path / "x"
    assert load_settings(conf, data_dir=Path("y"), env={}).data_dir == tmp_path / "y"


def test_sealmq_config_env(tmp_path: Path) -> None:
    conf = write(tmp_path, 'log_level = "DEBUG"\n')
    settings = load_settings(None, env={"SEALMQ_CONFIG": str(conf)})
    assert settings.log_level == "debug"
    assert settings.config_file == conf
    # An explicit path wins over the environment.
    other = write(tmp_path, 'log_level = "error"\n', "other.toml")
    assert load_settings(other, env={"SEALMQ_CONFIG": str(conf)}).log_level == "error"


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_file_named(tmp_path: Path, via_env: bool) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        if via_env:
            load_settings(None, env={"SEALMQ_CONFIG": str(missing)})
        else:
            load_settings(missing, env={})
    assert str(info.value) == f"{missing}: configuration file not found"


def test_invalid_toml(tmp_path: Path) -> None:
    conf = write(tmp_path, "host = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(conf, env={})
    assert str(info.value).startswith(f"{conf}: invalid TOML:")
    assert "line 1" in str(info.value)


FULL = """
data_dir = "state"
host = "127.0.0.1"
log_level = "warning"

[listeners]
stomp = 0
mqtt = 18883
amqp = false
openwire = 0
wss = 0
console = false
kms = 19443

[listeners.plain]
stomp = 61613
mqtt = 0

[tls]
cert = "certs/server.pem"
key = "certs/server.key"
ca = "/ABS/ca.pem"
require_client_cert = true

[[users]]
username = "app"
password = "app-secret-12"
groups = ["admins", "apps"]

[[users]]
username = "reader"
password = "another-secret"

[limits]
max_frame_body = 1048576
max_frame_headers = 8192

[store]
segment_size = 4194304
confirmed_sync_seconds = 0.25

[encryption]
data_key_cache_seconds = 1.5

[policy]
maximum_redeliveries = -1
dead_letter_queue = "MY.DLQ"
redelivery_delay_ms = 250
default_prefetch = 10
"""


def test_every_key(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("server.pem", "server.key"):
        (tmp_path / "certs" / name).write_text("x")
    abs_dir = tmp_path / "abs"
    abs_dir.mkdir()
    (abs_dir / "ca.pem").write_text("x")
    conf = write(tmp_path, FULL.replace("/ABS", str(abs_dir)))

    settings = load_settings(conf, env={})

    assert settings.data_dir == tmp_path / "state"  # relative to the file's folder
    assert settings.host == "127.0.0.1"
    assert settings.log_level == "warning"
    assert settings.listeners == (
        Listener("openwire", 0),
        Listener("stomp", 0),
        Listener("mqtt", 18883),
        Listener("wss", 0),
        Listener("kms", 19443),
        Listener("stomp", 61613, tls=False),
        Listener("mqtt", 0, tls=False),
    )
    assert settings.listener_ports() == {
        "openwire": 0,
        "stomp": 0,
        "mqtt": 18883,
        "wss": 0,
        "kms": 19443,
    }
    assert settings.listener_ports(tls=False) == {"stomp": 61613, "mqtt": 0}
    assert settings.tls.cert == tmp_path / "certs" / "server.pem"
    assert settings.tls.key == tmp_path / "certs" / "server.key"
    assert settings.tls.ca == abs_dir / "ca.pem"
    assert settings.tls.require_client_cert
    assert not settings.tls.generate
    assert settings.users == (
        UserSettings("app", "app-secret-12", frozenset({"admins", "apps"})),
        UserSettings("reader", "another-secret", frozenset()),
    )
    assert settings.limits.max_frame_body == 1048576
    assert settings.limits.max_frame_headers == 8192
    assert settings.store.segment_size == 4194304
    assert settings.store.confirmed_sync_seconds == 0.25
    assert settings.encryption.data_key_cache_seconds == 1.5
    assert settings.policy.maximum_redeliveries == -1
    assert settings.policy.dead_letter_queue == "MY.DLQ"
    assert settings.policy.redelivery_delay_ms == 250
    assert settings.policy.default_prefetch == 10
    assert settings.config_file == conf


def test_relative_cert_paths_resolved_from_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "s.pem").write_text("x")
    (etc / "s.key").write_text("x")
    conf = write(etc, '[tls]\ncert = "s.pem"\nkey = "./s.key"\n')
    monkeypatch.chdir(tmp_path)  # not the config folder
    settings = load_settings(Path("etc/sealmq.toml"), env={})
    assert settings.tls.cert == etc / "s.pem"
    assert settings.tls.key == etc / "s.key"
    assert settings.config_file == conf
    assert settings.data_dir == tmp_path / "data"  # the default stays relative to the CWD


BAD = """
data_dir = 5
hots = "x"
log_level = "verbose"
host = "not a host"

[listeners]
stomp = 70000
mqtt = true
amqp = "5671"
smtp = 25
console = 5000
kms = 5000

[listeners.plain]
stomp = -1
mqtt = 61617
ftp = 21

[tls]
cert = "missing.pem"
ca = "nope.pem"
require_client_cert = "yes"
ciphers = "ALL"

[[users]]
username = "app"
password = ""

[[users]]
username = "app"
password = "x"
groups = "admins"

[[users]]
username = "bad name!"
password = 7
colour = "blue"

[[users]]
groups = [1]

[limits]
max_frame_body = 0
max_frame_headers = 1.5

[store]
segment_size = 10
confirmed_sync_seconds = -1

[encryption]
data_key_cache_seconds = 0

[policy]
maximum_redeliveries = -2
dead_letter_queue = "DLQ.>"
redelivery_delay_ms = true
default_prefetch = -5

[extra]
"""


def test_every_problem_reported_together(tmp_path: Path) -> None:
    found = problems(write(tmp_path, BAD))
    expected = {
        "data_dir": "expected a string",
        "hots": "unknown key (did you mean 'host'?)",
        "log_level": "must be one of debug, info, warning, error, critical",
        "host": "not an IP address or host name",
        "listeners.stomp": "port must be between 0 and 65535",
        "listeners.mqtt": "expected a port number or false",
        "listeners.amqp": "expected a port number or false (disabled), got a string",
        "listeners.smtp": "unknown key",
        "listeners.kms": "port 5000 is already used by listeners.console",
        "listeners.plain.mqtt": "port 61617 is already used by listeners.openwire",
        "listeners.plain.stomp": "port must be between 0 and 65535",
        "listeners.plain.ftp": "unknown key",
        "tls.cert": "file not found:",
        "tls.key": "required when tls.cert is set",
        "tls.ca": "file not found:",
        "tls.require_client_cert": "expected true or false",
        "tls.ciphers": "unknown key",
        "users[0].password": "must not be empty",
        "users[1].username": "duplicate of users[0].username ('app')",
        "users[1].password": "a password needs at least 12 characters",
        "users[1].groups": "expected an array of group names",
        "users[2].username": "must be 1-100 characters",
        "users[2].password": "expected a string, got an integer",
        "users[2].colour": "unknown key",
        "users[3].username": "required",
        "users[3].password": "required",
        "users[3].groups": "group names must be strings",
        "limits.max_frame_body": "must be between 1 and",
        "limits.max_frame_headers": "expected an integer, got a number",
        "store.segment_size": "must be between 4096 and",
        "store.confirmed_sync_seconds": "must be between 0 and 3600 seconds",
        "encryption.data_key_cache_seconds": "must be more than 0",
        "policy.maximum_redeliveries": "must be between -1 and",
        "policy.dead_letter_queue": "without wildcards",
        "policy.redelivery_delay_ms": "expected an integer, got a boolean",
        "policy.default_prefetch": "must be between 0 and",
        "extra": "unknown key",
    }
    # Several keys (users[3].*) have two problems; the dict keeps the last.
    assert set(found) == set(expected)
    for key, reason in expected.items():
        assert found[key].startswith(reason) or reason in found[key], (key, found[key])


def test_key_without_cert_and_client_cert_without_ca(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("x")
    conf = write(tmp_path, '[tls]\nkey = "k.pem"\nrequire_client_cert = true\n')
    assert problems(conf) == {
        "tls.cert": "required when tls.key is set (give both or neither)",
        "tls.require_client_cert": "needs tls.ca, the CA that client certificates chain to",
    }


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("eleven-char", "a password needs at least 12 characters"),
        ("twelve:chars,=", "a password may not contain ',' ':' '='"),
    ],
)
def test_configured_passwords_follow_amazon_mqs_rules(
    tmp_path: Path, password: str, reason: str
) -> None:
    """The rules ``sealmq user create`` applies hold for ``[[users]]`` too: refused at start."""
    conf = write(tmp_path, f'[[users]]\nusername = "app"\npassword = "{password}"\n')
    assert problems(conf) == {"users[0].password": reason}


def test_wrong_table_types(tmp_path: Path) -> None:
    conf = write(tmp_path, 'listeners = 5\ntls = "x"\nusers = {a = 1}\npolicy = []\n')
    assert problems(conf) == {
        "listeners": "expected a table, got an integer",
        "tls": "expected a table, got a string",
        "users": "expected an array of tables ([[users]]), got a table",
        "policy": "expected a table, got an array",
    }


def test_disable_default_listener_and_plain_opt_in(tmp_path: Path) -> None:
    conf = write(tmp_path, "[listeners]\nkms = false\n[listeners.plain]\nstomp = 61613\n")
    settings = load_settings(conf, env={})
    assert settings.listener("kms") is None
    assert settings.listener("stomp") == Listener("stomp", 61614)
    assert settings.listener("stomp", tls=False) == Listener("stomp", 61613, tls=False)


def test_port_zero_may_repeat(tmp_path: Path) -> None:
    conf = write(tmp_path, "[listeners]\nstomp = 0\nmqtt = 0\n[listeners.plain]\nstomp = 0\n")
    settings = load_settings(conf, env={})
    assert settings.listener_ports()["stomp"] == settings.listener_ports()["mqtt"] == 0


def test_problem_str_without_key() -> None:
    assert str(ConfigProblem("f.toml", "", "bad")) == "f.toml: bad"
    assert str(ConfigProblem("f.toml", "a.b", "bad")) == "f.toml: a.b: bad"


def test_mqtt_max_packet_size_is_bounded(tmp_path: Path) -> None:
    ok = tmp_path / "ok.toml"
    ok.write_text("[limits]\nmqtt_max_packet_size = 65536\n")
    assert load_settings(ok).limits.mqtt_max_packet_size == 65536
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmqtt_max_packet_size = 300000000\n")
    with pytest.raises(ConfigError, match=r"limits\.mqtt_max_packet_size"):
        load_settings(bad)


def test_slow_consumer_policy(tmp_path: Path) -> None:
    defaults = load_settings(write(tmp_path, ""), env={}).policy
    assert defaults.pending_message_limit == 1000
    assert defaults.slow_consumer_strategy == "discard_oldest"
    assert defaults.max_slow_duration_ms == 30_000
    assert defaults.write_buffer_high_water == 1024 * 1024
    text = (
        '[policy]\npending_message_limit = -1\nslow_consumer_strategy = "abort"\n'
        "max_slow_duration_ms = 500\nwrite_buffer_high_water = 65536\n"
    )
    policy = load_settings(write(tmp_path, text), env={}).policy
    assert (
        policy.pending_message_limit,
        policy.slow_consumer_strategy,
        policy.max_slow_duration_ms,
        policy.write_buffer_high_water,
    ) == (-1, "abort", 500, 65536)
    bad = (
        '[policy]\npending_message_limit = -2\nslow_consumer_strategy = "drop"\n'
        "max_slow_duration_ms = 0\nwrite_buffer_high_water = 10\n"
    )
    found = problems(write(tmp_path, bad))
    assert found["policy.pending_message_limit"].startswith("must be between -1 and")
    assert found["policy.slow_consumer_strategy"] == "must be one of discard_oldest, abort"
    assert found["policy.max_slow_duration_ms"].startswith("must be between 1 and")
    assert found["policy.write_buffer_high_water"].startswith("must be between 4096 and")


def test_memory_limit_per_destination(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).policy.memory_limit == 32 * 1024 * 1024
    text = (
        "[policy]\nmemory_limit = 1048576\n"
        '[[policy.destinations]]\ndestination = "queue://big.>"\nmemory_limit = 268435456\n'
    )
    policy = load_settings(write(tmp_path, text), env={}).policy
    assert policy.memory_limit == 1024 * 1024
    assert dict(policy.destinations[0].overrides) == {"memory_limit": 256 * 1024 * 1024}
    found = problems(write(tmp_path, "[policy]\nmemory_limit = 100\n"))
    assert found["policy.memory_limit"].startswith("must be between 65536 and")


def test_prelogin_limits_and_deadlines_load_with_their_defaults(tmp_path: Path) -> None:
    defaults = load_settings(write(tmp_path, "[limits]\n"), env={}).limits
    assert defaults.max_connect_frame == 64 * 1024
    assert defaults.login_timeout == 10.0
    assert defaults.frame_read_timeout == 60.0
    text = "[limits]\nmax_connect_frame = 4096\nlogin_timeout = 2.5\nframe_read_timeout = 30\n"
    limits = load_settings(write(tmp_path, text), env={}).limits
    assert limits.max_connect_frame == 4096
    assert limits.login_timeout == 2.5
    assert limits.frame_read_timeout == 30.0
    assert isinstance(limits.frame_read_timeout, float)


def test_prelogin_limits_and_deadlines_are_checked_all_at_once(tmp_path: Path) -> None:
    text = (
        "[limits]\nmax_connect_frame = 100\nlogin_timeout = 0\n"
        'frame_read_timeout = "60"\nlogin_timeoutt = 1\n'
    )
    found = problems(write(tmp_path, text))
    assert found["limits.max_connect_frame"].startswith("must be between 512 and")
    assert found["limits.login_timeout"] == ("must be more than 0 and at most 3600 seconds, got 0")
    assert found["limits.frame_read_timeout"] == "expected a number of seconds, got a string"
    assert "limits.login_timeoutt" in found
    nan = problems(write(tmp_path, "[limits]\nframe_read_timeout = nan\n"))
    assert "limits.frame_read_timeout" in nan


def test_per_destination_policy_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[policy]
maximum_redeliveries = 5
dead_letter_strategy = "individual"

[[policy.destinations]]
destination = "queue://orders.>"
maximum_redeliveries = 2
dead_letter_strategy = "shared"
dead_letter_queue = "ORDERS.DLQ"

[[policy.destinations]]
destination = "topic://prices.*"
pending_message_limit = 10
""",
    )
    policy = load_settings(path, env={}).policy
    assert policy.maximum_redeliveries == 5
    assert policy.dead_letter_strategy == "individual"
    first, second = policy.destinations
    assert first.destination == "queue://orders.>"
    assert dict(first.overrides) == {
        "maximum_redeliveries": 2,
        "dead_letter_strategy": "shared",
        "dead_letter_queue": "ORDERS.DLQ",
    }
    assert (second.destination, dict(second.overrides)) == (
        "topic://prices.*",
        {"pending_message_limit": 10},
    )


def test_per_destination_policy_problems_are_reported_with_their_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[policy.destinations]]
destination = "orders"

[[policy.destinations]]
destination = "queue://a.>.b"
slow_consumer_strategy = "abort"

[[policy.destinations]]
maximum_redeliveries = -2
dead_letter_strategy = "nearest"

[[policy.destinations]]
destination = "topic://a*"
""",
    )
    found = problems(path)
    assert "must start with queue:// or topic://" in found["policy.destinations[0].destination"]
    assert "'>' may only be the last segment" in found["policy.destinations[1].destination"]
    assert "unknown key" in found["policy.destinations[1].slow_consumer_strategy"]
    assert "missing" in found["policy.destinations[2].destination"]
    assert "between -1 and" in found["policy.destinations[2].maximum_redeliveries"]
    assert "shared" in found["policy.destinations[2].dead_letter_strategy"]
    assert "whole segments" in found["policy.destinations[3].destination"]
