"""The per-destination policy map: which entry a destination takes, and dead-letter names."""

from __future__ import annotations

import pytest

from sealmq.core.model import Destination
from sealmq.core.policy import INDIVIDUAL, DestinationPolicy, PolicyEntry, PolicyMap

DEFAULT = DestinationPolicy(maximum_redeliveries=6, redelivery_delay_ms=0)


def q(name: str) -> Destination:
    return Destination.queue(name)


def t(name: str) -> Destination:
    return Destination.topic(name)


def test_no_entry_gives_the_defaults() -> None:
    policies = PolicyMap(DEFAULT, [PolicyEntry.of(q("orders"), maximum_redeliveries=1)])
    assert policies.for_queue("payments") is DEFAULT
    assert policies.for_topic("orders") is DEFAULT  # a queue entry never applies to a topic


def test_the_most_specific_entry_wins_whatever_the_order() -> None:
    entries = [
        PolicyEntry.of(q(">"), maximum_redeliveries=1),
        PolicyEntry.of(q("orders.eu"), maximum_redeliveries=4),
        PolicyEntry.of(q("orders.>"), maximum_redeliveries=2),
        PolicyEntry.of(q("orders.*"), maximum_redeliveries=3),
    ]
    for ordering in (entries, entries[::-1]):
        policies = PolicyMap(DEFAULT, ordering)
        assert policies.for_queue("orders.eu").maximum_redeliveries == 4  # exact
        assert policies.for_queue("orders.us").maximum_redeliveries == 3  # * over >
        assert policies.for_queue("orders.us.east").maximum_redeliveries == 2
        assert policies.for_queue("billing").maximum_redeliveries == 1


def test_a_tie_goes_to_the_later_entry() -> None:
    policies = PolicyMap(
        DEFAULT,
        [
            PolicyEntry.of(q("a.*"), redelivery_delay_ms=10),
            PolicyEntry.of(q("*.b"), redelivery_delay_ms=20),
        ],
    )
    assert policies.for_queue("a.b").redelivery_delay_ms == 20


def test_what_an_entry_leaves_unset_comes_from_the_defaults() -> None:
    base = DestinationPolicy(maximum_redeliveries=9, default_prefetch=50)
    policies = PolicyMap(base, [PolicyEntry.of(t("prices.>"), pending_message_limit=10)])
    got = policies.for_topic("prices.fx")
    assert (got.pending_message_limit, got.maximum_redeliveries, got.default_prefetch) == (
        10,
        9,
        50,
    )


def test_dead_letter_queues_shared_and_individual() -> None:
    shared = DestinationPolicy()
    assert shared.dead_letter_queue_for(q("orders")) == "ActiveMQ.DLQ"
    assert shared.is_dead_letter_queue("ActiveMQ.DLQ")
    individual = DestinationPolicy(dead_letter_strategy=INDIVIDUAL)
    assert individual.dead_letter_queue_for(q("orders")) == "ActiveMQ.DLQ.Queue.orders"
    assert individual.dead_letter_queue_for(t("prices")) == "ActiveMQ.DLQ.Topic.prices"
    assert individual.is_dead_letter_queue("ActiveMQ.DLQ.Queue.orders")
    assert not individual.is_dead_letter_queue("orders")


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ValueError, match="not a destination policy setting: colour"):
        PolicyEntry.of(q("x"), colour="blue")


def test_every_destination_setting_of_the_config_is_a_policy_field() -> None:
    from sealmq.config.settings import DESTINATION_POLICY_KEYS, PolicySettings
    from sealmq.core.policy import POLICY_FIELDS

    assert set(DESTINATION_POLICY_KEYS) == set(POLICY_FIELDS)
    defaults = PolicySettings()
    assert {k: getattr(defaults, k) for k in POLICY_FIELDS} == {
        k: getattr(DestinationPolicy(), k) for k in POLICY_FIELDS
    }


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (DestinationPolicy(redelivery_delay_ms=100), [100, 100, 100]),
        (
            DestinationPolicy(
                redelivery_delay_ms=100, use_exponential_back_off=True, back_off_multiplier=2
            ),
            [100, 200, 400, 800],
        ),
        (
            DestinationPolicy(
                redelivery_delay_ms=100,
                use_exponential_back_off=True,
                back_off_multiplier=3,
                maximum_redelivery_delay_ms=500,
            ),
            [100, 300, 500, 500],
        ),
        (DestinationPolicy(redelivery_delay_ms=1000, maximum_redelivery_delay_ms=250), [250]),
        (DestinationPolicy(use_exponential_back_off=True), [0, 0]),
    ],
)
def test_redelivery_delays_back_off_up_to_the_cap(
    policy: DestinationPolicy, delays: list[int]
) -> None:
    assert [policy.redelivery_delay_for(n) for n in range(1, len(delays) + 1)] == delays
