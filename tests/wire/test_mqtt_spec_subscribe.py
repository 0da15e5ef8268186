"""MQTT 3.8-3.11 SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK; 4.7 topic filters; 4.8 shares.

Statement numbers are those of MQTT Version 5.0 (OASIS, 2019) unless a 3.1.1
number is given; each docstring quotes or paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import (
    Properties,
    ReasonCode,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
)

from .test_mqtt_codec import (
    LEVELS,
    client_error,
    encode,
    parse_client,
    parse_server,
    raw,
    server_error,
    utf8,
)


def subscribe(level: int, *pairs: tuple[str, int]) -> bytes:
    props = b"\x00" if level == 5 else b""
    body = b"\x00\x01" + props + b"".join(utf8(f) + bytes((o,)) for f, o in pairs)
    return raw(0x82, body)


def unsubscribe(level: int, *filters: str) -> bytes:
    props = b"\x00" if level == 5 else b""
    return raw(0xA2, b"\x00\x01" + props + b"".join(utf8(f) for f in filters))


class TestSubscribe:
    def test_at_least_one_filter(self) -> None:
        """[MQTT-3.8.3-2] the Payload contains at least one Topic Filter: else Protocol Error."""
        for level in LEVELS:
            assert client_error(level, subscribe(level)) == (
                0x82,
                "SUBSCRIBE without topic filters",
            )

    def test_311_requested_qos(self) -> None:
        """3.8.3.1 (3.1.1): the options byte is the Requested QoS."""
        packet = parse_client(4, subscribe(4, ("a", 0), ("b", 1), ("c", 2)))
        expected = (Subscription("a", 0), Subscription("b", 1), Subscription("c", 2))
        assert packet == Subscribe(1, expected)

    @pytest.mark.parametrize("options", [0x04, 0x08, 0x40, 0x80, 0xFC])
    def test_311_reserved_bits(self, options: int) -> None:
        """[MQTT-3-8.3-4] (3.1.1): reserved bits of the payload MUST be 0: Malformed."""
        assert client_error(4, subscribe(4, ("a", options))) == (
            0x81,
            "reserved subscription option bits set",
        )

    def test_qos_3(self) -> None:
        """3.8.3.1: QoS 3 is a Malformed Packet."""
        for level in LEVELS:
            assert client_error(level, subscribe(level, ("a", 3))) == (0x81, "subscription QoS 3")

    def test_mqtt_5_options(self) -> None:
        """3.8.3.1: QoS bits 0-1, No Local bit 2, Retain As Published bit 3, Retain Handling 4-5."""
        packet = parse_client(5, subscribe(5, ("a", 0x2D), ("b", 0x10)))
        assert packet == Subscribe(
            1,
            (
                Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=2),
                Subscription("b", 0, retain_handling=1),
            ),
        )

    def test_mqtt_5_reserved_bits(self) -> None:
        """[MQTT-3.8.3-5] reserved bits 6-7 MUST be 0: Malformed Packet."""
        assert client_error(5, subscribe(5, ("a", 0x40))) == (
            0x81,
            "reserved subscription option bits set",
        )

    def test_retain_handling_3(self) -> None:
        """3.8.3.1: a Retain Handling value of 3 is a Protocol Error."""
        assert client_error(5, subscribe(5, ("a", 0x30))) == (0x82, "retain handling 3")

    def test_subscription_identifier(self) -> None:
        """3.8.2.1.2: one Subscription Identifier, 1 to 268,435,455."""
        props = Properties(subscription_identifiers=(268_435_455,), user_properties=(("a", "b"),))
        packet = Subscribe(9, (Subscription("x"),), props)
        assert parse_client(5, encode([packet], level=5)) == packet


VALID_FILTERS = [
    "#",
    "+",
    "sport/tennis/player1/#",
    "sport/#",
    "sport/tennis/+",
    "+/+",
    "/+",
    "+/tennis/#",
    "sport/+/player1",
    "/",
    "$SYS/#",
    "a//b",
]
INVALID_FILTERS = ["sport/tennis#", "sport/tennis/#/ranking", "sport+", "#/", "a/#/b", "+a", "a/b+"]


class TestTopicFilters:
    @pytest.mark.parametrize("topic_filter", VALID_FILTERS)
    def test_valid(self, topic_filter: str) -> None:
        """4.7.1.2-3: '#' alone or after '/', last; '+' fills a whole level."""
        for level in LEVELS:
            packet = parse_client(level, subscribe(level, (topic_filter, 0)))
            assert isinstance(packet, Subscribe)
            assert packet.subscriptions[0].topic_filter == topic_filter
            packet = parse_client(level, unsubscribe(level, topic_filter))
            assert packet == Unsubscribe(1, (topic_filter,))

    @pytest.mark.parametrize("topic_filter", INVALID_FILTERS)
    def test_invalid(self, topic_filter: str) -> None:
        """[MQTT-4.7.1-1], 4.7.1.2-3: misplaced wildcards make the packet malformed."""
        for level in LEVELS:
            expected = (0x81, "invalid wildcard in topic filter")
            assert client_error(level, subscribe(level, (topic_filter, 0))) == expected
            assert client_error(level, unsubscribe(level, topic_filter)) == expected

    def test_empty(self) -> None:
        """[MQTT-4.7.3-1] Topic Filters MUST be at least one character long."""
        assert client_error(4, subscribe(4, ("", 0))) == (0x81, "empty topic filter")
        assert client_error(4, unsubscribe(4, "")) == (0x81, "empty topic filter")


class TestSharedSubscriptions:
    @pytest.mark.parametrize("topic_filter", ["$share/g/a/#", "$share/g/+", "$share/g//"])
    def test_valid(self, topic_filter: str) -> None:
        """[MQTT-4.8.2-1/2] $share/{ShareName}/{filter}."""
        packet = parse_client(5, subscribe(5, (topic_filter, 1)))
        assert isinstance(packet, Subscribe)
        assert packet.subscriptions[0].topic_filter == topic_filter

    @pytest.mark.parametrize(
        "topic_filter", ["$share//a", "$share/g", "$share/g+/a", "$share/#/a", "$share/g/"]
    )
    def test_invalid(self, topic_filter: str) -> None:
        """[MQTT-4.8.2-1/2] a ShareName of 1+ characters without '/', '+', '#', then a filter."""
        code, _ = client_error(5, subscribe(5, (topic_filter, 0)))
        assert code == 0x81

    def test_no_local_on_a_share(self) -> None:
        """[MQTT-3.8.3-4] No Local 1 on a Shared Subscription is a Protocol Error."""
        assert client_error(5, subscribe(5, ("$share/g/a", 0x04))) == (
            0x82,
            "No Local on a shared subscription",
        )

    def test_before_mqtt_5_it_is_an_ordinary_filter(self) -> None:
        """4.8.2 is new in 5.0: '$share/g' is just a filter to a 3.1.1 server."""
        packet = parse_client(4, subscribe(4, ("$share/g", 0)))
        assert packet == Subscribe(1, (Subscription("$share/g"),))


class TestSuback:
    def test_311_return_codes(self) -> None:
        """3.9.3 (3.1.1): 0x00, 0x01, 0x02 granted QoS, 0x80 failure; others reserved."""
        assert parse_server(4, raw(0x90, b"\x00\x07\x00\x01\x02\x80")) == Suback(7, (0, 1, 2, 0x80))
        assert server_error(4, raw(0x90, b"\x00\x07\x03")) == (0x82, "invalid SUBACK reason code")
        assert server_error(4, raw(0x90, b"\x00\x07")) == (0x82, "SUBACK without reason codes")

    def test_mqtt_5_reason_codes_and_properties(self) -> None:
        """3.9.2-3: SUBACK properties, then one Reason Code per subscription."""
        codes = (
            0,
            1,
            2,
            ReasonCode.QUOTA_EXCEEDED,
            ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        )
        packet = Suback(3, codes, Properties(reason_string="r"))
        assert parse_server(5, encode([packet], level=5, server=True)) == packet
        assert server_error(5, raw(0x90, b"\x00\x07\x00\x10")) == (
            0x82,
            "invalid SUBACK reason code",
        )

    def test_failures_become_0x80_before_mqtt_5(self) -> None:
        """3.9.3 (3.1.1): 0x80 is the only failure code."""
        wire = encode([Suback(3, (1, ReasonCode.NOT_AUTHORIZED))], level=4, server=True)
        assert wire == b"\x90\x04\x00\x03\x01\x80"


class TestUnsubscribeAndUnsuback:
    def test_at_least_one_filter(self) -> None:
        """[MQTT-3.10.3-2] the Payload contains at least one Topic Filter."""
        for level in LEVELS:
            assert client_error(level, unsubscribe(level)) == (
                0x82,
                "UNSUBSCRIBE without topic filters",
            )

    def test_unsubscribe_properties(self) -> None:
        """3.10.2.1: UNSUBSCRIBE carries only User Properties."""
        packet = Unsubscribe(2, ("a", "b/#"), Properties(user_properties=(("k", "v"),)))
        assert parse_client(5, encode([packet], level=5)) == packet
        wire = raw(0xA2, b"\x00\x01\x02\x0b\x01" + utf8("a"))
        assert client_error(5, wire) == (
            0x81,
            "Subscription Identifier is not allowed in UNSUBSCRIBE",
        )

    def test_311_unsuback_has_no_payload(self) -> None:
        """3.11 (3.1.1): UNSUBACK is the Packet Identifier only."""
        assert parse_server(4, b"\xb0\x02\x00\x05") == Unsuback(5)
        assert server_error(4, b"\xb0\x03\x00\x05\x00")[0] == 0x81

    def test_mqtt_5_unsuback(self) -> None:
        """3.11.2-3: properties, then one Reason Code per filter."""
        packet = Unsuback(5, (0, ReasonCode.NO_SUBSCRIPTION_EXISTED), Properties(reason_string="x"))
        assert parse_server(5, encode([packet], level=5, server=True)) == packet
        assert server_error(5, b"\xb0\x04\x00\x05\x00\x01") == (
            0x82,
            "invalid UNSUBACK reason code",
        )
        assert server_error(5, b"\xb0\x03\x00\x05\x00") == (0x82, "UNSUBACK without reason codes")
