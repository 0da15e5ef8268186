"""The OpenWire codec: golden bytes from ActiveMQ's JMS client, round trips of every
schema, modified UTF-8, primitive maps, split feeds, garbage and the framing errors."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealmq.wire.openwire import (
    OpenWireCodec,
    OpenWireError,
    Structure,
    Throwable,
    Type,
    Typed,
    decode_primitive_map,
    decode_stream,
    encode_primitive_map,
    encode_stream,
    java_utf,
    read_java_utf,
)
from sealmq.wire.openwire.marshal import (
    read_structure,
    read_tight_structure,
    write_structure,
    write_tight_structure,
)
from sealmq.wire.openwire.schema import SCHEMAS, Kind

#: What ActiveMQ 5.17.2's client sent first to a broker on tcp:// (captured 2026-12-04):
#: its WireFormatInfo, then, once it had the broker's, its ConnectionInfo.
CLIENT_HELLO = bytes.fromhex(
    "00000164014163746976654d510000000c01000001520000000e0011537461636b5472616365456e61626c65640101000f506c6174666f726d44657461696c730900044a617661000c4361636865456e61626c656401010004486f73740900093132372e302e302e3100115463704e6f44656c6179456e61626c65640101001253697a6550726566697844697361626c656401000009436163686553697a650500000400000c50726f76696465724e616d650900084163746976654d5100145469676874456e636f64696e67456e61626c65640101000c4d61784672616d6553697a65067fffffffffffffff00154d6178496e61637469766974794475726174696f6e06000000000000753000204d6178496e61637469766974794475726174696f6e496e6974616c44656c617906000000000000753000134d61784672616d6553697a65456e61626c65640101000f50726f766964657256657273696f6e090006352e31372e3200000062030000000101017801001d49443a766d2d34313636352d313739363335343938303836352d313a3101001d49443a766d2d34313636352d313739363335343938303836352d303a3101000a6170702d73656372657401000361707000000101000000"
)


def frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        (size,) = struct.unpack_from(">i", data)
        out.append(data[4 : 4 + size])
        data = data[4 + size :]
    return out


#: The same, to a broker offering tight encoding: the ConnectionInfo is tight.
CLIENT_HELLO_TIGHT = bytes.fromhex(
    "00000164014163746976654d510000000c01000001520000000e0011537461636b5472616365456e61626c65640101000f506c6174666f726d44657461696c730900044a617661000c4361636865456e61626c656401010004486f73740900093132372e302e302e3100115463704e6f44656c6179456e61626c65640101001253697a6550726566697844697361626c656401000009436163686553697a650500000400000c50726f76696465724e616d650900084163746976654d5100145469676874456e636f64696e67456e61626c65640101000c4d61784672616d6553697a65067fffffffffffffff00154d6178496e61637469766974794475726174696f6e06000000000000753000204d6178496e61637469766974794475726174696f6e496e6974616c44656c617906000000000000753000134d61784672616d6553697a65456e61626c65640101000f50726f766964657256657273696f6e090006352e31372e32000000590303ff33000000000178001d49443a766d2d33383233392d313739363335353438383139362d313a31001d49443a766d2d33383233392d313739363335353438383139362d303a31000a6170702d7365637265740003617070"
)


def negotiated_codec(*, tight: bool = False) -> OpenWireCodec:
    """A broker-side codec that has the client's WireFormatInfo (which offers tight)."""
    codec = OpenWireCodec(tight=tight)
    codec.receive_data(CLIENT_HELLO[: 4 + len(frames(CLIENT_HELLO)[0])])
    codec.events_received()
    return codec


@pytest.mark.parametrize(("tight", "hello"), [(False, CLIENT_HELLO), (True, CLIENT_HELLO_TIGHT)])
def test_the_jms_clients_hello_is_parsed_and_negotiated(tight: bool, hello: bytes) -> None:
    codec = OpenWireCodec(tight=tight)
    codec.receive_data(hello)
    info, connection = codec.events_received()
    assert info.type == Type.WIREFORMAT_INFO and info.version == 12
    properties = decode_primitive_map(info.marshalled_properties)
    assert properties["TightEncodingEnabled"] is True
    assert properties["MaxInactivityDuration"] == 30000
    assert codec.negotiated is not None
    # The client asks for tight encoding, cache and stack traces; the broker offers no
    # cache nor stack traces, and tight encoding as told.
    assert codec.negotiated.version == 12
    assert codec.negotiated.tight is tight
    assert codec.negotiated.stack_trace is False
    assert codec.negotiated.max_inactivity_ms == 30000
    assert connection.type == Type.CONNECTION_INFO
    assert connection.response_required and connection.command_id == 1
    assert (connection.user_name, connection.password) == ("app", "app-secret")
    assert connection.connection_id.value.startswith("ID:")


