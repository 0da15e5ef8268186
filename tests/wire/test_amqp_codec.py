"""sealmq.wire.amqp against python-qpid-proton's own encoder and decoder as the oracle.

Every value Proton can write, this decodes to what Proton decodes; every value this
writes, Proton reads back as the value given; and a message's sections agree with
``proton.Message`` field by field, both ways. Malformed bytes raise AmqpDecodeError and
nothing else.
"""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proton import (
    UNDESCRIBED,
    Array,
    Data,
    Described,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from proton import Message as ProtonMessage

from sealmq.wire.amqp import (
    AmqpDecodeError,
    AmqpMessage,
    Body,
    bid_from_decimal,
    decimal_from_bid,
    decode_message,
    decode_value,
    encode_message,
    encode_value,
)

_symbols = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.uuids(),
    _symbols.map(symbol),
    st.integers(0, 255).map(ubyte),
    st.integers(0, 0xFFFF).map(ushort),
    st.integers(0, 0xFFFFFFFF).map(uint),
    st.integers(0, (1 << 64) - 1).map(ulong),
    st.integers(-128, 127).map(byte),
    st.integers(-(1 << 15), (1 << 15) - 1).map(short),
    st.integers(-(1 << 31), (1 << 31) - 1).map(int32),
    st.floats(allow_nan=False, width=32).map(float32),
    st.characters(exclude_categories=("Cs",)).map(char),
    st.integers(-(1 << 63), (1 << 63) - 1).map(timestamp),
    st.integers(0, 0xFFFFFFFF).map(decimal32),
    st.integers(0, (1 << 64) - 1).map(decimal64),
    st.binary(min_size=16, max_size=16).map(decimal128),
)
_keys = st.one_of(st.text(max_size=20), _symbols.map(symbol), st.integers(0, 1000).map(ulong))
_arrays = st.one_of(
    st.lists(st.integers(-(1 << 31), (1 << 31) - 1).map(int32), max_size=70).map(
        lambda xs: Array(UNDESCRIBED, Data.INT, *xs)
    ),
    st.lists(_symbols.map(symbol), max_size=10).map(
        lambda xs: Array(UNDESCRIBED, Data.SYMBOL, *xs)
    ),
    st.lists(st.text(max_size=10), max_size=10).map(
        lambda xs: Array(UNDESCRIBED, Data.STRING, *xs)
    ),
    st.lists(st.booleans(), max_size=10).map(lambda xs: Array(UNDESCRIBED, Data.BOOL, *xs)),
    st.lists(st.uuids(), max_size=5).map(lambda xs: Array(symbol("ids"), Data.UUID, *xs)),
)
# Described values wrap a scalar or a list of scalars: Proton's own Data drops items
# around a described value nested in another (its get_object), so it cannot be the
# oracle for those.
_described = st.tuples(
    st.one_of(_symbols.map(symbol), st.integers(0, 1 << 40).map(ulong)),
    st.one_of(_scalars, st.lists(_scalars, max_size=4)),
).map(lambda pair: Described(pair[0], pair[1]))
_values = st.recursive(
    st.one_of(_scalars, _arrays),
    lambda inner: st.one_of(
        st.lists(st.one_of(inner, _described), max_size=6),
        st.dictionaries(_keys, st.one_of(inner, _described), max_size=6),
    ),
    max_leaves=20,
)


