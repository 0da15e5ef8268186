"""Sans-IO MQTT 3.1/3.1.1/5.0 codec: bytes in, packets out, and back.

The driver feeds whatever the transport read to ``receive_data``, takes the
parsed packets from ``events_received``, queues packets with ``send`` (or
``send_publish``, the per-delivery fast path) and writes what
``data_to_send`` returns.  Nothing here reads a clock or touches a socket;
keep-alive timing belongs to the driver and the adapter.

The receive buffer is one ``bytearray``.  The fixed header of the packet
being received is checked as soon as its bytes arrive (type, flags, size
limit) and kept; the body is parsed once, when all of it is in, with
``struct.unpack_from`` and slicing.  So a peer dripping one byte at a time
costs O(bytes received), and an oversized packet is refused before any of
its body is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

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
from .properties import (
    MAX_VARIABLE_BYTE_INTEGER,
    NO_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    encode_binary,
    encode_properties,
    encode_string,
    encode_variable_byte_integer,
    read_binary,
    read_properties,
    read_string,
    take,
    truncated,
)

__all__ = ["DEFAULT_MAX_CONNECT_SIZE", "DEFAULT_MAX_PACKET_SIZE", "MqttCodec"]

# The largest packet the wire format can express: one type byte, four bytes
# of Remaining Length, and the largest Remaining Length (2.1.4).  That is the
# default of HiveMQ (268435460) and what mosquitto's max_packet_size 0 means;
# the adapter passes its configured, smaller limit (and announces it to MQTT 5
# clients as Maximum Packet Size, which counts the same bytes).
DEFAULT_MAX_PACKET_SIZE: Final = MAX_VARIABLE_BYTE_INTEGER + 5

# The largest CONNECT a server codec accepts, fixed header included.  Clients
# send well under 1 KiB (a JWT password a few KiB, a will message more); an
# unauthenticated peer must not make the broker hold the 256 MiB a packet may
# otherwise reach.  Mosquitto bounds packets before login the same way.
DEFAULT_MAX_CONNECT_SIZE: Final = 64 * 1024

# Bytes after the fixed header that name a CONNECT's protocol and level:
# length (2) + "MQIsdp" (6, the longer name) + level (1).
_CONNECT_LEVEL_BYTES: Final = 9

# The smallest packet is two bytes (PINGREQ, PINGRESP, DISCONNECT).
_MIN_PACKET_SIZE: Final = 2

# Payloads at least this long are queued as their own chunk (the driver uses
# writelines) instead of being copied into one bytes object with the header.
_QUEUE_APART_FROM: Final = 64 * 1024

_MALFORMED: Final = ReasonCode.MALFORMED_PACKET
_PROTOCOL: Final = ReasonCode.PROTOCOL_ERROR
_CANNOT_ENCODE: Final = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR

_U16: Final = struct.Struct(">H")

_CONNECT: Final = PacketType.CONNECT.value
_CONNACK: Final = PacketType.CONNACK.value
_PUBLISH: Final = PacketType.PUBLISH.value
_PUBACK: Final = PacketType.PUBACK.value
_PUBREC: Final = PacketType.PUBREC.value
_PUBREL: Final = PacketType.PUBREL.value
_PUBCOMP: Final = PacketType.PUBCOMP.value
_SUBSCRIBE: Final = PacketType.SUBSCRIBE.value
_SUBACK: Final = PacketType.SUBACK.value
_UNSUBSCRIBE: Final = PacketType.UNSUBSCRIBE.value
_UNSUBACK: Final = PacketType.UNSUBACK.value
_PINGREQ: Final = PacketType.PINGREQ.value
_PINGRESP: Final = PacketType.PINGRESP.value
_DISCONNECT: Final = PacketType.DISCONNECT.value
_AUTH: Final = PacketType.AUTH.value
_NAMES: Final = {t.value: t.name for t in PacketType}

# Who may send what (2.1.2).  DISCONNECT from a server and AUTH are MQTT 5.
_FROM_CLIENT: Final = frozenset(
    {_CONNECT, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _SUBSCRIBE, _UNSUBSCRIBE}
    | {_PINGREQ, _DISCONNECT, _AUTH}
)
_FROM_SERVER: Final = frozenset(
    {_CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _SUBACK, _UNSUBACK}
    | {_PINGRESP, _DISCONNECT, _AUTH}
)
# Fixed header flags 0010 (2.1.3); every other type but PUBLISH has 0000.
_FLAGS_0010: Final = frozenset({_PUBREL, _SUBSCRIBE, _UNSUBSCRIBE})
# MQTT 3.1 also sets DUP on these when resending them.
_FLAGS_0010_DUP: Final = 0b1010

# The (protocol name, level) pairs a CONNECT may carry (3.1.2.1-2).
_PROTOCOLS: Final = frozenset({(b"MQIsdp", 3), (b"MQTT", 4), (b"MQTT", 5)})
_PROTOCOL_NAMES: Final = frozenset({b"MQIsdp", b"MQTT"})

# MQTT 5 reason codes each packet may carry (3.2.2.2, 3.4.2.1, ... 3.15.2.1).
_V5_REASONS: Final = {
    _CONNACK: frozenset(
        {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C}
        | {0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
    ),
    _PUBACK: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    _PUBREC: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    _PUBREL: frozenset({0x00, 0x92}),
    _PUBCOMP: frozenset({0x00, 0x92}),
    _SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    _UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    _DISCONNECT: frozenset(
        {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F}
        | {0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E}
        | {0x9F, 0xA0, 0xA1, 0xA2}
    ),
    _AUTH: frozenset({0x00, 0x18, 0x19}),
}
# SUBACK return codes before MQTT 5 (3.9.3); 3.1 has no 0x80 but 3.1 servers
# (mosquitto among them) send it anyway.
_V3_SUBACK_CODES: Final = frozenset({0x00, 0x01, 0x02, 0x80})

# MQTT 5 CONNACK reason codes that have a 3.1/3.1.1 return code, and back.
_V3_RETURN_CODES: Final[dict[int, int]] = {
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnectReturnCode.IDENTIFIER_REJECTED,
    ReasonCode.SERVER_UNAVAILABLE: ConnectReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnectReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnectReturnCode.NOT_AUTHORIZED,
    ReasonCode.BANNED: ConnectReturnCode.NOT_AUTHORIZED,
}
_V5_REASON_CODES: Final[dict[int, int]] = {
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnectReturnCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnectReturnCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    ConnectReturnCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}

_SHARE_PREFIX: Final = "$share/"

_Ack = Puback | Pubrec | Pubrel | Pubcomp
_ACK_CLASSES: Final[dict[int, type[_Ack]]] = {
    _PUBACK: Puback,
    _PUBREC: Pubrec,
    _PUBREL: Pubrel,
    _PUBCOMP: Pubcomp,
}
_ACK_FIRST_BYTES: Final[dict[type[_Ack], int]] = {
    Puback: 0x40,
    Pubrec: 0x50,
    Pubrel: 0x62,
    Pubcomp: 0x70,
}


class MqttCodec:
    """One MQTT connection's framing, in either direction.

    ``server=True`` (the broker side) accepts the packets clients send and
    requires CONNECT first, once; ``server=False`` accepts what servers send
    and requires CONNACK (or MQTT 5 AUTH) first.  ``send`` takes any packet
    either way.

    ``protocol_level`` (3 = 3.1, 4 = 3.1.1, 5) decides how packets are parsed
    and encoded.  A server codec sets it from the CONNECT it parses, as soon as
    the protocol name and level are read (so packets pipelined behind CONNECT
    parse right, and a CONNECT refused later still knows its level); a client
    codec sets it from the CONNECT it sends, or the caller assigns it.  While
    it is None the codec works as level 4.

    ``max_packet_size`` bounds received packets, fixed header included; a
    larger one is refused (PACKET_TOO_LARGE) as soon as its Remaining Length is
    read.  ``max_connect_size`` bounds a CONNECT the same way (it is sent
    before the peer is authenticated); the refusal then knows the CONNECT's
    protocol level when its first bytes came with the fixed header, so that an
    MQTT 5 client can be answered with CONNACK 0x95.  ``peer_max_packet_size``,
    None until the adapter sets it from the peer's MQTT 5 Maximum Packet Size,
    bounds what ``send`` queues.
    """

    __slots__ = (
        "_buf",
        "_connected",
        "_consumed",
        "_eof",
        "_error",
        "_events",
        "_flags",
        "_head",
        "_length",
        "_out",
        "_type",
        "max_connect_size",
        "max_packet_size",
        "peer_max_packet_size",
        "protocol_level",
        "server",
    )

    def __init__(
        self,
        *,
        server: bool = True,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_connect_size: int = DEFAULT_MAX_CONNECT_SIZE,
    ) -> None:
        for name, value in (
            ("max_packet_size", max_packet_size),
            ("max_connect_size", max_connect_size),
        ):
            if not isinstance(value, int) or value < _MIN_PACKET_SIZE:
                raise ValueError(f"{name} must be an integer >= 2, not {value!r}")
        self.server = server
        self.max_packet_size = max_packet_size
        self.max_connect_size = max_connect_size
        self.peer_max_packet_size: int | None = None
        self.protocol_level: int | None = None
        self._buf = bytearray()
        # The packet being received: type and flags once its first byte is
        # in (0 before), then fixed header size and Remaining Length (-1 before).
        self._type = 0
        self._flags = 0
        self._head = 0
        self._length = -1
        self._connected = False  # CONNECT (server) or CONNACK (client) seen
        self._events: list[Packet] = []
        self._out: list[bytes] = []
        self._error: MqttError | None = None
        self._eof = False
        # Bytes dropped from the front of _buf so far: where _buf starts in the stream.
        self._consumed = 0

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Parse ``data``; then collect the packets with ``events_received``.

        Raises MqttError when the peer broke the protocol or a limit.  Packets
        parsed before the error stay queued.  The codec is dead afterwards:
        answer as MqttError says (CONNACK or DISCONNECT with its reason code
        in MQTT 5) and close the connection.
        """
        if self._error is not None:
            raise MqttError(self._error.reason_code, self._error.message)
        if self._eof:
            raise MqttError(_PROTOCOL, "data received after end of stream")
        if not data:
            return
        self._buf += data
        try:
            self._parse()
        except MqttError as exc:
            self._fail(exc)
            raise

    def receive_eof(self) -> None:
        """Note that the peer closed its side.

        Raises MqttError (MALFORMED_PACKET) if that cut a packet short.
        """
        if self._error is not None:
            raise MqttError(self._error.reason_code, self._error.message)
        if self._eof:
            return
        self._eof = True
        if self._buf:
            exc = MqttError(_MALFORMED, "connection closed in the middle of a packet")
            self._fail(exc)
            raise exc

    @property
    def pending_frame_offset(self) -> int | None:
        """Where, in the bytes received so far, the packet still arriving began.

        None when no part of a packet is buffered.  The offset changes when
        another packet starts, so a driver can time how long one packet takes.
        """
        return self._consumed if self._buf else None

    def events_received(self) -> list[Packet]:
        """Return the packets parsed so far, in order, and forget them."""
        events = self._events
        self._events = []
        return events

    # -- sending -----------------------------------------------------------

    def send(self, packet: Packet) -> None:
        """Queue ``packet`` for ``data_to_send``, encoded for ``protocol_level``.

        Before MQTT 5, properties and the reason codes of acknowledgements
        and DISCONNECT are dropped, SUBACK failures become 0x80, CONNACK
        reason codes become return codes, and a server's DISCONNECT queues
        nothing.  Sending a CONNECT from a client codec sets
        ``protocol_level``.  Raises MqttError, queueing nothing, for what
        cannot be encoded: IMPLEMENTATION_SPECIFIC_ERROR for a field out of
        range, a string that is not UTF-8 or holds U+0000, a property not
        allowed in that packet, AUTH before MQTT 5; PACKET_TOO_LARGE for a
        packet over ``peer_max_packet_size`` (MQTT 5 says to drop it).
        """
        encoder = self._ENCODERS.get(type(packet))
        if encoder is None:
            raise TypeError(f"not an MQTT packet: {type(packet).__name__}")
        try:
            encoder(self, packet)
        except (struct.error, ValueError, OverflowError):
            raise MqttError(_CANNOT_ENCODE, "packet field out of range") from None

    def send_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        packet_id: int = 0,
        retain: bool = False,
        dup: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> None:
        """Queue a PUBLISH without building a Publish: the per-delivery fast path.

        Same rules as ``send(Publish(...))``.
        """
        self.send_encoded(
            self.encode_publish(
                topic,
                payload,
                qos,
                packet_id=packet_id,
                retain=retain,
                dup=dup,
                properties=properties,
            )
        )

    def encode_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        packet_id: int = 0,
        retain: bool = False,
        dup: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> tuple[bytes, ...]:
        """Encode a PUBLISH for this codec's protocol level without queueing it.

        Returns the packet's chunks; hand them to ``send_encoded`` of this codec or
        of any codec at the same protocol level: a message fanned out to many
        subscribers is encoded once and the same bytes are queued for each.
        Raises MqttError like ``send_publish``, except for the peer's maximum
        packet size, which ``send_encoded`` checks.
        """
        level = self.protocol_level or 4
        if qos:
            if qos != 1 and qos != 2:
                raise MqttError(_CANNOT_ENCODE, "QoS must be 0, 1 or 2")
            if not 0 < packet_id <= 0xFFFF:
                raise MqttError(_CANNOT_ENCODE, "PUBLISH packet identifier must be 1-65535")
            parts = [encode_string(topic), _U16.pack(packet_id)]
        else:
            if packet_id or dup:
                raise MqttError(_CANNOT_ENCODE, "QoS 0 PUBLISH has no packet identifier or DUP")
            parts = [encode_string(topic)]
        if "+" in topic or "#" in topic:
            raise MqttError(_CANNOT_ENCODE, "wildcard in topic name")
        if level == 5:
            if not topic and properties.topic_alias is None:
                raise MqttError(_CANNOT_ENCODE, "empty topic name without topic alias")
            parts.append(encode_properties(properties, _PUBLISH))
        elif not topic:
            raise MqttError(_CANNOT_ENCODE, "empty topic name")
        first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
        return self._frame(first, parts, payload)

    def send_encoded(self, chunks: tuple[bytes, ...]) -> None:
        """Queue a packet ``encode_publish`` made; the same tuple may go to many codecs.

        Raises MqttError (PACKET_TOO_LARGE), queueing nothing, when the packet is
        over ``peer_max_packet_size`` (MQTT 5 says to drop it).
        """
        limit = self.peer_max_packet_size
        if limit is not None and sum(map(len, chunks)) > limit:
            raise MqttError(
                ReasonCode.PACKET_TOO_LARGE, "packet exceeds the peer's maximum packet size"
            )
        self._out.extend(chunks)

    def data_to_send(self) -> list[bytes]:
        """Return the queued output chunks, in order, and forget them."""
        out = self._out
        self._out = []
        return out

    # -- receiving internals -----------------------------------------------

    def _fail(self, exc: MqttError) -> None:
        self._error = exc
        self._buf = bytearray()

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0  # the buffer starts at the packet being received
        events = self._events
        parsers = self._PARSERS
        while pos < n:
            if not self._type:
                self._start_packet(buf[pos])
            if self._length < 0 and not self._read_remaining_length(buf, pos, n):
                break
            start = pos + self._head
            end = start + self._length
            if end > n:
                break
            events.append(parsers[self._type](self, buf, start, end))
            pos = end
            self._type = 0
            self._length = -1
        if pos:
            del buf[:pos]
            self._consumed += pos

    def _start_packet(self, byte: int) -> None:
        """Check the first byte of a packet: type, direction, order, flags."""
        ptype = byte >> 4
        flags = byte & 0x0F
        if not ptype:
            raise MqttError(_MALFORMED, "reserved packet type 0")
        name = _NAMES[ptype]
        level = self.protocol_level or 4
        if self.server:
            if ptype not in _FROM_CLIENT:
                raise MqttError(_PROTOCOL, f"{name} is not sent by clients")
            if ptype == _CONNECT:
                if self._connected:
                    raise MqttError(_PROTOCOL, "second CONNECT")  # [MQTT-3.1.0-2]
                self._connected = True
            elif not self._connected:
                raise MqttError(_PROTOCOL, "first packet is not CONNECT")  # [MQTT-3.1.0-1]
        else:
            if ptype not in _FROM_SERVER:
                raise MqttError(_PROTOCOL, f"{name} is not sent by servers")
            if ptype == _CONNACK:
                if self._connected:
                    raise MqttError(_PROTOCOL, "second CONNACK")
                self._connected = True
            elif not self._connected and ptype != _AUTH:
                raise MqttError(_PROTOCOL, "first packet is not CONNACK")
        if level < 5:
            if ptype == _AUTH:
                raise MqttError(_PROTOCOL, "AUTH needs MQTT 5")
            if ptype == _DISCONNECT and not self.server:
                raise MqttError(_PROTOCOL, "DISCONNECT from a server needs MQTT 5")
        if ptype == _PUBLISH:
            qos = (flags >> 1) & 3
            if qos == 3:
                raise MqttError(_MALFORMED, "PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
            if not qos and flags & 0x08:
                raise MqttError(_MALFORMED, "DUP set on a QoS 0 PUBLISH")  # [MQTT-3.3.1-2]
        elif ptype in _FLAGS_0010:
            if flags != 0b0010 and not (level == 3 and flags == _FLAGS_0010_DUP):
                raise MqttError(_MALFORMED, f"{name} fixed header flags are not 0010")
        elif flags:
            raise MqttError(_MALFORMED, f"{name} fixed header flags are not 0000")
        self._type = ptype
        self._flags = flags

    def _read_remaining_length(self, buf: bytearray, pos: int, n: int) -> bool:
        """Read the Remaining Length after buf[pos]; False if it is not all in yet."""
        value = 0
        i = pos + 1
        for shift in (0, 7, 14, 21):
            if i >= n:
                return False
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and shift:
                    # [MQTT-1.5.5-1]: 0x80 0x00 would let a peer pad headers.
                    raise MqttError(_MALFORMED, "remaining length not minimally encoded")
                break
        else:
            raise MqttError(_MALFORMED, "remaining length longer than 4 bytes")
        head = i - pos
        size = head + value
        if size > self.max_packet_size:
            raise MqttError(
                ReasonCode.PACKET_TOO_LARGE, f"packet larger than {self.max_packet_size} bytes"
            )
        if self._type == _CONNECT and size > self.max_connect_size and self.server:
            if n < i + _CONNECT_LEVEL_BYTES and value >= _CONNECT_LEVEL_BYTES:
                return False  # a few bytes more tell the level to answer in
            self._peek_connect_level(buf, i, n)
            raise MqttError(
                ReasonCode.PACKET_TOO_LARGE,
                f"CONNECT larger than {self.max_connect_size} bytes",
            )
        self._head = head
        self._length = value
        return True

    def _peek_connect_level(self, buf: bytearray, pos: int, n: int) -> None:
        """Adopt the protocol level of the CONNECT starting at ``pos`` if it is a known one."""
        if pos + 2 > n:
            return
        name_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        if name_end < n and (bytes(buf[pos + 2 : name_end]), buf[name_end]) in _PROTOCOLS:
            self.protocol_level = buf[name_end]

    def _parse_connect(self, buf: bytearray, pos: int, end: int) -> Connect:
        if pos + 2 > end:
            raise truncated()
        name_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        if name_end >= end:
            raise truncated()
        name = bytes(buf[pos + 2 : name_end])
        level = buf[name_end]
        if (name, level) not in _PROTOCOLS:
            if name in _PROTOCOL_NAMES:
                message = f"unsupported protocol level {level}"
            else:
                message = "unsupported protocol name"
            raise MqttError(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, message)
        self.protocol_level = level
        pos = name_end + 1
        if pos + 3 > end:
            raise truncated()
        flags = buf[pos]
        (keep_alive,) = _U16.unpack_from(buf, pos + 1)
        pos += 3
        if flags & 0x01 and level >= 4:
            # [MQTT-3.1.2-3]; 3.1 left the bit unused without requiring 0.
            raise MqttError(_MALFORMED, "reserved CONNECT flag set")
        will_qos = (flags >> 3) & 3
        if flags & 0x04:
            if will_qos == 3:
                raise MqttError(_MALFORMED, "will QoS 3")  # [MQTT-3.1.2-12]
        elif flags & 0x38:
            # [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
            raise MqttError(_MALFORMED, "will QoS or retain set without a will")
        if flags & 0x40 and not flags & 0x80 and level < 5:
            raise MqttError(_MALFORMED, "password without user name")  # [MQTT-3.1.2-22]
        properties = NO_PROPERTIES
        if level == 5:
            properties, pos = read_properties(buf, pos, end, _CONNECT)
        client_id, pos = read_string(buf, pos, end)
        will = None
        if flags & 0x04:
            will_properties = NO_PROPERTIES
            if level == 5:
                will_properties, pos = read_properties(buf, pos, end, WILL_PROPERTIES)
            will_topic, pos = read_string(buf, pos, end)
            _check_topic_name(will_topic)
            will_payload, pos = read_binary(buf, pos, end)
            will = Will(will_topic, will_payload, will_qos, bool(flags & 0x20), will_properties)
        username = None
        if flags & 0x80:
            username, pos = read_string(buf, pos, end)
        password = None
        if flags & 0x40:
            password, pos = read_binary(buf, pos, end)
        _expect_end(pos, end, _CONNECT)
        return Connect(
            level, bool(flags & 0x02), keep_alive, client_id, will, username, password, properties
        )

    def _parse_connack(self, buf: bytearray, pos: int, end: int) -> Connack:
        if pos + 2 > end:
            raise truncated()
        flags = buf[pos]
        code = buf[pos + 1]
        level = self.protocol_level or 4
        session_present = False
        if level >= 4:  # 3.1 has a reserved byte here, not flags
            if flags & 0xFE:
                raise MqttError(_MALFORMED, "reserved CONNACK flags set")  # [MQTT-3.2.2-1]
            session_present = bool(flags)
        properties = NO_PROPERTIES
        if level == 5:
            _check_reason(code, _CONNACK)
            properties, pos = read_properties(buf, pos + 2, end, _CONNACK)
            _expect_end(pos, end, _CONNACK)
        else:
            _expect_end(pos + 2, end, _CONNACK)
            if code > ConnectReturnCode.NOT_AUTHORIZED:
                raise MqttError(_PROTOCOL, f"unknown CONNACK return code {code}")
        return Connack(session_present, code, properties)

    def _parse_publish(self, buf: bytearray, pos: int, end: int) -> Publish:
        flags = self._flags
        topic, pos = read_string(buf, pos, end)
        qos = (flags >> 1) & 3
        packet_id = 0
        if qos:
            packet_id = _read_packet_id(buf, pos, end)
            pos += 2
        properties = NO_PROPERTIES
        if self.protocol_level == 5:
            properties, pos = read_properties(buf, pos, end, _PUBLISH)
            if self.server and properties.subscription_identifiers:
                # [MQTT-3.3.4-6]
                raise MqttError(_PROTOCOL, "Subscription Identifier in a PUBLISH from a client")
            if topic or properties.topic_alias is None:
                _check_topic_name(topic)
        else:
            _check_topic_name(topic)
        return Publish(
            topic,
            take(buf, pos, end),
            qos,
            bool(flags & 0x01),
            bool(flags & 0x08),
            packet_id,
            properties,
        )

    def _parse_ack(self, buf: bytearray, pos: int, end: int) -> _Ack:
        ptype = self._type
        packet_id = _read_packet_id(buf, pos, end)
        reason = 0
        properties = NO_PROPERTIES
        if self.protocol_level == 5:
            # The reason code may be left out when 0, the property length
            # when there are none (3.4.2.1).
            if end - pos > 2:
                reason = buf[pos + 2]
                _check_reason(reason, ptype)
                if end - pos > 3:
                    properties, pos = read_properties(buf, pos + 3, end, ptype)
                    _expect_end(pos, end, ptype)
        else:
            _expect_end(pos + 2, end, ptype)
        return _ACK_CLASSES[ptype](packet_id, reason, properties)

    def _parse_subscribe(self, buf: bytearray, pos: int, end: int) -> Subscribe:
        level = self.protocol_level or 4
        packet_id = _read_packet_id(buf, pos, end)
        pos += 2
        properties = NO_PROPERTIES
        if level == 5:
            properties, pos = read_properties(buf, pos, end, _SUBSCRIBE)
        subscriptions = []
        while pos < end:
            topic_filter, pos = read_string(buf, pos, end)
            if pos >= end:
                raise truncated()
            options = buf[pos]
            pos += 1
            qos = options & 0x03
            if qos == 3:
                raise MqttError(_MALFORMED, "subscription QoS 3")  # [MQTT-3.8.3-4]
            if level == 5:
                if options & 0xC0:
                    # [MQTT-3.8.3-5]
                    raise MqttError(_MALFORMED, "reserved subscription option bits set")
                retain_handling = (options >> 4) & 0x03
                if retain_handling == 3:
                    raise MqttError(_PROTOCOL, "retain handling 3")
                subscription = Subscription(
                    topic_filter, qos, bool(options & 0x04), bool(options & 0x08), retain_handling
                )
            elif options & 0xFC:
                raise MqttError(_MALFORMED, "reserved subscription option bits set")
            else:
                subscription = Subscription(topic_filter, qos)
            _check_topic_filter(topic_filter, level, subscription.no_local)
            subscriptions.append(subscription)
        if not subscriptions:
            raise MqttError(_PROTOCOL, "SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
        return Subscribe(packet_id, tuple(subscriptions), properties)

    def _parse_suback(self, buf: bytearray, pos: int, end: int) -> Suback:
        level = self.protocol_level or 4
        packet_id = _read_packet_id(buf, pos, end)
        pos += 2
        properties = NO_PROPERTIES
        if level == 5:
            properties, pos = read_properties(buf, pos, end, _SUBACK)
            allowed = _V5_REASONS[_SUBACK]
        else:
            allowed = _V3_SUBACK_CODES
        codes = tuple(buf[pos:end])
        if not codes:
            raise MqttError(_PROTOCOL, "SUBACK without reason codes")
        if not allowed.issuperset(codes):
            raise MqttError(_PROTOCOL, "invalid SUBACK reason code")
        return Suback(packet_id, codes, properties)

    def _parse_unsubscribe(self, buf: bytearray, pos: int, end: int) -> Unsubscribe:
        level = self.protocol_level or 4
        packet_id = _read_packet_id(buf, pos, end)
        pos += 2
        properties = NO_PROPERTIES
        if level == 5:
            properties, pos = read_properties(buf, pos, end, _UNSUBSCRIBE)
        topic_filters = []
        while pos < end:
            topic_filter, pos = read_string(buf, pos, end)
            _check_topic_filter(topic_filter, level, False)
            topic_filters.append(topic_filter)
        if not topic_filters:
            raise MqttError(_PROTOCOL, "UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
        return Unsubscribe(packet_id, tuple(topic_filters), properties)

    def _parse_unsuback(self, buf: bytearray, pos: int, end: int) -> Unsuback:
        packet_id = _read_packet_id(buf, pos, end)
        pos += 2
        if self.protocol_level != 5:
            _expect_end(pos, end, _UNSUBACK)
            return Unsuback(packet_id)
        properties, pos = read_properties(buf, pos, end, _UNSUBACK)
        codes = tuple(buf[pos:end])
        if not codes:
            raise MqttError(_PROTOCOL, "UNSUBACK without reason codes")
        if not _V5_REASONS[_UNSUBACK].issuperset(codes):
            raise MqttError(_PROTOCOL, "invalid UNSUBACK reason code")
        return Unsuback(packet_id, codes, properties)

    def _parse_pingreq(self, buf: bytearray, pos: int, end: int) -> Pingreq:
        _expect_end(pos, end, _PINGREQ)
        return _PINGREQ_PACKET

    def _parse_pingresp(self, buf: bytearray, pos: int, end: int) -> Pingresp:
        _expect_end(pos, end, _PINGRESP)
        return _PINGRESP_PACKET

    def _parse_disconnect(self, buf: bytearray, pos: int, end: int) -> Disconnect:
        if self.protocol_level != 5:
            _expect_end(pos, end, _DISCONNECT)
            return _DISCONNECT_PACKET
        reason, properties = _read_reason_and_properties(buf, pos, end, _DISCONNECT)
        return Disconnect(reason, properties)

    def _parse_auth(self, buf: bytearray, pos: int, end: int) -> Auth:
        reason, properties = _read_reason_and_properties(buf, pos, end, _AUTH)
        return Auth(reason, properties)

    _PARSERS: ClassVar[dict[int, Callable[[MqttCodec, bytearray, int, int], Packet]]] = {
        _CONNECT: _parse_connect,
        _CONNACK: _parse_connack,
        _PUBLISH: _parse_publish,
        _PUBACK: _parse_ack,
        _PUBREC: _parse_ack,
        _PUBREL: _parse_ack,
        _PUBCOMP: _parse_ack,
        _SUBSCRIBE: _parse_subscribe,
        _SUBACK: _parse_suback,
        _UNSUBSCRIBE: _parse_unsubscribe,
        _UNSUBACK: _parse_unsuback,
        _PINGREQ: _parse_pingreq,
        _PINGRESP: _parse_pingresp,
        _DISCONNECT: _parse_disconnect,
        _AUTH: _parse_auth,
    }

    # -- sending internals -------------------------------------------------

    def _queue(self, first: int, parts: Sequence[bytes], payload: bytes = b"") -> None:
        body = b"".join(parts)
        remaining = len(body) + len(payload)
        if remaining > MAX_VARIABLE_BYTE_INTEGER:
            raise MqttError(ReasonCode.PACKET_TOO_LARGE, "packet too large for MQTT")
        head = b"".join((bytes((first,)), encode_variable_byte_integer(remaining), body))
        limit = self.peer_max_packet_size
        if limit is not None and len(head) + len(payload) > limit:
            raise MqttError(
                ReasonCode.PACKET_TOO_LARGE, "packet exceeds the peer's maximum packet size"
            )
        if len(payload) < _QUEUE_APART_FROM:
            self._out.append(head + payload if payload else head)
        else:
            self._out.extend((head, payload))

    def _frame(self, first: int, parts: Sequence[bytes], payload: bytes = b"") -> tuple[bytes, ...]:
        """A packet's chunks, as ``_queue`` would queue them, for ``send_encoded``."""
        body = b"".join(parts)
        remaining = len(body) + len(payload)
        if remaining > MAX_VARIABLE_BYTE_INTEGER:
            raise MqttError(ReasonCode.PACKET_TOO_LARGE, "packet too large for MQTT")
        head = b"".join((bytes((first,)), encode_variable_byte_integer(remaining), body))
        if len(payload) < _QUEUE_APART_FROM:
            return (head + payload if payload else head,)
        return head, payload

    def _encode_connect(self, packet: Connect) -> None:
        level = packet.protocol_level
        if level not in (3, 4, 5):
            raise MqttError(_CANNOT_ENCODE, "protocol level must be 3, 4 or 5")
        flags = 0x02 if packet.clean_start else 0
        will = packet.will
        if will is not None:
            if will.qos not in (0, 1, 2):
                raise MqttError(_CANNOT_ENCODE, "will QoS must be 0, 1 or 2")
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if packet.username is not None:
            flags |= 0x80
        if packet.password is not None:
            if packet.username is None and level < 5:
                raise MqttError(_CANNOT_ENCODE, "password without user name before MQTT 5")
            flags |= 0x40
        parts = [
            encode_string(packet.protocol_name),
            bytes((level, flags)),
            _U16.pack(packet.keep_alive),
        ]
        if level == 5:
            parts.append(encode_properties(packet.properties, _CONNECT))
        parts.append(encode_string(packet.client_id))
        if will is not None:
            if level == 5:
                parts.append(encode_properties(will.properties, WILL_PROPERTIES))
            parts.append(encode_string(will.topic))
            parts.append(encode_binary(will.payload))
        if packet.username is not None:
            parts.append(encode_string(packet.username))
        if packet.password is not None:
            parts.append(encode_binary(packet.password))
        self._queue(0x10, parts)
        if not self.server:
            self.protocol_level = level

    def _encode_connack(self, packet: Connack) -> None:
        level = self.protocol_level or 4
        code = packet.reason_code
        if level == 5:
            code = _V5_REASON_CODES.get(code, code)
            self._queue(
                0x20,
                (
                    bytes((1 if packet.session_present else 0, code)),
                    encode_properties(packet.properties, _CONNACK),
                ),
            )
            return
        if code >= 0x80:
            mapped = _V3_RETURN_CODES.get(code)
            if mapped is None:
                raise MqttError(
                    _CANNOT_ENCODE, f"reason code 0x{code:02X} has no MQTT 3 CONNACK return code"
                )
            code = mapped
        elif code > ConnectReturnCode.NOT_AUTHORIZED:
            raise MqttError(_CANNOT_ENCODE, f"unknown CONNACK return code {code}")
        session_present = 1 if packet.session_present and level == 4 else 0
        self._queue(0x20, (bytes((session_present, code)),))

    def _encode_publish(self, packet: Publish) -> None:
        self.send_publish(
            packet.topic,
            packet.payload,
            packet.qos,
            packet_id=packet.packet_id,
            retain=packet.retain,
            dup=packet.dup,
            properties=packet.properties,
        )

    def _encode_ack(self, packet: _Ack) -> None:
        first = _ACK_FIRST_BYTES[type(packet)]
        packet_id = _packet_id_bytes(packet.packet_id)
        properties = packet.properties
        if self.protocol_level != 5:
            self._queue(first, (packet_id,))
        elif properties is not NO_PROPERTIES and properties:
            ptype = first >> 4
            props = encode_properties(properties, ptype)
            self._queue(first, (packet_id, bytes((packet.reason_code,)), props))
        elif packet.reason_code:
            self._queue(first, (packet_id, bytes((packet.reason_code,))))
        else:
            self._queue(first, (packet_id,))

    def _encode_subscribe(self, packet: Subscribe) -> None:
        v5 = self.protocol_level == 5
        if not packet.subscriptions:
            raise MqttError(_CANNOT_ENCODE, "SUBSCRIBE needs at least one topic filter")
        parts = [_packet_id_bytes(packet.packet_id)]
        if v5:
            parts.append(encode_properties(packet.properties, _SUBSCRIBE))
        for sub in packet.subscriptions:
            if sub.qos not in (0, 1, 2):
                raise MqttError(_CANNOT_ENCODE, "subscription QoS must be 0, 1 or 2")
            options = sub.qos
            if v5:
                if sub.retain_handling not in (0, 1, 2):
                    raise MqttError(_CANNOT_ENCODE, "retain handling must be 0, 1 or 2")
                options |= (
                    (0x04 if sub.no_local else 0)
                    | (0x08 if sub.retain_as_published else 0)
                    | (sub.retain_handling << 4)
                )
            parts.append(encode_string(sub.topic_filter))
            parts.append(bytes((options,)))
        self._queue(0x82, parts)

    def _encode_suback(self, packet: Suback) -> None:
        parts = [_packet_id_bytes(packet.packet_id)]
        if self.protocol_level == 5:
            parts.append(encode_properties(packet.properties, _SUBACK))
            parts.append(bytes(packet.reason_codes))
        else:
            parts.append(bytes([code if code < 0x80 else 0x80 for code in packet.reason_codes]))
        self._queue(0x90, parts)

    def _encode_unsubscribe(self, packet: Unsubscribe) -> None:
        if not packet.topic_filters:
            raise MqttError(_CANNOT_ENCODE, "UNSUBSCRIBE needs at least one topic filter")
        parts = [_packet_id_bytes(packet.packet_id)]
        if self.protocol_level == 5:
            parts.append(encode_properties(packet.properties, _UNSUBSCRIBE))
        parts.extend(encode_string(topic_filter) for topic_filter in packet.topic_filters)
        self._queue(0xA2, parts)

    def _encode_unsuback(self, packet: Unsuback) -> None:
        parts = [_packet_id_bytes(packet.packet_id)]
        if self.protocol_level == 5:
            parts.append(encode_properties(packet.properties, _UNSUBACK))
            parts.append(bytes(packet.reason_codes))
        self._queue(0xB0, parts)

    def _encode_pingreq(self, packet: Pingreq) -> None:
        self._queue(0xC0, ())

    def _encode_pingresp(self, packet: Pingresp) -> None:
        self._queue(0xD0, ())

    def _encode_disconnect(self, packet: Disconnect) -> None:
        if self.protocol_level == 5:
            self._queue(0xE0, _reason_and_properties(packet, _DISCONNECT))
        elif not self.server:
            self._queue(0xE0, ())

    def _encode_auth(self, packet: Auth) -> None:
        if self.protocol_level != 5:
            raise MqttError(_CANNOT_ENCODE, "AUTH needs MQTT 5")
        self._queue(0xF0, _reason_and_properties(packet, _AUTH))

    _ENCODERS: ClassVar[dict[type, Callable[[MqttCodec, Any], None]]] = {
        Connect: _encode_connect,
        Connack: _encode_connack,
        Publish: _encode_publish,
        Puback: _encode_ack,
        Pubrec: _encode_ack,
        Pubrel: _encode_ack,
        Pubcomp: _encode_ack,
        Subscribe: _encode_subscribe,
        Suback: _encode_suback,
        Unsubscribe: _encode_unsubscribe,
        Unsuback: _encode_unsuback,
        Pingreq: _encode_pingreq,
        Pingresp: _encode_pingresp,
        Disconnect: _encode_disconnect,
        Auth: _encode_auth,
    }


_PINGREQ_PACKET: Final = Pingreq()
_PINGRESP_PACKET: Final = Pingresp()
_DISCONNECT_PACKET: Final = Disconnect()


def _read_packet_id(buf: bytearray, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise truncated()
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if not packet_id:
        raise MqttError(_PROTOCOL, "packet identifier 0")  # [MQTT-2.2.1-3]
    return packet_id


def _packet_id_bytes(packet_id: int) -> bytes:
    if not 0 < packet_id <= 0xFFFF:
        raise MqttError(_CANNOT_ENCODE, "packet identifier must be 1-65535")
    return _U16.pack(packet_id)


def _expect_end(pos: int, end: int, ptype: int) -> None:
    if pos != end:
        raise MqttError(_MALFORMED, f"{_NAMES[ptype]} longer than its fields")


def _check_reason(code: int, ptype: int) -> None:
    if code not in _V5_REASONS[ptype]:
        raise MqttError(_PROTOCOL, f"reason code 0x{code:02X} is not valid in {_NAMES[ptype]}")


def _read_reason_and_properties(
    buf: bytearray, pos: int, end: int, ptype: int
) -> tuple[int, Properties]:
    """DISCONNECT and AUTH: both fields may be left out (3.14.2.1, 3.15.2.1)."""
    if pos == end:
        return 0, NO_PROPERTIES
    reason = buf[pos]
    _check_reason(reason, ptype)
    if pos + 1 == end:
        return reason, NO_PROPERTIES
    properties, pos = read_properties(buf, pos + 1, end, ptype)
    _expect_end(pos, end, ptype)
    return reason, properties


def _reason_and_properties(packet: Disconnect | Auth, ptype: int) -> tuple[bytes, ...]:
    properties = packet.properties
    if properties is not NO_PROPERTIES and properties:
        return bytes((packet.reason_code,)), encode_properties(properties, ptype)
    if packet.reason_code:
        if ptype == _AUTH:  # AUTH omits both fields or neither (3.15.2.2.1)
            return bytes((packet.reason_code,)), b"\x00"
        return (bytes((packet.reason_code,)),)
    return ()


def _check_topic_name(topic: str) -> None:
    if not topic:
        # [MQTT-4.7.3-1]; in MQTT 5 only a Topic Alias may stand in for it.
        raise MqttError(_PROTOCOL, "empty topic name")
    if "+" in topic or "#" in topic:
        raise MqttError(_PROTOCOL, "wildcard in topic name")  # [MQTT-3.3.2-2]


def _check_topic_filter(topic_filter: str, level: int, no_local: bool) -> None:
    """Wildcards fill a whole level, '#' only the last (4.7.1); shares per 4.8.2."""
    if level == 5 and topic_filter.startswith(_SHARE_PREFIX):
        share_name, slash, topic_filter = topic_filter[len(_SHARE_PREFIX) :].partition("/")
        if not share_name or not slash or "+" in share_name or "#" in share_name:
            raise MqttError(_MALFORMED, "invalid shared subscription")  # [MQTT-4.8.2-1/2]
        if no_local:
            raise MqttError(_PROTOCOL, "No Local on a shared subscription")  # [MQTT-3.8.3-4]
    if not topic_filter:
        raise MqttError(_MALFORMED, "empty topic filter")  # [MQTT-4.7.3-1]
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, part in enumerate(levels):
        if part == "+" or (part == "#" and index == last):
            continue
        if "+" in part or "#" in part:
            # [MQTT-4.7.1-1], [MQTT-4.7.1-2]
            raise MqttError(_MALFORMED, "invalid wildcard in topic filter")
