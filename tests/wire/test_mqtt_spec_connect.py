"""MQTT 3.1 CONNECT and 3.2 CONNACK: the normative statements the codec covers.

Statement numbers are those of MQTT Version 5.0 (OASIS, 2019) unless a 3.1.1
number is given; each docstring quotes or paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import (
    Connack,
    Connect,
    ConnectReturnCode,
    MqttCodec,
    MqttError,
    Properties,
    Publish,
    ReasonCode,
    Will,
)

from .test_mqtt_codec import connect_bytes, encode, error_of, feed, raw, utf8


def connect(name: bytes, level: int, flags: int, payload: bytes, props: bytes = b"") -> bytes:
    """A CONNECT with keep-alive 60; ``props`` (property length included) for level 5."""
    return raw(0x10, utf8(name) + bytes((level, flags)) + b"\x00\x3c" + props + payload)


class TestConnectIsFirstAndOnce:
    def test_first_packet_must_be_connect(self) -> None:
        """[MQTT-3.1.0-1] the first packet from the Client MUST be CONNECT."""
        assert error_of(b"\xc0\x00") == (0x82, "first packet is not CONNECT")
        assert error_of(b"GET / HTTP/1.1\r\n") == (0x82, "first packet is not CONNECT")

    def test_a_second_connect_is_a_protocol_error(self) -> None:
        """[MQTT-3.1.0-2] a second CONNECT is a Protocol Error."""
        wire = connect_bytes(5) + connect_bytes(5)
        assert error_of(wire) == (0x82, "second CONNECT")
        events, _ = feed(wire)
        assert len(events) == 1


class TestProtocolNameAndLevel:
    @pytest.mark.parametrize(("name", "level"), [(b"MQIsdp", 3), (b"MQTT", 4), (b"MQTT", 5)])
    def test_supported(self, name: bytes, level: int) -> None:
        """3.1.2.1-2: "MQIsdp" level 3 (3.1), "MQTT" level 4 (3.1.1) and 5 (5.0)."""
        props = b"\x00" if level == 5 else b""
        events, error = feed(connect(name, level, 0x02, utf8("c"), props))
        assert error is None
        assert events == [Connect(protocol_level=level, client_id="c")]
        assert isinstance(events[0], Connect)
        assert events[0].protocol_name == name.decode()

    @pytest.mark.parametrize(
        ("name", "level", "message"),
        [
            (b"MQTT", 3, "unsupported protocol level 3"),
            (b"MQIsdp", 4, "unsupported protocol level 4"),
            (b"MQTT", 6, "unsupported protocol level 6"),
            (b"MQTT", 0x84, "unsupported protocol level 132"),
            (b"MQTT", 0, "unsupported protocol level 0"),
            (b"mqtt", 4, "unsupported protocol name"),
            (b"AMQP", 4, "unsupported protocol name"),
        ],
    )
    def test_unsupported(self, name: bytes, level: int, message: str) -> None:
        """3.1.2.1-2: other names or levels: CONNACK 0x84 (5.0) / return code 1 (3.1.1)."""
        wire = connect(name, level, 0x02, utf8("c"))
        assert error_of(wire) == (ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, message)

    def test_the_refusal_is_a_311_connack_with_return_code_1(self) -> None:
        """[MQTT-3.1.2-2] respond with return code 0x01 and close (3.1.1)."""
        codec = MqttCodec()
        with pytest.raises(MqttError) as exc:
            codec.receive_data(connect(b"MQTT", 7, 0x02, utf8("c")))
        assert codec.protocol_level is None
        codec.send(Connack(reason_code=exc.value.reason_code))
        assert codec.data_to_send() == [b"\x20\x02\x00\x01"]

    def test_level_is_known_even_if_the_rest_is_malformed(self) -> None:
        """A v5 client refused later in its CONNECT gets a v5 CONNACK with the reason."""
        codec = MqttCodec()
        with pytest.raises(MqttError) as exc:
            codec.receive_data(connect(b"MQTT", 5, 0x03, utf8("c"), b"\x00"))
        assert codec.protocol_level == 5
        codec.send(Connack(reason_code=exc.value.reason_code))
        assert codec.data_to_send() == [b"\x20\x03\x00\x81\x00"]

    def test_packets_pipelined_behind_connect_use_its_level(self) -> None:
        """The level applies from the next byte on, whatever the read boundaries."""
        publish = Publish("t", b"x", properties=Properties(content_type="a"))
        wire = connect_bytes(5) + encode([publish], level=5)
        assert feed(wire)[0][1:] == [publish]


class TestConnectFlags:
    def test_reserved_flag(self) -> None:
        """[MQTT-3.1.2-3] the reserved flag MUST be 0, else Malformed (3.1.1 and 5.0)."""
        for level, props in ((4, b""), (5, b"\x00")):
            wire = connect(b"MQTT", level, 0x03, utf8("c"), props)
            assert error_of(wire) == (0x81, "reserved CONNECT flag set")

    def test_reserved_flag_is_tolerated_in_31(self) -> None:
        """3.1 calls bit 0 unused without requiring 0."""
        events, error = feed(connect(b"MQIsdp", 3, 0x03, utf8("c")))
        assert error is None and events[0] == Connect(protocol_level=3, client_id="c")

    def test_clean_start(self) -> None:
        """3.1.2.4: bit 1 is Clean Start (Clean Session before 5.0)."""
        events, _ = feed(connect(b"MQTT", 4, 0x00, utf8("c")))
        assert isinstance(events[0], Connect)
        assert events[0].clean_start is False and events[0].clean_session is False

    @pytest.mark.parametrize("flags", [0x08, 0x10, 0x20, 0x28])
    def test_will_qos_and_retain_need_the_will_flag(self, flags: int) -> None:
        """[MQTT-3.1.2-11], [MQTT-3.1.2-13]: without a will, Will QoS and Retain are 0."""
        wire = connect(b"MQTT", 4, 0x02 | flags, utf8("c"))
        assert error_of(wire) == (0x81, "will QoS or retain set without a will")

    def test_will_qos_3(self) -> None:
        """[MQTT-3.1.2-12] Will QoS 3 is a Malformed Packet."""
        wire = connect(b"MQTT", 4, 0x1E, utf8("c") + utf8("w") + utf8("p"))
        assert error_of(wire) == (0x81, "will QoS 3")

    def test_will(self) -> None:
        """3.1.3.2-4: Will Properties (5.0), Will Topic, Will Payload, in that order."""
        props = b"\x05\x18\x00\x00\x00\x05"
        wire = connect(
            b"MQTT", 5, 0x36, utf8("c") + props + utf8("w/t") + utf8(b"\x00bye"), b"\x00"
        )
        events, error = feed(wire)
        assert error is None
        will = Will("w/t", b"\x00bye", 2, True, Properties(will_delay_interval=5))
        assert events == [Connect(protocol_level=5, client_id="c", will=will, keep_alive=60)]

    def test_will_topic_is_a_topic_name(self) -> None:
        """3.1.3.3: the Will Topic is a Topic Name: no wildcards, not empty."""
        for topic, message in (("a/#", "wildcard in topic name"), ("", "empty topic name")):
            wire = connect(b"MQTT", 4, 0x06, utf8("c") + utf8(topic) + utf8("p"))
            assert error_of(wire) == (0x82, message)

    def test_password_needs_a_user_name_before_mqtt_5(self) -> None:
        """[MQTT-3.1.2-22] (3.1.1): if the User Name Flag is 0, the Password Flag is 0."""
        for name, level in ((b"MQIsdp", 3), (b"MQTT", 4)):
            wire = connect(name, level, 0x42, utf8("c") + utf8("pw"))
            assert error_of(wire) == (0x81, "password without user name")

    def test_password_without_user_name_in_mqtt_5(self) -> None:
        """3.1.2.9 (5.0): a Password may be sent without a User Name."""
        events, error = feed(connect(b"MQTT", 5, 0x42, utf8("c") + utf8(b"\xffpw"), b"\x00"))
        assert error is None
        assert events == [Connect(protocol_level=5, client_id="c", password=b"\xffpw")]

    def test_user_name_and_password(self) -> None:
        """3.1.3.5-6: User Name is a UTF-8 string, Password Binary Data."""
        wire = connect(b"MQTT", 4, 0xC2, utf8("c") + utf8("ü") + utf8(b"\x00\x01"))
        events, _ = feed(wire)
        assert events == [Connect(client_id="c", username="ü", password=b"\x00\x01")]

    def test_trailing_bytes_are_malformed(self) -> None:
        """3.1.3: the payload holds only the fields the flags announce."""
        wire = connect(b"MQTT", 4, 0x02, utf8("c") + b"\x00")
        assert error_of(wire) == (0x81, "CONNECT longer than its fields")

    def test_client_identifier_may_be_empty(self) -> None:
        """[MQTT-3.1.3-6]: a zero-length ClientID is allowed (the adapter decides)."""
        events, _ = feed(connect(b"MQTT", 4, 0x02, utf8("")))
        assert events == [Connect(client_id="")]


class TestConnectProperties:
    def test_connect_properties(self) -> None:
        """3.1.2.11: the CONNECT properties."""
        props = Properties(
            session_expiry_interval=10,
            receive_maximum=5,
            maximum_packet_size=1024,
            topic_alias_maximum=3,
            request_response_information=1,
            request_problem_information=0,
            user_properties=(("a", "b"),),
            authentication_method="SCRAM-SHA-1",
            authentication_data=b"\x01",
        )
        packet = Connect(protocol_level=5, client_id="c", properties=props)
        assert feed(encode([packet], level=None)) == ([packet], None)

    def test_authentication_data_needs_a_method(self) -> None:
        """3.1.2.11.10: Authentication Data without Authentication Method is a Protocol Error."""
        wire = connect(b"MQTT", 5, 0x02, utf8("c"), b"\x04\x16\x00\x01\x00")
        assert error_of(wire) == (0x82, "Authentication Data without Authentication Method")

    def test_will_properties_are_not_connect_properties(self) -> None:
        """3.1.2.11 / 3.1.3.2: Will Delay Interval is only a will property."""
        wire = connect(b"MQTT", 5, 0x02, utf8("c"), b"\x05\x18\x00\x00\x00\x01")
        assert error_of(wire) == (0x81, "Will Delay Interval is not allowed in CONNECT")


class TestConnack:
    def test_311_session_present_and_return_code(self) -> None:
        """3.2.2.1-3 (3.1.1): Session Present is bit 0; then the return code."""
        events, error = feed(b"\x20\x02\x01\x00", server=False, level=4)
        assert (events, error) == ([Connack(session_present=True)], None)
        events, _ = feed(b"\x20\x02\x00\x05", server=False, level=4)
        assert events == [Connack(reason_code=ConnectReturnCode.NOT_AUTHORIZED)]

    def test_reserved_acknowledge_flags(self) -> None:
        """[MQTT-3.2.2-1] bits 7-1 are reserved and MUST be 0."""
        assert error_of(b"\x20\x02\x02\x00", server=False, level=4) == (
            0x81,
            "reserved CONNACK flags set",
        )

    def test_31_has_no_session_present(self) -> None:
        """3.1: the first byte of the CONNACK variable header is reserved."""
        events, _ = feed(b"\x20\x02\x01\x00", server=False, level=3)
        assert events == [Connack()]
        assert encode([Connack(session_present=True)], level=3, server=True) == b"\x20\x02\x00\x00"

    def test_unknown_return_code(self) -> None:
        """3.2.2.3 (3.1.1): return codes 6-255 are reserved."""
        assert error_of(b"\x20\x02\x00\x06", server=False, level=4) == (
            0x82,
            "unknown CONNACK return code 6",
        )

    def test_mqtt_5_reason_code_and_properties(self) -> None:
        """3.2.2.2-3: a Reason Code, then the CONNACK properties."""
        props = Properties(
            assigned_client_identifier="auto-1",
            server_keep_alive=30,
            maximum_qos=1,
            retain_available=0,
            wildcard_subscription_available=1,
            subscription_identifier_available=1,
            shared_subscription_available=0,
            topic_alias_maximum=10,
            reason_string="ok",
            response_information="resp/",
            server_reference="other:1883",
        )
        packet = Connack(True, 0, props)
        wire = encode([packet], level=5, server=True)
        assert feed(wire, server=False, level=5) == ([packet], None)

    def test_mqtt_5_invalid_reason_code(self) -> None:
        """3.2.2.2: the Server uses one of the CONNACK Reason Codes."""
        assert error_of(b"\x20\x03\x00\x10\x00", server=False, level=5) == (
            0x82,
            "reason code 0x10 is not valid in CONNACK",
        )

    @pytest.mark.parametrize(
        ("v5", "v3"),
        [
            (ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, 1),
            (ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, 2),
            (ReasonCode.SERVER_UNAVAILABLE, 3),
            (ReasonCode.SERVER_BUSY, 3),
            (ReasonCode.BAD_USER_NAME_OR_PASSWORD, 4),
            (ReasonCode.NOT_AUTHORIZED, 5),
            (ReasonCode.BANNED, 5),
        ],
    )
    def test_send_translates_between_reason_and_return_codes(self, v5: int, v3: int) -> None:
        """The adapter may use MQTT 5 codes at every level (and 3.1.1 codes at 5)."""
        assert encode([Connack(reason_code=v5)], level=4, server=True) == bytes((0x20, 2, 0, v3))
        if v5 not in (ReasonCode.SERVER_BUSY, ReasonCode.BANNED):
            v5_wire = bytes((0x20, 3, 0, v5, 0))
            assert encode([Connack(reason_code=v3)], level=5, server=True) == v5_wire
            assert encode([Connack(reason_code=v5)], level=5, server=True) == v5_wire