def _proton_encode(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def _proton_decode(encoded: bytes) -> Any:
    data = Data()
    data.decode(encoded)
    data.rewind()
    data.next()
    return _normal(data.get_object())  # before ``data`` goes: its binaries are views of it


def _normal(value: Any) -> Any:
    """Proton hands back binaries as memoryviews; compare them as bytes."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {_normal(k): _normal(v) for k, v in value.items()}
    if isinstance(value, Described):
        return Described(_normal(value.descriptor), _normal(value.value))
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *(_normal(v) for v in value.elements))
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _normal(a), _normal(b)
    return bool(a == b and type(a) is type(b)) if not isinstance(a, list | dict) else a == b


@settings(max_examples=300, deadline=None)
@given(_values)
def test_what_proton_writes_decodes_as_proton_reads_it(value: Any) -> None:
    encoded = _proton_encode(value)
    decoded, end = decode_value(encoded)
    assert end == len(encoded)
    assert _same(decoded, _proton_decode(encoded))


@settings(max_examples=300, deadline=None)
@given(_values)
def test_what_we_write_proton_reads_back_as_given(value: Any) -> None:
    out = bytearray()
    encode_value(value, out)
    assert _same(_proton_decode(bytes(out)), _proton_decode(_proton_encode(value)))
    again, end = decode_value(bytes(out))
    assert end == len(out) and _same(again, _proton_decode(bytes(out)))


def test_types_are_kept_where_python_would_lose_them() -> None:
    for value, code in (
        (int32(5), 0x54),
        (5, 0x55),
        (ulong(0), 0x44),
        (uint(300), 0x70),
        (symbol("s"), 0xA3),
        ("s", 0xA1),
        (b"s", 0xA0),
        (timestamp(1), 0x83),
        (float32(1.5), 0x72),
        (1.5, 0x82),
    ):
        out = bytearray()
        encode_value(value, out)
        assert out[0] == code, value
        decoded, _ = decode_value(bytes(out))
        assert type(decoded) is type(value) and decoded == value


def test_long_strings_and_big_compounds_use_the_wide_constructors() -> None:
    for value in ("x" * 300, b"y" * 256, [1] * 300, {str(i): i for i in range(200)}):
        out = bytearray()
        encode_value(value, out)
        assert out[0] in (0xB1, 0xB0, 0xD0, 0xD1)
        assert _proton_decode(bytes(out)) == value


# ------------------------------------------------------------------------ messages

_text = st.text(max_size=40)
_ids = st.one_of(
    st.none(), _text, st.binary(max_size=16), st.uuids(), st.integers(0, 1 << 60).map(ulong)
)
_application = st.dictionaries(st.text(max_size=10), _scalars, max_size=5)
_annotations = st.dictionaries(_symbols.map(symbol), _scalars, max_size=4)
_bodies = st.one_of(
    st.tuples(st.just("data"), st.binary(max_size=3000)),
    st.tuples(st.just("value"), _values),
    st.tuples(st.just("sequence"), st.lists(_scalars, max_size=5)),
    st.tuples(st.just("none"), st.none()),
)


@st.composite
def _proton_messages(draw: st.DrawFn) -> ProtonMessage:
    m = ProtonMessage()
    m.durable = draw(st.booleans())
    m.priority = draw(st.integers(0, 9))
    if draw(st.booleans()):
        m.ttl = draw(st.integers(1, 10**6)) / 1000
    m.first_acquirer = draw(st.booleans())
    m.delivery_count = draw(st.integers(0, 100))
    m.id = draw(_ids)
    if draw(st.booleans()):
        m.user_id = draw(st.binary(min_size=1, max_size=10))
    m.address = draw(st.one_of(st.none(), _text))
    m.subject = draw(st.one_of(st.none(), _text))
    m.reply_to = draw(st.one_of(st.none(), _text))
    m.correlation_id = draw(_ids)
    if draw(st.booleans()):  # Proton would write a None as the symbol "None"
        m.content_type = draw(_symbols.filter(lambda s: s not in ("", "None")).map(symbol))
    if draw(st.booleans()):
        m.creation_time = draw(st.integers(0, 2 * 10**12)) / 1000
    if draw(st.booleans()):
        m.expiry_time = draw(st.integers(0, 2 * 10**12)) / 1000
    m.group_id = draw(st.one_of(st.none(), _text))
    if m.group_id is not None:
        m.group_sequence = draw(st.integers(0, 1000))
    m.properties = draw(_application) or None
    m.annotations = draw(_annotations) or None
    kind, body = draw(_bodies)
    if kind in ("data", "sequence"):
        m.body, m.inferred = body, True  # bytes as a data section, a list as a sequence
    elif kind == "value":
        m.body, m.inferred = body, False
    return m


def _expected(m: ProtonMessage) -> dict[str, Any]:
    """What a reader of ``m`` must see, in our units (milliseconds)."""
    return {
        "durable": bool(m.durable),
        "priority": m.priority,
        "ttl": round(m.ttl * 1000) if m.ttl else None,
        "first_acquirer": bool(m.first_acquirer),
        "delivery_count": m.delivery_count,
        "id": _normal(m.id),
        "user_id": bytes(m.user_id) if m.user_id else None,
        "to": m.address,
        "subject": m.subject,
        "reply_to": m.reply_to,
        "correlation_id": _normal(m.correlation_id),
        # Proton reads an absent content-type as the symbol "None".
        "content_type": str(m.content_type) if m.content_type not in ("", "None") else None,
        "expiry_time": round(m.expiry_time * 1000) if m.expiry_time else None,
        "creation_time": round(m.creation_time * 1000) if m.creation_time else None,
        "group_id": m.group_id,
        "group_sequence": m.group_sequence if m.group_id is not None else None,
        "properties": _normal(dict(m.properties)) if m.properties else None,
        "annotations": _normal(dict(m.annotations)) if m.annotations else None,
        "body": _normal(m.body),
    }


def _seen(d: AmqpMessage) -> dict[str, Any]:
    return {
        "durable": d.durable,
        "priority": d.priority,
        "ttl": d.ttl or None,
        "first_acquirer": d.first_acquirer,
        "delivery_count": d.delivery_count,
        "id": _normal(d.id),
        "user_id": d.user_id or None,
        "to": d.to,
        "subject": d.subject,
        "reply_to": d.reply_to,
        "correlation_id": _normal(d.correlation_id),
        "content_type": d.content_type,
        "expiry_time": d.expiry_time or None,
        "creation_time": d.creation_time or None,
        "group_id": d.group_id,
        "group_sequence": d.group_sequence if d.group_id is not None else None,
        "properties": _normal(d.properties) if d.properties else None,
        "annotations": _normal(d.annotations) if d.annotations else None,
        "body": _normal(d.body),
    }


@settings(max_examples=300, deadline=None)
@given(_proton_messages())
def test_a_message_proton_writes_reads_field_by_field(m: ProtonMessage) -> None:
    decoded = decode_message(bytes(m.encode()))
    assert _seen(decoded) == _expected(m)


@settings(max_examples=300, deadline=None)
@given(_proton_messages())
def test_a_message_we_write_proton_reads_field_by_field(m: ProtonMessage) -> None:
    ours = encode_message(decode_message(bytes(m.encode())))
    back = ProtonMessage()
    back.decode(ours)
    assert _expected(back) == _expected(m)


def test_data_sections_join_and_an_amqp_value_keeps_its_encoding() -> None:
    two = b"\x00\x53\x75\xa0\x02ab" + b"\x00\x53\x75\xa0\x01c"
    message = decode_message(two)
    assert (message.body_kind, message.body) == (Body.DATA, b"abc")
    value = b"\x00\x53\x77" + _proton_encode(Described(symbol("x"), [ulong(1)]))
    message = decode_message(value)
    assert message.body_kind is Body.VALUE and message.raw_value == value[3:]
    assert encode_message(message) == value


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x00",  # a section descriptor missing
        b"\x00\x53\x75",  # a section without its value
        b"\x00\x53\x75\xa0\x05ab",  # a binary shorter than its size
        b"\x00\x53\x70\xc0\x05\x02\x41",  # a list shorter than its size
        b"\x00\x53\x74\xc1\x02\x01\x40",  # a map with an odd count
        b"\x00\x53\x77\xff",  # an unknown constructor
        b"\x53\x75",  # a section that is not described
        b"\x00\x53\x99\x40",  # an unknown section
        b"\x00\x45\x40",  # a section described by a list
        b"\x00\x53\x77\xa1\x02\xff\xfe",  # a string that is not UTF-8
        b"\x00\x53\x75\xa0\x00" + b"\x00\x53\x77\x40",  # two kinds of body
        b"\x00\x53\x75\x40",  # a data section that is not binary
        b"\x00\x53\x77" + b"\xc0\x03\x01" * 5000,  # nested deeper than any real value
        b"\x00\x53\x73\xc0\x03\x01\x71",  # a property list holding a truncated int
        b"\x00\x53\x70\xc0\x02\x01\xa1\x01x",  # a priority that is a string
    ],
)
def test_malformed_sections_are_refused(encoded: bytes) -> None:
    with pytest.raises(AmqpDecodeError):
        decode_message(encoded)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused_cleanly(garbage: bytes) -> None:
    with contextlib.suppress(AmqpDecodeError):  # anything else fails the test
        decode_message(garbage)


@settings(max_examples=200, deadline=None)
@given(_proton_messages(), st.data())
def test_a_truncated_message_is_refused(m: ProtonMessage, data: st.DataObject) -> None:
    encoded = bytes(m.encode())
    cut = data.draw(st.integers(1, len(encoded) - 1)) if len(encoded) > 1 else 0
    try:
        decode_message(encoded[:cut])
    except AmqpDecodeError:
        return
    # A cut on a section boundary is a shorter, well-formed message.


def test_uuid_ids_and_ulong_ids_keep_their_types() -> None:
    ident = uuid.uuid4()
    out = encode_message(AmqpMessage(id=ident, correlation_id=7))
    back = decode_message(out)
    assert back.id == ident and type(back.correlation_id) is ulong and back.correlation_id == 7


# ------------------------------------------------------------------------ decimals


@pytest.mark.parametrize(
    ("bits", "width", "value"),
    [
        (0x32800001, 32, "1"),
        (0x31C0000000000001, 64, "1"),
        (0x30400000000000000000000000000001, 128, "1"),
        (0xB2800001, 32, "-1"),
        (0x6CB8967F, 32, "9999999"),  # a 24-bit coefficient: the "11" form
        (0x6C7386F26FC0FFFF, 64, "9999999999999999"),
        (0x31A000000000000F, 64, "1.5"),
        (0x78000000, 32, "Infinity"),
    ],
)
def test_bid_decimals_read_and_write_as_ieee_754_says(bits: int, width: int, value: str) -> None:
    assert decimal_from_bid(bits, width) == Decimal(value)
    assert bid_from_decimal(Decimal(value), width) == bits


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: len(d.as_tuple().digits) <= 34 and -6000 < int(d.as_tuple().exponent) < 6000
    )
)
def test_a_decimal128_keeps_its_value(value: Decimal) -> None:
    bits = bid_from_decimal(value, 128)
    assert bits is not None
    assert decimal_from_bid(bits, 128) == value


def test_a_decimal_too_large_for_its_format_does_not_fit() -> None:
    assert bid_from_decimal(Decimal("12345678"), 32) is None  # 8 digits: decimal32 has 7
    assert bid_from_decimal(Decimal("1E+200"), 32) is None
    assert bid_from_decimal(Decimal("1E+90"), 32) is not None  # trailing zeros absorbed
