"""OpenWire (ActiveMQ's native protocol), version 12, tight and loose: a sans-IO codec.

See ``docs/openwire.md``.
"""

from sealmq.wire.openwire.codec import MIN_VERSION, VERSION, Negotiated, OpenWireCodec
from sealmq.wire.openwire.errors import OpenWireError
from sealmq.wire.openwire.marshal import (
    Structure,
    Throwable,
    Typed,
    decode_primitive_map,
    decode_stream,
    encode_primitive_map,
    encode_stream,
    is_message,
    java_utf,
    read_java_utf,
)
from sealmq.wire.openwire.schema import Type, name_of

__all__ = [
    "MIN_VERSION",
    "VERSION",
    "Negotiated",
    "OpenWireCodec",
    "OpenWireError",
    "Structure",
    "Throwable",
    "Type",
    "Typed",
    "decode_primitive_map",
    "decode_stream",
    "encode_primitive_map",
    "encode_stream",
    "is_message",
    "java_utf",
    "name_of",
    "read_java_utf",
]
