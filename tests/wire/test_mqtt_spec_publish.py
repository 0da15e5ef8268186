"""MQTT 3.3 PUBLISH and 3.4-3.7 PUBACK, PUBREC, PUBREL, PUBCOMP.

Statement numbers are those of MQTT Version 5.0 (OASIS, 2019); each docstring
quotes or paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import Properties, Puback, Pubcomp, Publish, Pubrec, Pubrel, ReasonCode

from .test_mqtt_codec import (
    LEVELS,
    client_error,
    encode,
    from_client,
    parse_client,
    parse_server,
    raw,
    utf8,
)


class TestPublishFixedHeader:
    def test_flags(self) -> None:
        """3.3.1.1-3: DUP is bit 3, QoS bits 2-1, RETAIN bit 0."""
        publish = parse_client(4, raw(0x3D, utf8("t") + b"\x00\x07x"))
        assert publish == Publish("t", b"x", qos=2, retain=True, dup=True, packet_id=7)

    def test_qos_3_is_malformed(self) -> None:
        """[MQTT-3.3.1-4] a PUBLISH MUST NOT have both QoS bits set: Malformed Packet."""
        assert client_error(4, raw(0x36, utf8("t") + b"\x00\x01")) == (0x81, "PUBLISH with QoS 3")

    def test_dup_on_qos_0_is_malformed(self) -> None:
        """[MQTT-3.3.1-2] the DUP flag MUST be 0 for all QoS 0 messages."""
        assert client_error(4, raw(0x38, utf8("t"))) == (0x81, "DUP set on a QoS 0 PUBLISH")

    def test_payload_may_be_empty(self) -> None:
        """3.3.3: a zero length payload is valid."""
        assert parse_client(4, raw(0x31, utf8("t"))) == Publish("t", b"", retain=True)


class TestTopicName:
    @pytest.mark.parametrize("topic", ["#", "a/#", "+", "a/+/b", "a+", "sport#"])
    def test_no_wildcards(self, topic: str) -> None:
        """[MQTT-3.3.2-2] the Topic Name MUST NOT contain wildcard characters."""
        for level in LEVELS:
            assert client_error(
                level, raw(0x30, utf8(topic) + (b"\x00" if level == 5 else b""))
            ) == (
                0x82,
                "wildcard in topic name",
            )

    def test_empty_topic_before_mqtt_5(self) -> None:
        """[MQTT-4.7.3-1] Topic Names are at least one character long."""
        assert client_error(4, raw(0x30, utf8(""))) == (0x82, "empty topic name")

    def test_empty_topic_with_a_topic_alias(self) -> None:
        """3.3.2.3.4: a zero length Topic Name with a Topic Alias uses the alias."""
        publish = parse_client(5, raw(0x30, utf8("") + b"\x03\x23\x00\x02x"))
        assert publish == Publish("", b"x", properties=Properties(topic_alias=2))

    def test_empty_topic_without_a_topic_alias(self) -> None:
        """3.3.2.1: a zero length Topic Name and no Topic Alias is a Protocol Error."""
        assert client_error(5, raw(0x30, utf8("") + b"\x00")) == (0x82, "empty topic name")

    def test_topic_alias_0(self) -> None:
        """[MQTT-3.3.2-8] a Topic Alias of 0 is not permitted: Topic Alias invalid."""
        wire = raw(0x30, utf8("t") + b"\x03\x23\x00\x00")
        assert client_error(5, wire) == (ReasonCode.TOPIC_ALIAS_INVALID, "Topic Alias 0")

    def test_levels_and_spaces_are_plain_characters(self) -> None:
        """4.7.3: '/', spaces and a leading '$' or '/' are allowed in Topic Names."""
        for topic in ("/", "//a/ b /", "$SYS/x", " "):
            publish = parse_client(4, raw(0x30, utf8(topic)))
            assert isinstance(publish, Publish) and publish.topic == topic


class TestPublishProperties:
    def test_all_publish_properties(self) -> None:
        """3.3.2.3: the PUBLISH properties, as a server forwards them."""
        props = Properties(
            payload_format_indicator=1,
            message_expiry_interval=3600,
            topic_alias=4,
            response_topic="reply/to",
            correlation_data=b"\x00id",
            user_properties=(("a", "1"), ("a", "2")),
            subscription_identifiers=(1, 2),
            content_type="application/json",
        )
        publish = Publish("a/b", b"{}", 1, packet_id=5, properties=props)
        assert parse_server(5, encode([publish], level=5, server=True)) == publish

    def test_no_subscription_identifier_from_a_client(self) -> None:
        """[MQTT-3.3.4-6] a PUBLISH from a Client MUST NOT contain a Subscription Identifier."""
        wire = raw(0x30, utf8("t") + b"\x02\x0b\x01")
        assert client_error(5, wire) == (0x82, "Subscription Identifier in a PUBLISH from a client")

    @pytest.mark.parametrize("topic", ["a/#", "+", ""])
    def test_response_topic_is_a_topic_name(self, topic: str) -> None:
        """[MQTT-3.3.2-14] the Response Topic MUST NOT contain wildcard characters."""
        prop = b"\x08" + utf8(topic)
        wire = raw(0x30, utf8("t") + bytes((len(prop),)) + prop)
        assert client_error(5, wire) == (0x82, "Response Topic is not a valid topic name")

    def test_payload_follows_the_properties(self) -> None:
        """3.3.3: the payload is whatever follows the properties."""
        publish = parse_client(
            5, raw(0x32, utf8("t") + b"\x00\x01" + b"\x02\x01\x01" + b"\x01\x02")
        )
        assert publish == Publish(
            "t", b"\x01\x02", qos=1, packet_id=1, properties=Properties(payload_format_indicator=1)
        )


ACKS = [(Puback, 0x40, 4), (Pubrec, 0x50, 5), (Pubrel, 0x62, 6), (Pubcomp, 0x70, 7)]


class TestAcknowledgements:
    @pytest.mark.parametrize(("cls", "first", "ptype"), ACKS)
    def test_311_is_just_the_packet_identifier(self, cls: type, first: int, ptype: int) -> None:
        """3.4-3.7 (3.1.1): Remaining Length 2, the Packet Identifier."""
        for level in (3, 4):
            assert parse_client(level, bytes((first, 2, 0x12, 0x34))) == cls(0x1234)
            assert client_error(level, bytes((first, 3, 0, 1, 0)))[0] == 0x81

    @pytest.mark.parametrize(("cls", "first", "ptype"), ACKS)
    def test_mqtt_5_short_forms(self, cls: type, first: int, ptype: int) -> None:
        """3.4.2.1: Reason Code 0 and no properties may be left out, then the properties."""
        code = 0x92 if ptype in (6, 7) else 0x10
        assert parse_client(5, bytes((first, 2, 0, 1))) == cls(1)
        assert parse_client(5, bytes((first, 3, 0, 1, code))) == cls(1, code)
        assert parse_client(5, bytes((first, 4, 0, 1, code, 0))) == cls(1, code)
        # The shortest form is what goes out.
        assert encode([cls(1)], level=5) == bytes((first, 2, 0, 1))
        assert encode([cls(1, code)], level=5) == bytes((first, 3, 0, 1, code))
        props = Properties(reason_string="r")
        wire = encode([cls(1, 0, props)], level=5)
        assert wire == bytes((first, 8, 0, 1, 0, 4, 0x1F, 0, 1)) + b"r"
        assert parse_client(5, wire) == cls(1, 0, props)

    @pytest.mark.parametrize(("cls", "first", "ptype"), ACKS)
    def test_mqtt_5_reason_codes(self, cls: type, first: int, ptype: int) -> None:
        """3.4.2.1 ff.: each acknowledgement has its own list of Reason Codes."""
        bad = 0x10 if ptype in (6, 7) else 0x92
        name = cls.__name__.upper()
        assert client_error(5, bytes((first, 3, 0, 1, bad))) == (
            0x82,
            f"reason code 0x{bad:02X} is not valid in {name}",
        )

    def test_acknowledgement_with_trailing_bytes(self) -> None:
        """3.4.2.2: nothing follows the properties."""
        assert client_error(5, b"\x40\x05\x00\x01\x00\x00\x00") == (
            0x81,
            "PUBACK longer than its fields",
        )

    def test_pubrel_flags(self) -> None:
        """[MQTT-3.6.1-1] bits 3-0 of the PUBREL fixed header are 0010."""
        assert from_client(4, b"\x62\x02\x00\x01") == ([Pubrel(1)], None)
        assert client_error(4, b"\x60\x02\x00\x01")[0] == 0x81
