"""MQTT 3.12-3.13 PINGREQ/PINGRESP, 3.14 DISCONNECT, 3.15 AUTH.

Statement numbers are those of MQTT Version 5.0 (OASIS, 2019); each docstring
quotes or paraphrases the statement covered.
"""

from __future__ import annotations

import pytest

from sealmq.wire.mqtt import Auth, Disconnect, Pingreq, Pingresp, Properties, ReasonCode

from .test_mqtt_codec import (
    LEVELS,
    client_error,
    encode,
    error_of,
    feed,
    from_client,
    parse_client,
    parse_server,
    server_error,
)


class TestPing:
    def test_no_variable_header_or_payload(self) -> None:
        """3.12-3.13: PINGREQ and PINGRESP are a fixed header only."""
        for level in LEVELS:
            assert parse_client(level, b"\xc0\x00") == Pingreq()
            assert parse_server(level, b"\xd0\x00") == Pingresp()
            assert client_error(level, b"\xc0\x01\x00") == (0x81, "PINGREQ longer than its fields")
            assert encode([Pingreq()], level=level) == b"\xc0\x00"
            assert encode([Pingresp()], level=level, server=True) == b"\xd0\x00"


class TestDisconnect:
    def test_311_from_the_client(self) -> None:
        """3.14 (3.1.1): DISCONNECT has no variable header or payload."""
        for level in (3, 4):
            assert parse_client(level, b"\xe0\x00") == Disconnect()
            assert client_error(level, b"\xe0\x01\x00")[0] == 0x81

    def test_311_servers_do_not_send_it(self) -> None:
        """3.14 (3.1.1): DISCONNECT flows from Client to Server only."""
        assert encode([Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)], level=4, server=True) == b""
        assert server_error(4, b"\xe0\x00") == (0x82, "DISCONNECT from a server needs MQTT 5")

    def test_mqtt_5_short_forms(self) -> None:
        """3.14.2.1: Reason Code 0 and no properties may be left out (Remaining Length 0)."""
        assert parse_client(5, b"\xe0\x00") == Disconnect()
        assert parse_client(5, b"\xe0\x01\x04") == Disconnect(
            ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
        )
        assert parse_client(5, b"\xe0\x02\x00\x00") == Disconnect()
        assert encode([Disconnect()], level=5) == b"\xe0\x00"
        assert encode([Disconnect(0x8B)], level=5, server=True) == b"\xe0\x01\x8b"

    def test_mqtt_5_properties(self) -> None:
        """3.14.2.2: Session Expiry Interval, Reason String, User Property, Server Reference."""
        props = Properties(
            session_expiry_interval=0,
            reason_string="bye",
            user_properties=(("a", "b"),),
            server_reference="elsewhere",
        )
        packet = Disconnect(ReasonCode.USE_ANOTHER_SERVER, props)
        assert parse_server(5, encode([packet], level=5, server=True)) == packet

    @pytest.mark.parametrize("code", [0x01, 0x10, 0x84, 0x88, 0xFF])
    def test_mqtt_5_invalid_reason_code(self, code: int) -> None:
        """3.14.2.1: the sender uses one of the DISCONNECT Reason Codes."""
        assert client_error(5, bytes((0xE0, 1, code))) == (
            0x82,
            f"reason code 0x{code:02X} is not valid in DISCONNECT",
        )


class TestAuth:
    def test_short_form_is_success(self) -> None:
        """3.15.2.1: Remaining Length 0 means Reason Code 0 (Success), no properties."""
        assert parse_client(5, b"\xf0\x00") == Auth()
        assert encode([Auth()], level=5) == b"\xf0\x00"

    def test_reason_code_and_properties(self) -> None:
        """3.15.2.1-2: Continue authentication / Re-authenticate, method and data."""
        props = Properties(authentication_method="SCRAM-SHA-256", authentication_data=b"\x01\x02")
        packet = Auth(ReasonCode.CONTINUE_AUTHENTICATION, props)
        assert parse_client(5, encode([packet], level=5)) == packet
        # Never a reason code without the property length.
        assert encode([Auth(ReasonCode.RE_AUTHENTICATE)], level=5) == b"\xf0\x02\x19\x00"

    def test_invalid_reason_code(self) -> None:
        """3.15.2.1: 0x00, 0x18 and 0x19 only."""
        assert client_error(5, b"\xf0\x02\x87\x00") == (
            0x82,
            "reason code 0x87 is not valid in AUTH",
        )

    def test_server_may_send_auth_before_connack(self) -> None:
        """4.12: the Server may answer CONNECT with AUTH before CONNACK."""
        wire = b"\xf0\x02\x18\x00\x20\x03\x00\x00\x00"
        events, error = feed(wire, server=False, level=5)
        assert error is None
        assert events[0] == Auth(ReasonCode.CONTINUE_AUTHENTICATION)

    def test_connack_first_otherwise(self) -> None:
        """3.2: the first packet from the Server is CONNACK (or AUTH)."""
        assert error_of(b"\xd0\x00", server=False, level=5) == (0x82, "first packet is not CONNACK")
        assert error_of(b"\x20\x03\x00\x00\x00" * 2, server=False, level=5) == (
            0x82,
            "second CONNACK",
        )

    def test_other_auth_properties_are_malformed(self) -> None:
        """2.2.2.2: AUTH allows Authentication Method/Data, Reason String, User Property."""
        assert from_client(5, b"\xf0\x05\x18\x03\x23\x00\x01")[1] == (
            0x81,
            "Topic Alias is not allowed in AUTH",
        )
