"""Records: every op and every message field round-trips; bad payloads fail one documented way."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmq.core.bodies import ValueTag
from sealmq.core.model import (
    BodyKind,
    Destination,
    DestinationInfo,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
)
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddScheduled,
    AddSubscription,
    ForgetPrepared,
    Op,
    PrepareTransaction,
    RemoveDestination,
    RemoveMessage,
    RemoveScheduled,
    RemoveSubscription,
    ScheduledJob,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
)
from sealmq.store.errors import CorruptRecordError, StoreError
from sealmq.store.message_record import MessageField
from sealmq.store.records import (
    RECORD_FORMAT,
    RecordType,
    decode_record,
    encode_entry,
    encode_record,
    join_entries,
)
from tests.core.test_bodies import values as typed_values
from tests.store.conftest import full_message, make_message, message_fields, op_view

texts = st.text(max_size=20)
destinations = st.builds(Destination, st.sampled_from(DestinationKind), texts)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
property_values = typed_values
typed_ids = st.one_of(texts, st.binary(max_size=20), st.integers(0, 2**64 - 1), st.uuids())
messages = st.builds(
    Message,
    message_id=texts,
    destination=destinations,
    body=st.binary(max_size=200),
    body_kind=st.sampled_from(BodyKind),
    persistent=st.booleans(),
    priority=st.integers(0, 9),
    expiration=int64,
    timestamp=int64,
    correlation_id=st.none() | typed_ids,
    reply_to=st.none() | destinations,
    type=st.none() | texts,
    group_id=st.none() | texts,
    group_seq=int64,
    properties=st.dictionaries(texts, property_values, max_size=8),
    redelivery_count=st.integers(0, 2**31 - 1),
    original_destination=st.none() | destinations,
    origin=st.none() | texts,
    user_id=st.none() | texts,
    client_message_id=st.none() | typed_ids,
    content_type=st.none() | texts,
    content_encoding=st.none() | texts,
    subject=st.none() | texts,
    reply_to_group_id=st.none() | texts,
    delivery_time=int64,
    broker_path=st.lists(texts, max_size=3).map(tuple),
    producer_id=st.none() | texts,
    producer_seq=int64,
    annotations=st.none() | st.dictionaries(texts, st.binary(max_size=10), min_size=1, max_size=3),
)


def test_record_type_ids_are_stable() -> None:
    # On-disk values: renumbering would misread every existing journal.
    assert {t.name: t.value for t in RecordType} == {
        "ADD_MESSAGE": 1,
        "REMOVE_MESSAGE": 2,
        "ADD_SUBSCRIPTION": 3,
        "REMOVE_SUBSCRIPTION": 4,
        "ADD_SUBSCRIPTION_V2": 5,
        "SET_RETAINED": 6,
        "CLEAR_RETAINED": 7,
        "SET_SESSION_STATE": 8,
        "DELETE_SESSION_STATE": 9,
        "ADD_MESSAGE_V2": 10,
        "SET_RETAINED_V2": 11,
        "SET_DELIVERY_COUNT": 12,
        "ADD_DESTINATION": 13,
        "REMOVE_DESTINATION": 14,
        "ADD_SCHEDULED": 15,
        "REMOVE_SCHEDULED": 16,
        "PREPARE_TRANSACTION": 17,
        "FORGET_PREPARED": 18,
    }
    assert [t.value for t in ValueTag] == list(range(17))
    assert [f.value for f in MessageField] == list(range(1, 18))
    assert RECORD_FORMAT == 1


def test_every_op_type_round_trips_in_one_record() -> None:
    m = full_message()
    info = DurableSubscriptionInfo("client", "sub", Destination.topic("t.>"), "a > 1", True)
    ops: list[Op] = [
        AddMessage(m, ("queue:a", "sub:1:c:s")),
        RemoveMessage("ID:1", "queue:a"),
        AddSubscription(info),
        AddSubscription(DurableSubscriptionInfo("c2", "s2", Destination.topic("x"))),
        RemoveSubscription("client", "sub"),
        AddSubscription(
            DurableSubscriptionInfo("c3", "s3", Destination.topic("y"), None, False, b"\x00opt")
        ),
        SetRetained("a/b", full_message("retained")),
        SetRetained("a/b", None),
        SetSessionState("mqtt:c", b"\x01\x02state"),
        SetSessionState("mqtt:c", b""),
        SetSessionState("mqtt:c", None),
        SetDeliveryCount("ID:1", "queue:a", 3),
        AddDestination(DestinationInfo(Destination.queue("q.a"), b"\x01policy")),
        AddDestination(DestinationInfo(Destination(DestinationKind.TEMP_TOPIC, "t"))),
        RemoveDestination(Destination.queue("q.a")),
        AddScheduled(ScheduledJob("job-1", full_message("scheduled"), b"\x00delay=5")),
        RemoveScheduled("job-1"),
        PrepareTransaction(
            b"\x00xid",
            (AddMessage(full_message("prepared"), ("queue:a",)), RemoveMessage("ID:1", "queue:a")),
        ),
        ForgetPrepared(b"\x00xid"),
    ]
    payload, next_seq = encode_record(ops, 10)
    assert next_seq == 11  # only AddMessage takes a sequence number
    decoded = decode_record(payload)
    assert [seq for seq, _ in decoded] == [10] + [0] * (len(ops) - 1)
    add = decoded[0][1]
    assert isinstance(add, AddMessage)
    assert add.owners == ("queue:a", "sub:1:c:s")
    assert message_fields(add.message) == message_fields(m)
    assert add.message.origin is None  # never persisted
    assert [op_view(op) for _, op in decoded[1:]] == [op_view(op) for op in ops[1:]]
    retained = decoded[6][1]
    assert isinstance(retained, SetRetained) and retained.message is not None
    assert retained.message.origin is None


def test_a_subscription_without_options_keeps_the_first_record_type() -> None:
    # Journals without options stay readable by brokers that predate ADD_SUBSCRIPTION_V2.
    plain = DurableSubscriptionInfo("c", "n", Destination.topic("t"))
    with_options = DurableSubscriptionInfo("c", "n", Destination.topic("t"), options=b"o")
    assert encode_entry(0, AddSubscription(plain))[0] == RecordType.ADD_SUBSCRIPTION
    assert encode_entry(0, AddSubscription(with_options))[0] == RecordType.ADD_SUBSCRIPTION_V2
    # A V1 record as the first release wrote it.
    v1 = bytes([RECORD_FORMAT, 3, 0, 0, 0, 1, 99, 0, 0, 0, 1, 110, 1, 0, 0, 0, 1, 116, 1])
    assert decode_record(v1) == [
        (0, AddSubscription(DurableSubscriptionInfo("c", "n", Destination.topic("t"), None, True)))
    ]


def test_clearing_records_carry_only_their_key() -> None:
    assert encode_entry(0, SetRetained("t", None)) == bytes([7, 0, 0, 0, 1]) + b"t"
    assert encode_entry(0, SetSessionState("k", None)) == bytes([9, 0, 0, 0, 1]) + b"k"
    assert encode_entry(0, SetSessionState("k", b"")) == bytes([8, 0, 0, 0, 1]) + b"k" + bytes(4)


def test_sequence_numbers_count_add_messages_only() -> None:
    ops: list[Op] = [
        AddMessage(make_message(1), ("q",)),
        RemoveMessage("x", "q"),
        AddMessage(make_message(2), ("q",)),
    ]
    payload, next_seq = encode_record(ops, 5)
    assert next_seq == 7
    assert [seq for seq, _ in decode_record(payload)] == [5, 0, 6]


def test_entries_keep_their_sequence_numbers() -> None:
    a = AddMessage(make_message(1), ("q",))
    sub = AddSubscription(DurableSubscriptionInfo("c", "n", Destination.topic("t"), options=b"x"))
    retained = SetRetained("t", make_message(2))
    session = SetSessionState("k", b"v")
    entries = [encode_entry(99, a), encode_entry(0, sub), encode_entry(0, retained)]
    decoded = decode_record(join_entries([*entries, encode_entry(0, session)]))
    assert [seq for seq, _ in decoded] == [99, 0, 0, 0]
    assert decoded[1][1] == sub
    assert op_view(decoded[2][1]) == op_view(retained)
    assert decoded[3][1] == session


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(m=messages, owners=st.lists(texts, max_size=3), seq=st.integers(0, 2**64 - 1))
def test_any_message_round_trips(m: Message, owners: list[str], seq: int) -> None:
    payload, _ = encode_record([AddMessage(m, tuple(owners))], seq)
    [(got_seq, op)] = decode_record(payload)
    assert got_seq == seq
    assert isinstance(op, AddMessage)
    assert op.owners == tuple(owners)
    assert message_fields(op.message) == message_fields(m)
    for key, value in m.properties.items():
        assert type(op.message.properties[key]) is type(value)


@given(
    client=texts,
    name=texts,
    dest=destinations,
    selector=st.none() | texts,
    no_local=st.booleans(),
    options=st.binary(max_size=20),
)
def test_any_subscription_round_trips(
    client: str, name: str, dest: Destination, selector: str | None, no_local: bool, options: bytes
) -> None:
    ops: list[Op] = [
        AddSubscription(DurableSubscriptionInfo(client, name, dest, selector, no_local, options)),
        RemoveSubscription(client, name),
        RemoveMessage(name, client),
    ]
    payload, _ = encode_record(ops, 1)
    assert [op for _, op in decode_record(payload)] == ops


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.one_of(
            st.builds(SetRetained, texts, st.none() | messages),
            st.builds(SetSessionState, texts, st.none() | st.binary(max_size=50)),
        ),
        max_size=5,
    )
)
def test_any_retained_and_session_op_round_trips(ops: list[Op]) -> None:
    payload, next_seq = encode_record(ops, 7)
    assert next_seq == 7
    decoded = decode_record(payload)
    assert [seq for seq, _ in decoded] == [0] * len(ops)
    assert [op_view(op) for _, op in decoded] == [op_view(op) for op in ops]


def test_property_edge_values() -> None:
    props = {
        "min64": -(2**63),
        "max64": 2**63 - 1,
        "over": 2**63,
        "under": -(2**63) - 1,
        "huge": -(3**200),
        "nan": math.nan,
        "inf": -math.inf,
        "surrogate": "\udcff lone",
        "empty": "",
        "nul": "a\x00b",
    }
    m = make_message(1, properties=props)
    [(_, op)] = decode_record(encode_record([AddMessage(m, ("q",))], 1)[0])
    assert isinstance(op, AddMessage)
    got = op.message.properties
    assert math.isnan(got.pop("nan"))  # type: ignore[arg-type]
    props.pop("nan")
    assert got == props


def test_unstorable_values_raise_store_error() -> None:
    with pytest.raises(StoreError):
        encode_record([AddMessage(make_message(1, priority=2**40), ("q",))], 1)
    with pytest.raises(StoreError):
        bad = make_message(1, properties={"x": [1]})
        encode_record([AddMessage(bad, ("q",))], 1)
    with pytest.raises(StoreError):
        encode_record(["not an op"], 1)  # type: ignore[list-item]


@pytest.mark.parametrize(
    "second",
    [
        AddMessage(full_message(), ("q",)),
        AddSubscription(DurableSubscriptionInfo("c", "n", Destination.topic("t"), "s", True, b"o")),
        SetRetained("topic", full_message()),
        SetRetained("topic", None),
        SetSessionState("key", b"state"),
        SetSessionState("key", None),
        SetDeliveryCount("id", "owner", 5),
        AddDestination(DestinationInfo(Destination.queue("q"), b"opts")),
        RemoveDestination(Destination.topic("t")),
        AddScheduled(ScheduledJob("j", full_message(), b"s")),
        RemoveScheduled("j"),
        PrepareTransaction(b"x", (AddMessage(full_message(), ("q",)), RemoveMessage("a", "q"))),
        ForgetPrepared(b"x"),
    ],
    ids=lambda op: type(op).__name__,
)
def test_every_truncation_is_a_corrupt_record(second: Op) -> None:
    ops: list[Op] = [RemoveMessage("a", "b"), second]
    payload, _ = encode_record(ops, 1)
    boundary = len(encode_record(ops[:1], 1)[0])
    for cut in range(len(payload)):
        try:
            decoded = decode_record(payload[:cut])
        except CorruptRecordError:
            continue
        # Only a cut exactly between two entries leaves something decodable: the first entry.
        assert cut in (1, boundary)
        assert [op for _, op in decoded] == ops[: 0 if cut == 1 else 1]


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_decodes_or_raises_corrupt_record(data: bytes) -> None:
    with contextlib.suppress(CorruptRecordError):
        decode_record(bytes([RECORD_FORMAT]) + data)


def test_unknown_format_and_type_are_rejected() -> None:
    with pytest.raises(CorruptRecordError, match="format"):
        decode_record(b"\x09")
    with pytest.raises(CorruptRecordError, match="record type"):
        decode_record(bytes([RECORD_FORMAT, 77]))
    with pytest.raises(CorruptRecordError):
        decode_record(b"")


def test_a_plain_message_is_its_head_id_destination_and_body() -> None:
    m = Message("ID:1", Destination.queue("q"), b"hi", persistent=True)
    entry = encode_entry(5, AddMessage(m, ("queue:q",)))
    # type, seq, owners; version 2 head; id, destination, body; the end of the fields.
    assert len(entry) == (1 + 8 + 4 + 4 + 7) + 28 + (4 + 4) + (4 + 1) + (4 + 2) + 1
    assert entry[-1] == 0


def _with_field(tag: int, payload: bytes) -> bytes:
    m = Message("ID:1", Destination.queue("q"), b"hi")
    entry = encode_entry(1, AddMessage(m, ()))
    field = bytes([tag]) + len(payload).to_bytes(4, "big") + payload
    return join_entries([entry[:-1] + field + b"\x00"])


def test_an_unknown_field_is_skipped_unless_it_must_be_understood() -> None:
    [(_, op)] = decode_record(_with_field(0x7F, b"from a newer broker"))
    assert isinstance(op, AddMessage) and op.message.body == b"hi"
    with pytest.raises(CorruptRecordError, match="field 128"):
        decode_record(_with_field(0x80, b""))


def test_a_version_1_message_reads_into_the_model() -> None:
    # As brokers before message version 2 wrote it: QoS 1, retain, a correlation id
    # and one property.
    v1 = (
        bytes([RECORD_FORMAT, RecordType.SET_RETAINED])
        + b"\x00\x00\x00\x01t"
        + bytes([0x01 | 0x02 | 0x04 | 0x80, BodyKind.TEXT, DestinationKind.TOPIC, 1])
        + (4).to_bytes(4, "big")
        + (0).to_bytes(8, "big")
        + (1234).to_bytes(8, "big")
        + (0).to_bytes(8, "big")
        + (2).to_bytes(4, "big")
        + b"\x00\x00\x00\x02id\x00\x00\x00\x01t\x00\x00\x00\x02hi"
        + b"\x00\x00\x00\x04corr"
        + b"\x00\x00\x00\x01\x00\x00\x00\x01k\x06\x00\x00\x00\x01v"
    )
    [(_, op)] = decode_record(v1)
    assert isinstance(op, SetRetained) and op.message is not None
    m = op.message
    assert (m.message_id, m.destination, m.body, m.persistent) == (
        "id",
        Destination.topic("t"),
        b"hi",
        True,
    )
    assert (m.timestamp, m.redelivery_count, m.correlation_id) == (1234, 2, "corr")
    assert m.properties == {"k": "v"}
    assert m.annotations == {"mqtt": b"\x05"}  # QoS 1, published retained


def test_a_prepared_transaction_takes_no_sequence_number_and_nests_once() -> None:
    inner = AddMessage(make_message(1), ("q",))
    payload, next_seq = encode_record([PrepareTransaction(b"x", (inner,)), inner], 3)
    assert next_seq == 4  # only the top-level AddMessage
    [(seq_a, prepared), (seq_b, _)] = decode_record(payload)
    assert (seq_a, seq_b) == (0, 3)
    assert isinstance(prepared, PrepareTransaction) and op_view(prepared.ops[0]) == op_view(inner)
    with pytest.raises(StoreError):
        encode_record([PrepareTransaction(b"x", (PrepareTransaction(b"y", ()),))], 1)
    # Nor is one read inside another.
    nested = encode_entry(0, PrepareTransaction(b"y", ()))
    outer = bytes([RecordType.PREPARE_TRANSACTION]) + b"\x00\x00\x00\x01x"
    outer += len(nested).to_bytes(4, "big") + nested
    with pytest.raises(CorruptRecordError, match="record type 17"):
        decode_record(join_entries([outer]))
