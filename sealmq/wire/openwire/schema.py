"""OpenWire's data structures as one schema table: type codes and field order (version 12).

Each structure is a list of ``(field, kind)`` in wire order; the generic marshaller
(``marshal.py``) reads and writes every kind, in loose and in tight encoding. Field names are
ActiveMQ's (``org.apache.activemq.command``), in snake case.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["SCHEMAS", "Kind", "Type", "name_of"]


class Type(IntEnum):
    """Data structure type codes (ActiveMQ's ``CommandTypes``)."""

    WIREFORMAT_INFO = 1
    BROKER_INFO = 2
    CONNECTION_INFO = 3
    SESSION_INFO = 4
    CONSUMER_INFO = 5
    PRODUCER_INFO = 6
    TRANSACTION_INFO = 7
    DESTINATION_INFO = 8
    REMOVE_SUBSCRIPTION_INFO = 9
    KEEP_ALIVE_INFO = 10
    SHUTDOWN_INFO = 11
    REMOVE_INFO = 12
    CONTROL_COMMAND = 14
    FLUSH_COMMAND = 15
    CONNECTION_ERROR = 16
    CONSUMER_CONTROL = 17
    CONNECTION_CONTROL = 18
    PRODUCER_ACK = 19
    MESSAGE_PULL = 20
    MESSAGE_DISPATCH = 21
    MESSAGE_ACK = 22
    ACTIVEMQ_MESSAGE = 23
    ACTIVEMQ_BYTES_MESSAGE = 24
    ACTIVEMQ_MAP_MESSAGE = 25
    ACTIVEMQ_OBJECT_MESSAGE = 26
    ACTIVEMQ_STREAM_MESSAGE = 27
    ACTIVEMQ_TEXT_MESSAGE = 28
    ACTIVEMQ_BLOB_MESSAGE = 29
    RESPONSE = 30
    EXCEPTION_RESPONSE = 31
    DATA_RESPONSE = 32
    DATA_ARRAY_RESPONSE = 33
    INTEGER_RESPONSE = 34
    DISCOVERY_EVENT = 40
    DURABLE_SUBSCRIPTION_INFO = 55
    PARTIAL_COMMAND = 60
    LAST_PARTIAL_COMMAND = 61
    REPLAY = 65
    MESSAGE_DISPATCH_NOTIFICATION = 90
    NETWORK_BRIDGE_FILTER = 91
    BROKER_SUBSCRIPTION_INFO = 92
    ACTIVEMQ_QUEUE = 100
    ACTIVEMQ_TOPIC = 101
    ACTIVEMQ_TEMP_QUEUE = 102
    ACTIVEMQ_TEMP_TOPIC = 103
    MESSAGE_ID = 110
    LOCAL_TRANSACTION_ID = 111
    XA_TRANSACTION_ID = 112
    CONNECTION_ID = 120
    SESSION_ID = 121
    CONSUMER_ID = 122
    PRODUCER_ID = 123
    BROKER_ID = 124


class Kind(IntEnum):
    """How one field is encoded (loose: booleans are one byte, integers big-endian)."""

    BOOL = 1
    BYTE = 2
    SHORT = 3
    INT = 4
    LONG = 5
    STRING = 6  # present flag, then Java's writeUTF
    OBJECT = 7  # present flag, type byte, fields (cached objects too: no cache here)
    OBJECTS = 8  # present flag, u16 count, nested objects
    BYTES = 9  # present flag, u32 length, bytes (byte arrays and byte sequences)
    THROWABLE = 10  # present flag, class, message, [stack trace], cause
    MAGIC = 11  # eight bytes, WireFormatInfo's "ActiveMQ"


B, Y, S, I, L, T, O, OS, BY, TH = (  # noqa: E741 - short names keep the table readable
    Kind.BOOL,
    Kind.BYTE,
    Kind.SHORT,
    Kind.INT,
    Kind.LONG,
    Kind.STRING,
    Kind.OBJECT,
    Kind.OBJECTS,
    Kind.BYTES,
    Kind.THROWABLE,
)

_COMMAND = (("command_id", I), ("response_required", B))

_MESSAGE = (
    *_COMMAND,
    ("producer_id", O),
    ("destination", O),
    ("transaction_id", O),
    ("original_destination", O),
    ("message_id", O),
    ("original_transaction_id", O),
    ("group_id", T),
    ("group_sequence", I),
    ("correlation_id", T),
    ("persistent", B),
    ("expiration", L),
    ("priority", Y),
    ("reply_to", O),
    ("timestamp", L),
    ("jms_type", T),  # JMSType ("type" in ActiveMQ)
    ("content", BY),
    ("marshalled_properties", BY),
    ("data_structure", O),
    ("target_consumer_id", O),
    ("compressed", B),
    ("redelivery_counter", I),
    ("broker_path", OS),
    ("arrival", L),
    ("user_id", T),
    ("recieved_by_df_bridge", B),
    ("droppable", B),
    ("cluster", OS),
    ("broker_in_time", L),
    ("broker_out_time", L),
    ("jmsx_group_first_for_consumer", B),
)

_RESPONSE = (*_COMMAND, ("correlation_id", I))

SCHEMAS: dict[int, tuple[tuple[str, Kind], ...]] = {
    Type.WIREFORMAT_INFO: (("magic", Kind.MAGIC), ("version", I), ("marshalled_properties", BY)),
    Type.BROKER_INFO: (
        *_COMMAND,
        ("broker_id", O),
        ("broker_url", T),
        ("peer_broker_infos", OS),
        ("broker_name", T),
        ("slave_broker", B),
        ("master_broker", B),
        ("fault_tolerant_configuration", B),
        ("duplex_connection", B),
        ("network_connection", B),
        ("connection_id", L),
        ("broker_upload_url", T),
        ("network_properties", T),
    ),
    Type.CONNECTION_INFO: (
        *_COMMAND,
        ("connection_id", O),
        ("client_id", T),
        ("password", T),
        ("user_name", T),
        ("broker_path", OS),
        ("broker_master_connector", B),
        ("manageable", B),
        ("client_master", B),
        ("fault_tolerant", B),
        ("failover_reconnect", B),
        ("client_ip", T),
    ),
    Type.SESSION_INFO: (*_COMMAND, ("session_id", O)),
    Type.CONSUMER_INFO: (
        *_COMMAND,
        ("consumer_id", O),
        ("browser", B),
        ("destination", O),
        ("prefetch_size", I),
        ("maximum_pending_message_limit", I),
        ("dispatch_async", B),
        ("selector", T),
        ("client_id", T),
        ("subscription_name", T),
        ("no_local", B),
        ("exclusive", B),
        ("retroactive", B),
        ("priority", Y),
        ("broker_path", OS),
        ("additional_predicate", O),
        ("network_subscription", B),
        ("optimized_acknowledge", B),
        ("no_range_acks", B),
        ("network_consumer_path", OS),
    ),
    Type.PRODUCER_INFO: (
        *_COMMAND,
        ("producer_id", O),
        ("destination", O),
        ("broker_path", OS),
        ("dispatch_async", B),
        ("window_size", I),
    ),
    Type.TRANSACTION_INFO: (
        *_COMMAND,
        ("connection_id", O),
        ("transaction_id", O),
        ("tx_type", Y),  # "type" in ActiveMQ
    ),
    Type.DESTINATION_INFO: (
        *_COMMAND,
        ("connection_id", O),
        ("destination", O),
        ("operation_type", Y),
        ("timeout", L),
        ("broker_path", OS),
    ),
    Type.REMOVE_SUBSCRIPTION_INFO: (
        *_COMMAND,
        ("connection_id", O),
        ("subcription_name", T),
        ("client_id", T),
    ),
    Type.KEEP_ALIVE_INFO: _COMMAND,
    Type.SHUTDOWN_INFO: _COMMAND,
    Type.REMOVE_INFO: (*_COMMAND, ("object_id", O), ("last_delivered_sequence_id", L)),
    Type.CONTROL_COMMAND: (*_COMMAND, ("command", T)),
    Type.FLUSH_COMMAND: _COMMAND,
    Type.CONNECTION_ERROR: (*_COMMAND, ("exception", TH), ("connection_id", O)),
    Type.CONSUMER_CONTROL: (
        *_COMMAND,
        ("destination", O),
        ("close", B),
        ("consumer_id", O),
        ("prefetch", I),
        ("flush", B),
        ("start", B),
        ("stop", B),
    ),
    Type.CONNECTION_CONTROL: (
        *_COMMAND,
        ("close", B),
        ("exit", B),
        ("fault_tolerant", B),
        ("resume", B),
        ("suspend", B),
        ("connected_brokers", T),
        ("reconnect_to", T),
        ("rebalance_connection", B),
        ("token", BY),
    ),
    Type.PRODUCER_ACK: (*_COMMAND, ("producer_id", O), ("size", I)),
    Type.MESSAGE_PULL: (
        *_COMMAND,
        ("consumer_id", O),
        ("destination", O),
        ("timeout", L),
        ("correlation_id", T),
        ("message_id", O),
    ),
    Type.MESSAGE_DISPATCH: (
        *_COMMAND,
        ("consumer_id", O),
        ("destination", O),
        ("message", O),
        ("redelivery_counter", I),
    ),
    Type.MESSAGE_ACK: (
        *_COMMAND,
        ("destination", O),
        ("transaction_id", O),
        ("consumer_id", O),
        ("ack_type", Y),
        ("first_message_id", O),
        ("last_message_id", O),
        ("message_count", I),
        ("poison_cause", TH),
    ),
    Type.ACTIVEMQ_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_BYTES_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_MAP_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_OBJECT_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_STREAM_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_TEXT_MESSAGE: _MESSAGE,
    Type.ACTIVEMQ_BLOB_MESSAGE: (
        *_MESSAGE,
        ("remote_blob_url", T),
        ("mime_type", T),
        ("deleted_by_broker", B),
    ),
    Type.RESPONSE: _RESPONSE,
    Type.EXCEPTION_RESPONSE: (*_RESPONSE, ("exception", TH)),
    Type.DATA_RESPONSE: (*_RESPONSE, ("data", O)),
    Type.DATA_ARRAY_RESPONSE: (*_RESPONSE, ("data", OS)),
    Type.INTEGER_RESPONSE: (*_RESPONSE, ("result", I)),
    Type.DISCOVERY_EVENT: (("service_name", T), ("broker_name", T)),
    Type.DURABLE_SUBSCRIPTION_INFO: (
        ("client_id", T),
        ("destination", O),
        ("selector", T),
        ("subcription_name", T),
        ("subscribed_destination", O),
        ("no_local", B),
    ),
    Type.PARTIAL_COMMAND: (("command_id", I), ("data", BY)),
    Type.LAST_PARTIAL_COMMAND: (("command_id", I), ("data", BY)),
    Type.REPLAY: (*_COMMAND, ("first_nak_number", I), ("last_nak_number", I)),
    Type.MESSAGE_DISPATCH_NOTIFICATION: (
        *_COMMAND,
        ("consumer_id", O),
        ("destination", O),
        ("delivery_sequence_id", L),
        ("message_id", O),
    ),
    Type.NETWORK_BRIDGE_FILTER: (
        ("network_broker_id", O),
        ("message_ttl", I),
        ("consumer_ttl", I),
    ),
    Type.BROKER_SUBSCRIPTION_INFO: (
        *_COMMAND,
        ("broker_id", O),
        ("broker_name", T),
        ("subscription_infos", OS),
    ),
    Type.ACTIVEMQ_QUEUE: (("physical_name", T),),
    Type.ACTIVEMQ_TOPIC: (("physical_name", T),),
    Type.ACTIVEMQ_TEMP_QUEUE: (("physical_name", T),),
    Type.ACTIVEMQ_TEMP_TOPIC: (("physical_name", T),),
    Type.MESSAGE_ID: (
        ("text_view", T),
        ("producer_id", O),
        ("producer_sequence_id", L),
        ("broker_sequence_id", L),
    ),
    Type.LOCAL_TRANSACTION_ID: (("value", L), ("connection_id", O)),
    Type.XA_TRANSACTION_ID: (
        ("format_id", I),
        ("global_transaction_id", BY),
        ("branch_qualifier", BY),
    ),
    Type.CONNECTION_ID: (("value", T),),
    Type.SESSION_ID: (("connection_id", T), ("value", L)),
    Type.CONSUMER_ID: (("connection_id", T), ("session_id", L), ("value", L)),
    Type.PRODUCER_ID: (("connection_id", T), ("value", L), ("session_id", L)),
    Type.BROKER_ID: (("value", T),),
}


def name_of(type_code: int) -> str:
    """ActiveMQ's name of a data structure type, for error messages."""
    try:
        return Type(type_code).name
    except ValueError:
        return f"type {type_code}"
