"""``[[authorization]]`` and ``[security.temporary_destinations]``: read, checked, mapped."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.app import authorization_map
from sealmq.config import AuthorizationSettings, ConfigError, Settings, load_settings
from sealmq.core.authorization import Permission
from sealmq.core.model import Destination
from sealmq.core.security import Principal


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={})


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return {p.key: p.reason for p in info.value.problems}


CONFIG = """
[[authorization]]
destination = "queue://orders.>"
read = ["readers"]
write = ["writers"]
admin = ["admins"]

[[authorization]]
destination = "topic://ActiveMQ.Advisory.>"
read = ["*"]

[security.temporary_destinations]
read = ["apps"]
write = ["apps", "guests"]
admin = ["apps"]
"""


def test_entries_and_the_temporary_entry_are_read_into_the_cores_map(tmp_path: Path) -> None:
    settings = load(tmp_path, CONFIG)
    assert settings.authorization[0] == AuthorizationSettings(
        "queue://orders.>", frozenset({"readers"}), frozenset({"writers"}), frozenset({"admins"})
    )
    temporary = settings.security.temporary_destinations
    assert temporary is not None and temporary.write == {"apps", "guests"}
    authorization = authorization_map(settings)
    assert authorization is not None and len(authorization.entries) == 2
    reader = Principal("r", frozenset({"readers"}))
    assert authorization.allows(reader, Permission.READ, Destination.queue("orders.a"))
    assert not authorization.allows(reader, Permission.WRITE, Destination.queue("orders.a"))
    assert not authorization.allows(reader, Permission.READ, Destination.topic("orders.a"))
    assert authorization.allows(reader, Permission.READ, Destination.topic("ActiveMQ.Advisory.X"))


def test_no_entries_no_map(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.authorization == ()
    assert settings.security.temporary_destinations is None
    assert authorization_map(settings) is None


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[[authorization]]
destination = "orders.>"
read = "readers"

[[authorization]]
destination = "queue://a.>.b"
write = ["bad group!"]
delete = ["x"]

[[authorization]]
read = ["x"]

[security.temporary_destinations]
read = [1]
create = ["x"]
""",
    )
    assert found["authorization[0].destination"].startswith('must start with "queue://"')
    assert found["authorization[0].read"].startswith("expected an array of group names")
    assert found["authorization[1].destination"] == "'>' may only be the last level"
    assert found["authorization[1].write"].startswith("invalid group name 'bad group!'")
    assert found["authorization[1].delete"].startswith("unknown key")
    assert found["authorization[2].destination"] == "required"
    assert found["security.temporary_destinations.read"].startswith("group names must be strings")
    assert found["security.temporary_destinations.create"].startswith("unknown key")


def test_anonymous_access_is_read_and_off_by_default(tmp_path: Path) -> None:
    assert load(tmp_path, "[security]\nanonymous_access = true\n").security.anonymous_access
    assert not load(tmp_path, "").security.anonymous_access
    found = problems(tmp_path, '[security]\nanonymous_access = "yes"\n')
    assert found == {"security.anonymous_access": "expected true or false, got a string"}
