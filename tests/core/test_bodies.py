"""Map and stream bodies, and the typed values in them: round-trips and malformed input."""

from __future__ import annotations

import contextlib
import math
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealmq.core.bodies import (
    BodyFormatError,
    decode_map,
    decode_stream,
    encode_map,
    encode_stream,
)
from sealmq.core.model import (
    Byte,
    Char,
    Float32,
    Int,
    PropertyValue,
    Short,
    Symbol,
    Timestamp,
)

#: Every kind of value, each drawn as its own type.
values: st.SearchStrategy[PropertyValue] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.integers(Byte.MIN, Byte.MAX).map(Byte),
    st.integers(Short.MIN, Short.MAX).map(Short),
    st.integers(Int.MIN, Int.MAX).map(Int),
    st.integers(Timestamp.MIN, Timestamp.MAX).map(Timestamp),
    st.floats(width=32, allow_nan=False).map(Float32),
    st.characters().map(Char),
    st.text().map(Symbol),
    st.uuids(),
    st.decimals(allow_nan=False),
)


def same(a: PropertyValue, b: PropertyValue) -> bool:
    """Equal, and of the same type (so a Short does not come back a plain int)."""
    return type(a) is type(b) and a == b


@given(st.dictionaries(st.text(), values, max_size=20))
def test_map_round_trip(entries: dict[str, PropertyValue]) -> None:
    decoded = decode_map(encode_map(entries))
    assert list(decoded) == list(entries)
    assert all(same(decoded[k], v) for k, v in entries.items())


@given(st.lists(values, max_size=20))
def test_stream_round_trip(items: list[PropertyValue]) -> None:
    decoded = decode_stream(encode_stream(items))
    assert len(decoded) == len(items)
    assert all(same(a, b) for a, b in zip(decoded, items, strict=True))


@given(st.binary(max_size=200))
def test_garbage_is_a_body_format_error_or_a_body(data: bytes) -> None:
    for decode in (decode_map, decode_stream):
        with contextlib.suppress(BodyFormatError):
            decode(data)


@given(st.lists(values, min_size=1, max_size=5), st.data())
def test_a_cut_body_is_refused(items: list[PropertyValue], data: st.DataObject) -> None:
    body = encode_stream(items)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(BodyFormatError):
        decode_stream(body[:cut])


def test_known_bytes() -> None:
    # The layout is a stored and cross-protocol format: pin it.
    assert encode_map({"a": Short(-2)}) == b"\x00\x00\x00\x01\x00\x00\x00\x01a\x09\xff\xfe"
    assert encode_stream([None, True, 1]) == (
        b"\x00\x00\x00\x03\x00\x02\x03" + (1).to_bytes(8, "big")
    )
    u = UUID(int=1)
    assert encode_stream([u]) == b"\x00\x00\x00\x01\x0f" + u.bytes
    assert decode_stream(encode_stream([Decimal("1.10")])) == [Decimal("1.10")]


def test_a_repeated_map_key_is_refused() -> None:
    one = encode_map({"k": 1})
    body = b"\x00\x00\x00\x02" + one[4:] + one[4:]
    with pytest.raises(BodyFormatError, match="twice"):
        decode_map(body)


def test_bytes_after_the_body_are_refused() -> None:
    with pytest.raises(BodyFormatError):
        decode_map(encode_map({}) + b"\x00")


def test_a_value_of_no_known_type_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_map({"x": object()})  # type: ignore[dict-item]


def test_tagged_types_range_and_behave_as_their_value() -> None:
    with pytest.raises(ValueError):
        Byte(128)
    with pytest.raises(ValueError):
        Short(-(2**15) - 1)
    with pytest.raises(ValueError):
        Char("ab")
    with pytest.raises(OverflowError):
        Float32(1e39)
    assert Byte(5) + 1 == 6 and str(Int(7)) == "7" and str(Symbol("s")) == "s"
    assert Float32(0.1) == pytest.approx(0.1) and Float32(0.1) != 0.1
    assert math.isinf(Float32(math.inf))
    assert repr(Short(3)) == "Short(3)" and str(Float32(0.5)) == "0.5"
