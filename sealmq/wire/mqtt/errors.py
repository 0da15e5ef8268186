"""The one error the MQTT codec raises, and the codes it carries."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ConnectReturnCode", "MqttError", "ReasonCode"]


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (MQTT 5.0, 2.4).  Several names share a value."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnectReturnCode(IntEnum):
    """CONNACK return codes of MQTT 3.1 and 3.1.1 (3.1.1, 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class MqttError(Exception):
    """The peer broke the MQTT protocol, or a packet cannot be put on the wire.

    ``reason_code`` is the MQTT 5 reason code for it (``ReasonCode``); on a
    receive error it is what goes into the CONNACK (before CONNECT completed)
    or DISCONNECT sent before closing.  ``message`` is short and safe to send
    back as a Reason String: it names the problem, never internal detail.

    Raised by ``receive_data``/``receive_eof``: the codec is dead afterwards.
    With MQTT 5 (``codec.protocol_level == 5``) send a CONNACK or DISCONNECT
    carrying the code, then close.  Before MQTT 5 there is no such packet,
    except that UNSUPPORTED_PROTOCOL_VERSION is answered with a 3.1.1 CONNACK
    (``send(Connack(reason_code=...))`` writes return code 1): just close.
    Also raised by ``send`` when a packet cannot be encoded (the codec stays
    usable and nothing was queued).
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message

    def __repr__(self) -> str:
        return f"MqttError(0x{self.reason_code:02X}, {self.message!r})"