def test_the_clients_commands_encode_back_to_the_same_bytes() -> None:
    for frame in frames(CLIENT_HELLO):
        assert write_structure(read_structure(frame)) == frame
    info, connection = frames(CLIENT_HELLO_TIGHT)
    assert write_structure(read_structure(info)) == info
    assert write_tight_structure(read_tight_structure(connection)) == connection
    tight = read_tight_structure(connection)
    assert (tight.user_name, tight.password, tight.manageable) == ("app", "app-secret", True)


def test_fed_one_byte_at_a_time_the_same_commands_arrive() -> None:
    whole = OpenWireCodec(tight=False)
    whole.receive_data(CLIENT_HELLO)
    expected = whole.events_received()
    codec = OpenWireCodec(tight=False)
    got: list[Structure] = []
    for i in range(len(CLIENT_HELLO)):
        codec.receive_data(CLIENT_HELLO[i : i + 1])
        got.extend(codec.events_received())
    assert got == expected
    assert codec.pending_frame_offset is None


def test_the_brokers_wire_format_info_offers_tight_encoding_but_no_cache() -> None:
    info = OpenWireCodec().wire_format_info()
    properties = decode_primitive_map(info.marshalled_properties)
    assert properties["TightEncodingEnabled"] is True
    info = OpenWireCodec(tight=False).wire_format_info()
    assert decode_primitive_map(info.marshalled_properties)["TightEncodingEnabled"] is False
    assert properties["CacheEnabled"] is False
    assert properties["CacheSize"] == Typed(Typed.INT, 0)  # an Integer, as Java reads it


# ----------------------------------------------------------------- modified UTF-8


def test_modified_utf8_is_javas() -> None:
    assert java_utf("abc") == b"abc"
    assert java_utf("\x00") == b"\xc0\x80"
    assert java_utf("\u00e9") == b"\xc3\xa9"
    # A supplementary character is two three-byte surrogates (Java's writeUTF).
    assert java_utf("\U0001f600") == b"\xed\xa0\xbd\xed\xb8\x80"


@given(st.text())
def test_modified_utf8_round_trips(text: str) -> None:
    assert read_java_utf(java_utf(text)) == text


def test_invalid_modified_utf8_is_the_documented_error() -> None:
    with pytest.raises(OpenWireError):
        read_java_utf(b"\xff\xfe")


# ----------------------------------------------------------------- structures

_leaf_strings = st.text(max_size=20)
_longs = st.integers(-(2**63), 2**63 - 1)
_ints = st.integers(-(2**31), 2**31 - 1)


def _destination() -> st.SearchStrategy[Structure]:
    return st.builds(
        lambda t, n: Structure(t, physical_name=n),
        st.sampled_from([Type.ACTIVEMQ_QUEUE, Type.ACTIVEMQ_TOPIC, Type.ACTIVEMQ_TEMP_QUEUE]),
        _leaf_strings,
    )


def _value(kind: Kind) -> st.SearchStrategy[Any]:
    if kind is Kind.BOOL:
        return st.booleans()
    if kind is Kind.BYTE:
        return st.integers(-128, 127)
    if kind is Kind.SHORT:
        return st.integers(-(2**15), 2**15 - 1)
    if kind is Kind.INT:
        return _ints
    if kind is Kind.LONG:
        return _longs
    if kind is Kind.STRING:
        return st.none() | _leaf_strings
    if kind is Kind.OBJECT:
        return st.none() | _destination()
    if kind is Kind.OBJECTS:
        return st.none() | st.lists(_destination(), max_size=3).map(tuple)
    if kind is Kind.BYTES:
        return st.none() | st.binary(max_size=40)
    if kind is Kind.THROWABLE:
        return st.none() | st.builds(Throwable, _leaf_strings, st.none() | _leaf_strings)
    return st.just(b"ActiveMQ")


@st.composite
def structures(draw: st.DrawFn) -> Structure:
    type_code = draw(st.sampled_from(sorted(SCHEMAS)))
    fields = {name: draw(_value(kind)) for name, kind in SCHEMAS[type_code]}
    return Structure(type_code, **fields)


