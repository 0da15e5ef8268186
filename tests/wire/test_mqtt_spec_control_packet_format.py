"""MQTT chapter 2, MQTT Control Packet format: fixed header, packet ids, properties.

Statement numbers are those of MQTT Version 5.0 (OASIS, 2019); each docstring
quotes or paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import MqttCodec, MqttError, Properties, Publish, Pubrel, Subscribe

from .test_mqtt_codec import (
    client_error,
    connack_bytes,
    connect_bytes,
    encode,
    error_of,
    from_client,
    parse_client,
    parse_server,
    raw,
    server_error,
    utf8,
)


class TestControlPacketType:
    def test_type_0_is_reserved(self) -> None:
        """2.1.2 Table 2-1: packet type 0 is Reserved."""
        assert client_error(4, b"\x00\x00") == (0x81, "reserved packet type 0")

    @pytest.mark.parametrize(
        ("first", "name"),
        [(0x20, "CONNACK"), (0x90, "SUBACK"), (0xB0, "UNSUBACK"), (0xD0, "PINGRESP")],
    )
    def test_server_packets_from_a_client_are_a_protocol_error(self, first: int, name: str) -> None:
        """2.1.2 Table 2-1: each type has a direction of flow."""
        assert client_error(5, bytes((first, 0))) == (0x82, f"{name} is not sent by clients")

    @pytest.mark.parametrize(
        ("first", "name"), [(0x10, "CONNECT"), (0x82, "SUBSCRIBE"), (0xC0, "PINGREQ")]
    )
    def test_client_packets_from_a_server_are_a_protocol_error(self, first: int, name: str) -> None:
        """2.1.2 Table 2-1: each type has a direction of flow."""
        assert server_error(5, bytes((first, 0))) == (0x82, f"{name} is not sent by servers")

    def test_auth_is_mqtt_5_only(self) -> None:
        """2.1.2: type 15 is Reserved in 3.1.1 and AUTH in 5.0."""
        assert client_error(4, b"\xf0\x00") == (0x82, "AUTH needs MQTT 5")
        assert error_of(connack_bytes(4) + b"\xe0\x00", server=False, level=4) == (
            0x82,
            "DISCONNECT from a server needs MQTT 5",
        )


class TestFixedHeaderFlags:
    @pytest.mark.parametrize(("first", "name"), [(0x60, "PUBREL"), (0x80, "SUBSCRIBE")])
    def test_0010_packets(self, first: int, name: str) -> None:
        """[MQTT-2.1.3-1] PUBREL, SUBSCRIBE, UNSUBSCRIBE flags are 0010; else Malformed."""
        for flags in (0x0, 0x1, 0x3, 0x6, 0xA):
            assert client_error(4, bytes((first | flags, 2)) + b"\x00\x01") == (
                0x81,
                f"{name} fixed header flags are not 0010",
            )

    @pytest.mark.parametrize("first", [0x41, 0x58, 0xC2, 0xE1])
    def test_other_packets_have_0000(self, first: int) -> None:
        """[MQTT-2.1.3-1] reserved flags MUST be set to the value listed in Table 2-2."""
        code, message = client_error(5, bytes((first, 0)))
        assert code == 0x81
        assert message.endswith("fixed header flags are not 0000")

    def test_flags_are_checked_on_the_first_byte(self) -> None:
        """The error comes as soon as the byte arrives, before any length."""
        codec = MqttCodec()
        codec.receive_data(connect_bytes(4))
        with pytest.raises(MqttError):
            codec.receive_data(b"\x61")

    def test_mqtt_31_may_set_dup_on_pubrel_subscribe_unsubscribe(self) -> None:
        """3.1 (4.1): DUP applies to PUBREL, SUBSCRIBE and UNSUBSCRIBE resends."""
        assert parse_client(3, b"\x6a\x02\x00\x05") == Pubrel(5)
        subscribe = parse_client(3, raw(0x8A, b"\x00\x01" + utf8("a") + b"\x00"))
        assert isinstance(subscribe, Subscribe)
        assert client_error(4, b"\x6a\x02\x00\x05")[0] == 0x81


class TestRemainingLength:
    def test_remaining_length_counts_bytes_after_it(self) -> None:
        """2.1.4: variable header plus payload, not the fixed header."""
        wire = raw(0x30, utf8("t") + b"abc")
        assert wire[1] == 6
        assert parse_client(4, wire) == Publish("t", b"abc")

    def test_too_short_for_its_fields_is_malformed(self) -> None:
        """1.2: a packet that cannot be parsed according to the spec is Malformed."""
        assert client_error(4, raw(0x30, b"\x00\x05ab")) == (0x81, "packet shorter than its fields")
        assert client_error(4, raw(0x40, b"\x00")) == (0x81, "packet shorter than its fields")

    def test_longer_than_its_fields_is_malformed(self) -> None:
        """2.1.4: the Remaining Length is exactly the variable header and payload."""
        assert client_error(4, raw(0x40, b"\x00\x01\x00")) == (
            0x81,
            "PUBACK longer than its fields",
        )
        assert client_error(4, raw(0xC0, b"\x00")) == (0x81, "PINGREQ longer than its fields")


class TestPacketIdentifier:
    @pytest.mark.parametrize(
        "wire",
        [
            raw(0x32, utf8("t") + b"\x00\x00"),
            raw(0x34, utf8("t") + b"\x00\x00"),
            raw(0x82, b"\x00\x00" + utf8("t") + b"\x00"),
            raw(0xA2, b"\x00\x00" + utf8("t")),
            b"\x40\x02\x00\x00",
            b"\x62\x02\x00\x00",
        ],
    )
    def test_non_zero(self, wire: bytes) -> None:
        """[MQTT-2.2.1-3] SUBSCRIBE, UNSUBSCRIBE, PUBLISH QoS>0 carry a non-zero id."""
        assert client_error(4, wire) == (0x82, "packet identifier 0")

    def test_qos_0_publish_has_none(self) -> None:
        """[MQTT-2.2.1-2] a PUBLISH with QoS 0 MUST NOT contain a Packet Identifier."""
        assert parse_client(4, raw(0x30, utf8("t") + b"\x00\x00")) == Publish("t", b"\x00\x00")


class TestProperties:
    def test_no_property_length_before_mqtt_5(self) -> None:
        """2.2.2: properties are new in 5.0; 3.1.1 payloads start after the header."""
        assert parse_client(4, raw(0x30, utf8("t") + b"\x00x")) == Publish("t", b"\x00x")
        assert parse_client(5, raw(0x30, utf8("t") + b"\x00x")) == Publish("t", b"x")

    def test_property_length_bounds_the_properties(self) -> None:
        """2.2.2.1: the Property Length is the length of the properties that follow."""
        wire = raw(0x30, utf8("t") + b"\x02\x23\x00")
        assert client_error(5, wire) == (0x81, "packet shorter than its fields")
        wire = raw(0x30, utf8("t") + b"\x09\x23\x00\x01")
        assert client_error(5, wire) == (0x81, "packet shorter than its fields")

    @pytest.mark.parametrize("pid", [0x00, 0x04, 0x0A, 0x2B, 0x7F, 0x80, 0xFF])
    def test_unknown_identifier_is_malformed(self, pid: int) -> None:
        """2.2.2.2: an identifier not valid for the packet type is a Malformed Packet."""
        wire = raw(0x30, utf8("t") + bytes((2, pid, 0)))
        assert client_error(5, wire) == (0x81, f"unknown property identifier 0x{pid:02X}")

    @pytest.mark.parametrize(
        ("first", "body", "message"),
        [
            (0x30, utf8("t") + b"\x05\x11\x00\x00\x00\x01", "Session Expiry Interval"),
            (0x30, utf8("t") + b"\x05\x18\x00\x00\x00\x01", "Will Delay Interval"),
            (0x40, b"\x00\x01\x00\x03\x23\x00\x01", "Topic Alias"),
            (0xE0, b"\x00\x02\x21\x00", "Receive Maximum"),
            (0x82, b"\x00\x01\x03\x23\x00\x01" + utf8("a") + b"\x00", "Topic Alias"),
        ],
    )
    def test_identifier_not_allowed_in_the_packet_is_malformed(
        self, first: int, body: bytes, message: str
    ) -> None:
        """2.2.2.2: an identifier not valid for its packet type is a Malformed Packet."""
        code, text = client_error(5, raw(first, body))
        assert code == 0x81
        assert text.startswith(message) and "is not allowed in" in text

    def test_duplicates_are_a_protocol_error(self) -> None:
        """3.3.2.3.x: "It is a Protocol Error to include the X more than once"."""
        wire = raw(0x30, utf8("t") + b"\x06\x23\x00\x01\x23\x00\x02")
        assert client_error(5, wire) == (0x82, "duplicate Topic Alias")
        sub_ids = b"\x04\x0b\x01\x0b\x02"
        wire = raw(0x82, b"\x00\x01" + sub_ids + utf8("a") + b"\x00")
        assert client_error(5, wire) == (0x82, "duplicate Subscription Identifier")

    def test_user_property_and_publish_subscription_identifier_may_repeat(self) -> None:
        """3.3.2.3.7-8: User Property may repeat; so may Subscription Identifier in PUBLISH."""
        props = Properties(subscription_identifiers=(1, 300, 268_435_455))
        publish = Publish("t", properties=props)
        assert parse_server(5, encode([publish], level=5, server=True)) == publish

    @pytest.mark.parametrize(
        ("first", "body", "message"),
        [
            (0x30, b"\x02\x01\x02", "Payload Format Indicator must be 0 or 1"),
            (0xE0, b"\x00\x05\x11\x00\x00\x00\x00", None),
            (0x82, b"\x00\x01\x02\x0b\x00" + utf8("a") + b"\x00", "Subscription Identifier 0"),
        ],
    )
    def test_values_the_spec_forbids_are_a_protocol_error(
        self, first: int, body: bytes, message: str | None
    ) -> None:
        """3.1.2.11.x, 3.3.2.3.x: out-of-range property values are a Protocol Error."""
        if first == 0x30:
            body = utf8("t") + body
        if message is None:  # a legal value, as a control
            assert from_client(5, raw(first, body))[1] is None
        else:
            assert client_error(5, raw(first, body)) == (0x82, message)

    def test_connect_values(self) -> None:
        """3.1.2.11.x: Receive Maximum and Maximum Packet Size 0, flags above 1."""
        for prop, message in (
            (b"\x21\x00\x00", "Receive Maximum must not be 0"),
            (b"\x27\x00\x00\x00\x00", "Maximum Packet Size must not be 0"),
            (b"\x17\x02", "Request Problem Information must be 0 or 1"),
            (b"\x19\x02", "Request Response Information must be 0 or 1"),
        ):
            body = utf8("MQTT") + b"\x05\x02\x00\x00" + bytes((len(prop),)) + prop + utf8("c")
            assert error_of(raw(0x10, body)) == (0x82, message)

    def test_properties_are_dropped_when_parsed_as_packets_without_them(self) -> None:
        """Before 5.0 the same bytes are payload, not properties."""
        publish = Publish("t", properties=Properties(content_type="x"))
        wire = encode([publish], level=5)
        assert from_client(4, wire)[0] == [Publish("t", wire[5:])]
