"""AMQP 1.0 message sections and the type system they are written in: a sans-IO codec.

Framing and performatives are python-qpid-proton's engine (``sealmq.adapters.amqp``);
this is what the broker reads and writes for every message. See ``docs/amqp.md``.
"""

from sealmq.wire.amqp.message import AmqpMessage, Body, decode_message, encode_message
from sealmq.wire.amqp.types import (
    AmqpDecodeError,
    bid_from_decimal,
    decimal_from_bid,
    decode_value,
    encode_value,
)

__all__ = [
    "AmqpDecodeError",
    "AmqpMessage",
    "Body",
    "bid_from_decimal",
    "decimal_from_bid",
    "decode_message",
    "decode_value",
    "encode_message",
    "encode_value",
]
