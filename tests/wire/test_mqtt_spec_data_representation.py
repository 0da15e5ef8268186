"""MQTT chapter 1.5, Data representation: the normative statements on field types.

Chapter and statement numbers are those of MQTT Version 5.0 (OASIS, 2019); the
3.1.1 numbers are given where they differ.  Each docstring quotes or
paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import Connect, MqttCodec, MqttError, Properties, Publish
from sealmq.wire.mqtt.properties import (
    encode_variable_byte_integer,
    read_binary,
    read_string,
    read_variable_byte_integer,
)

from .test_mqtt_codec import client_error, encode, error_of, feed, parse_client, raw, utf8


class TestTwoAndFourByteIntegers:
    def test_big_endian(self) -> None:
        """1.5.2-3: the high order byte precedes the lower order byte."""
        wire = raw(0x10, utf8("MQTT") + b"\x04\x02\x01\x02" + utf8("c"))
        assert feed(wire)[0] == [Connect(keep_alive=0x0102, client_id="c")]

    def test_four_byte_integer_property(self) -> None:
        """1.5.3: Message Expiry Interval is a Four Byte Integer."""
        body = utf8("t") + b"\x05\x02\x01\x02\x03\x04"
        publish = parse_client(5, raw(0x30, body))
        assert isinstance(publish, Publish)
        assert publish.properties.message_expiry_interval == 0x01020304


class TestUtf8EncodedStrings:
    def test_ill_formed_utf8_is_malformed(self) -> None:
        """[MQTT-1.5.4-1] ill-formed UTF-8 (bad sequences, surrogates) is a Malformed Packet."""
        for bad in (b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff", b"a\xe2\x82"):
            assert client_error(4, raw(0x30, utf8(bad))) == (0x81, "string is not valid UTF-8")

    def test_null_character_is_malformed(self) -> None:
        """[MQTT-1.5.4-2] a UTF-8 Encoded String MUST NOT include U+0000."""
        assert client_error(4, raw(0x30, utf8("a\x00b"))) == (0x81, "string contains U+0000")

    def test_bom_is_not_skipped(self) -> None:
        """[MQTT-1.5.4-3] 0xEF 0xBB 0xBF is U+FEFF and MUST NOT be skipped or stripped."""
        publish = parse_client(4, raw(0x30, utf8("\ufefft")))
        assert isinstance(publish, Publish)
        assert publish.topic == "\ufefft"

    def test_control_characters_and_non_bmp_are_allowed(self) -> None:
        """1.5.4: U+0001..U+001F and characters beyond the BMP may be received."""
        publish = parse_client(4, raw(0x30, utf8("\x01\x1f😀")))
        assert isinstance(publish, Publish)
        assert publish.topic == "\x01\x1f😀"

    def test_length_prefix_bounds_the_string(self) -> None:
        """1.5.4: the length is a Two Byte Integer; strings are at most 65535 bytes."""
        assert read_string(b"\x00\x03abcd", 0, 6) == ("abc", 5)
        with pytest.raises(MqttError) as exc:
            read_string(b"\x00\x05abcd", 0, 6)
        assert exc.value.reason_code == 0x81
        codec = MqttCodec()
        codec.protocol_level = 4
        codec.send(Publish("x" * 65535))
        with pytest.raises(MqttError, match="longer than 65535"):
            codec.send(Publish("x" * 65536))


class TestVariableByteInteger:
    @pytest.mark.parametrize(
        ("value", "size"),
        [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (268_435_455, 4),
        ],
    )
    def test_sizes_of_table_1_6(self, value: int, size: int) -> None:
        """1.5.5 Table 1-6: 1 to 4 bytes, seven bits each, high bit continues."""
        wire = encode_variable_byte_integer(value)
        assert len(wire) == size
        assert read_variable_byte_integer(wire, 0, len(wire)) == (value, size)

    def test_values_beyond_four_bytes_cannot_be_sent(self) -> None:
        """1.5.5: the maximum is 268,435,455 (0xFF 0xFF 0xFF 0x7F)."""
        with pytest.raises(MqttError):
            encode_variable_byte_integer(268_435_456)

    def test_fifth_byte_is_malformed(self) -> None:
        """1.5.5: at most four bytes; a fifth continuation is a Malformed Packet."""
        assert error_of(b"\x10\x80\x80\x80\x80\x01") == (
            0x81,
            "remaining length longer than 4 bytes",
        )

    def test_non_minimal_encoding_is_malformed(self) -> None:
        """[MQTT-1.5.5-1] the encoded value MUST use the minimum number of bytes."""
        assert error_of(b"\x10\x80\x00") == (0x81, "remaining length not minimally encoded")
        # A property length (a Variable Byte Integer too) padded the same way.
        wire = raw(0x30, utf8("t") + b"\x80\x00")
        assert client_error(5, wire) == (0x81, "variable byte integer not minimally encoded")


class TestBinaryData:
    def test_two_byte_length_then_bytes(self) -> None:
        """1.5.6: Binary Data is a Two Byte Integer length followed by that many bytes."""
        assert read_binary(b"\x00\x02\x00\xff!", 0, 5) == (b"\x00\xff", 4)

    def test_password_is_binary(self) -> None:
        """3.1.3.5: the Password is Binary Data, so any bytes, not UTF-8, are fine."""
        connect = Connect(client_id="c", username="u", password=b"\xff\x00\xfe")
        assert feed(encode([connect], level=None))[0] == [connect]


class TestUtf8StringPair:
    def test_pairs_keep_order_and_repeats(self) -> None:
        """1.5.7, [MQTT-3.3.2-18]: User Properties keep their order; a name may repeat."""
        pairs = (("b", "1"), ("a", "2"), ("b", "3"))
        publish = Publish("t", properties=Properties(user_properties=pairs))
        assert parse_client(5, encode([publish], level=5)) == publish