@given(structures())
def test_every_structure_round_trips(structure: Structure) -> None:
    encoded = write_structure(structure)
    decoded = read_structure(encoded)
    assert decoded.type == structure.type
    assert decoded.fields == structure.fields
    assert write_structure(decoded) == encoded


@given(structures())
def test_every_structure_round_trips_tightly(structure: Structure) -> None:
    encoded = write_tight_structure(structure)
    decoded = read_tight_structure(encoded)
    assert decoded.type == structure.type
    assert decoded.fields == structure.fields
    assert write_tight_structure(decoded) == encoded


@given(structures(), st.booleans())
def test_a_command_framed_and_fed_in_two_parts_arrives_whole(
    structure: Structure, tight: bool
) -> None:
    codec = negotiated_codec(tight=tight)
    sender = negotiated_codec(tight=tight)
    sender.send(structure)
    data = b"".join(sender.data_to_send())
    half = len(data) // 2
    codec.receive_data(data[:half])
    codec.receive_data(data[half:])
    (got,) = codec.events_received()
    assert got.fields == structure.fields


# ----------------------------------------------------------------- primitive maps

_primitive = (
    st.none()
    | st.booleans()
    | _longs
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.integers(-128, 127).map(lambda v: Typed(Typed.BYTE, v))
    | st.integers(-(2**15), 2**15 - 1).map(lambda v: Typed(Typed.SHORT, v))
    | _ints.map(lambda v: Typed(Typed.INT, v))
    | st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]).map(
        lambda v: Typed(Typed.CHAR, v)
    )
)


@given(st.dictionaries(st.text(max_size=10), _primitive, max_size=8))
def test_primitive_maps_round_trip(entries: dict[str, Any]) -> None:
    assert decode_primitive_map(encode_primitive_map(entries)) == entries


@given(st.lists(_primitive, max_size=8))
def test_stream_bodies_round_trip(values: list[Any]) -> None:
    assert decode_stream(encode_stream(values)) == values


def test_a_long_string_is_a_big_string() -> None:
    text = "x" * 10_000
    encoded = encode_primitive_map({"k": text})
    assert encoded[4 + 3] == 13  # BIG_STRING_TYPE: ActiveMQ's threshold is 8191 chars
    assert decode_primitive_map(encoded) == {"k": text}


# ----------------------------------------------------------------- bad input


def _framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (struct.pack(">i", 0), "invalid command size"),
        (struct.pack(">i", -5), "invalid command size"),
        (struct.pack(">i", 2**30), "over the maximum frame size"),
        (_framed(b"\xfe"), "unknown data structure type"),
        (_framed(b"\x03" + b"\x00" * 3), "ends before its fields"),
        (_framed(b"\x0a" + b"\x00" * 9), "followed by"),
    ],
)
def test_malformed_commands_are_the_documented_error(data: bytes, why: str) -> None:
    codec = negotiated_codec()
    with pytest.raises(OpenWireError, match=why):
        codec.receive_data(data)


def test_the_first_command_must_be_a_wire_format_info() -> None:
    keepalive = write_structure(Structure(Type.KEEP_ALIVE_INFO))
    with pytest.raises(OpenWireError, match="first command must be a WireFormatInfo"):
        OpenWireCodec().receive_data(_framed(keepalive))


def test_an_older_wire_version_is_refused() -> None:
    info = OpenWireCodec().wire_format_info()
    info.fields["version"] = 9
    with pytest.raises(OpenWireError, match="version 9 is not supported"):
        OpenWireCodec().receive_data(_framed(write_structure(info)))


def test_a_wrong_magic_is_refused() -> None:
    info = OpenWireCodec().wire_format_info()
    info.fields["magic"] = b"NotAMQ!!"
    with pytest.raises(OpenWireError, match="magic"):
        OpenWireCodec().receive_data(_framed(write_structure(info)))


@given(st.binary(max_size=200), st.booleans())
def test_garbage_gives_commands_or_the_documented_error(data: bytes, tight: bool) -> None:
    codec = negotiated_codec(tight=tight)
    try:
        codec.receive_data(data)
    except OpenWireError:
        return
    for event in codec.events_received():
        assert isinstance(event, Structure)


def test_eof_in_the_middle_of_a_command_is_reported() -> None:
    codec = negotiated_codec()
    codec.receive_data(b"\x00\x00\x00\x10\x0a")
    with pytest.raises(OpenWireError, match="middle of a command"):
        codec.receive_eof()
