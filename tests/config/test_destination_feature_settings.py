"""``[virtual_topics]`` and ``[advisories]``: ActiveMQ's defaults, overrides, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmq.config import ConfigError, Settings, VirtualTopicSettings, load_settings


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "sealmq.toml"
    path.write_text(text)
    return load_settings(path, env={})


def test_on_by_default_with_activemqs_names(tmp_path: Path) -> None:
    assert load(tmp_path, "").virtual_topics == VirtualTopicSettings(
        True, "VirtualTopic.>", "Consumer.*."
    )


def test_overridden(tmp_path: Path) -> None:
    found = load(
        tmp_path, '[virtual_topics]\nenabled = false\nname = "Events.*"\nprefix = "App.*.In."\n'
    ).virtual_topics
    assert found == VirtualTopicSettings(False, "Events.*", "App.*.In.")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('prefix = "Consumer.*"', "prefix", "must end with '.'"),
        ('prefix = "Consumer.>."', "prefix", "not '>'"),
        ('prefix = "Consumer..x."', "prefix", "empty segments"),
        ('name = "topic://VirtualTopic.>"', "name", "without prefixes"),
        ('name = "VirtualTopic.>.x"', "name", "'>' only for the last"),
        ('name = "Virtual*.x"', "name", "one whole level"),
        ("enabled = 1", "enabled", "expected true or false"),
        ('colour = "red"', "colour", "unknown key"),
    ],
)
def test_refused_naming_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[virtual_topics]\n{text}\n")
    problems = {p.key: p.reason for p in info.value.problems}
    assert reason in problems[f"virtual_topics.{key}"]


def test_advisories_on_by_default_and_switched_off(tmp_path: Path) -> None:
    assert load(tmp_path, "").advisories is True
    assert load(tmp_path, "[advisories]\nenabled = false\n").advisories is False
    with pytest.raises(ConfigError, match=r"advisories\.enabled"):
        load(tmp_path, '[advisories]\nenabled = "no"\n')


def test_redelivery_back_off_and_dead_letter_switches(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[policy]\nredelivery_delay_ms = 1000\nuse_exponential_back_off = true\n"
        "back_off_multiplier = 2\nmaximum_redelivery_delay_ms = 60000\n"
        "process_non_persistent = true\nprocess_expired = false\n"
        '[[policy.destinations]]\ndestination = "queue://slow.>"\nback_off_multiplier = 1.5\n',
    )
    policy = settings.policy
    assert (policy.use_exponential_back_off, policy.back_off_multiplier) == (True, 2.0)
    assert policy.maximum_redelivery_delay_ms == 60000
    assert (policy.process_non_persistent, policy.process_expired) == (True, False)
    assert policy.destinations[0].overrides == (("back_off_multiplier", 1.5),)
    for text, key in (
        ("back_off_multiplier = 0.5", "back_off_multiplier"),
        ('back_off_multiplier = "2"', "back_off_multiplier"),
        ("process_expired = 1", "process_expired"),
        ("maximum_redelivery_delay_ms = -2", "maximum_redelivery_delay_ms"),
    ):
        with pytest.raises(ConfigError) as info:
            load(tmp_path, f"[policy]\n{text}\n")
        assert {p.key for p in info.value.problems} == {f"policy.{key}"}


COMPOSITE = """
[[composite_destinations]]
destination = "queue://orders"
forward_to = ["queue://orders.audit", {destination = "topic://big", selector = "amount > 1000"}]
[[composite_destinations]]
destination = "topic://prices"
forward_to = ["queue://prices.log"]
forward_only = false
"""


def test_composite_destinations(tmp_path: Path) -> None:
    entries = load(tmp_path, COMPOSITE).composite_destinations
    assert [(e.destination, e.forward_to, e.forward_only) for e in entries] == [
        (
            "queue://orders",
            (("queue://orders.audit", None), ("topic://big", "amount > 1000")),
            True,
        ),
        ("topic://prices", (("queue://prices.log", None),), False),
    ]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            'destination = "queue://a.>"\nforward_to = ["queue://b"]',
            "destination",
            "without wildcards",
        ),
        ('destination = "a"\nforward_to = ["queue://b"]', "destination", "queue:// or topic://"),
        ('destination = "queue://a"\nforward_to = []', "forward_to", "non-empty array"),
        ('destination = "queue://a"\nforward_to = [5]', "forward_to[0]", "expected a destination"),
        (
            'destination = "queue://a"\n'
            'forward_to = [{destination = "queue://b", selector = "x ="}]',
            "forward_to[0].selector",
            "invalid selector at column 4",
        ),
        ('forward_to = ["queue://b"]', "destination", "missing"),
        (
            'destination = "queue://a"\nforward_to = ["queue://b"]\ncolour = 1',
            "colour",
            "unknown key",
        ),
    ],
)
def test_composite_destinations_refused(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[[composite_destinations]]\n{text}\n")
    problems = {p.key: p.reason for p in info.value.problems}
    assert reason in problems[f"composite_destinations[0].{key}"], problems


def test_a_destination_with_two_composite_entries_is_refused(tmp_path: Path) -> None:
    twice = '[[composite_destinations]]\ndestination = "queue://a"\nforward_to = ["queue://b"]\n'
    with pytest.raises(ConfigError, match="has an entry already"):
        load(tmp_path, twice * 2)
