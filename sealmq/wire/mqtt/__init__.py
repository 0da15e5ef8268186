"""MQTT 3.1/3.1.1/5.0 wire codec, sans-IO (see docs/mqtt-codec.md)."""

from __future__ import annotations

from .codec import DEFAULT_MAX_CONNECT_SIZE, DEFAULT_MAX_PACKET_SIZE, MqttCodec
from .errors import ConnectReturnCode, MqttError, ReasonCode
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from .properties import NO_PROPERTIES, Properties, PropertyId

__all__ = [
    "DEFAULT_MAX_CONNECT_SIZE",
    "DEFAULT_MAX_PACKET_SIZE",
    "NO_PROPERTIES",
    "Auth",
    "Connack",
    "Connect",
    "ConnectReturnCode",
    "Disconnect",
    "MqttCodec",
    "MqttError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "PropertyId",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "Will",
]
