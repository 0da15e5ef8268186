"""A small asyncio MQTT 3.1.1 client, built for load generation over TLS.

Only what the benchmark needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK,
UNSUBSCRIBE/UNSUBACK, PUBLISH at QoS 0 and 1, PUBACK, PINGREQ/PINGRESP and
DISCONNECT.  MQTT 3.1.1 (protocol level 4) because that is what all three
brokers speak (ActiveMQ 5.17 has no MQTT 5).  Packets are split straight out of
one bytearray; a PUBLISH's payload is not copied (the load reads its sequence
number and timestamp in place).  As in :mod:`bench.stomp_client`, every write
made during one event-loop iteration goes out in one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from bench.ws import WsTarget, open_wss

# Control packet types (high nibble of the first byte).
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_PACKET: Final = b"\xc0\x00"
PINGRESP_PACKET: Final = b"\xd0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"
MAX_REMAINING_LENGTH: Final = 268_435_455

_U16 = struct.Struct(">H")

CONNACK_CODES: Final = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttError(Exception):
    """The broker refused something or broke the protocol."""


def encode_length(n: int) -> bytes:
    """The Remaining Length field (a variable byte integer, 1-4 bytes)."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    clean_session: bool = True,
    keep_alive: int = 0,
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        if username is None:
            raise ValueError("MQTT 3.1.1 needs a user name to send a password")
        flags |= 0x40
        payload += encode_string(password)
    variable = encode_string("MQTT") + bytes((4, flags)) + _U16.pack(keep_alive)
    return packet(CONNECT << 4, variable + payload)


def subscribe_packet(packet_id: int, filters: Iterable[tuple[str, int]]) -> bytes:
    body = _U16.pack(packet_id) + b"".join(encode_string(f) + bytes((q,)) for f, q in filters)
    return packet(SUBSCRIBE << 4 | 0x02, body)


def unsubscribe_packet(packet_id: int, filters: Iterable[str]) -> bytes:
    body = _U16.pack(packet_id) + b"".join(encode_string(f) for f in filters)
    return packet(UNSUBSCRIBE << 4 | 0x02, body)


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + _U16.pack(packet_id)


class PublishEncoder:
    """PUBLISH packets to one topic with one payload size, built from a cached prefix.

    ``encode(payload, packet_id)``: QoS 0 ignores ``packet_id``; QoS 1 needs 1-65535.
    """

    def __init__(self, topic: str, qos: int, payload_size: int, *, retain: bool = False) -> None:
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        self.qos = qos
        topic_field = encode_string(topic)
        remaining = len(topic_field) + (2 if qos else 0) + payload_size
        first = PUBLISH << 4 | qos << 1 | (1 if retain else 0)
        self.payload_size = payload_size
        self._prefix = bytes((first,)) + encode_length(remaining) + topic_field

    def encode(self, payload: bytes, packet_id: int = 0) -> bytes:
        if len(payload) != self.payload_size:
            raise ValueError(f"payload is {len(payload)} bytes, not {self.payload_size}")
        if self.qos:
            return self._prefix + _U16.pack(packet_id) + payload
        return self._prefix + payload


def decode_publish(first_byte: int, body: bytes) -> tuple[str, int, int, int]:
    """``(topic, qos, packet_id, payload offset)`` of a PUBLISH body."""
    (tlen,) = _U16.unpack_from(body, 0)
    topic = body[2 : 2 + tlen].decode()
    pos = 2 + tlen
    qos = (first_byte >> 1) & 0x03
    packet_id = 0
    if qos:
        (packet_id,) = _U16.unpack_from(body, pos)
        pos += 2
    return topic, qos, packet_id, pos


class PacketParser:
    """Splits a byte stream into ``(first byte, body)`` packets."""

    def __init__(self, max_packet: int = 1 << 24) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise MqttError("malformed remaining length")
            if not complete:
                break
            if length > self.max_packet:
                raise MqttError(f"packet of {length} bytes is larger than allowed")
            stop = i + length
            if stop > end:
                break
            out.append((buf[pos], bytes(buf[i:stop])))
            pos = stop
        if pos:
            del buf[:pos]
        return out


PacketHandler = Callable[[int, bytes], None]


class MqttProtocol(asyncio.Protocol):
    """Transport glue: splits packets and hands them to ``on_packet`` synchronously."""

    def __init__(self) -> None:
        self.parser = PacketParser()
        self.on_packet: PacketHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._early: list[tuple[int, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's SSL transport is not an asyncio.Transport subclass, but quacks like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.parser.feed(data)
        except MqttError as exc:
            self._fail(exc)
            return
        handler = self.on_packet
        if handler is None:
            self._early.extend(packets)
            return
        for first, body in packets:
            handler(first, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._can_write.set()
        if not self.closed.done():
            if exc is None:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(exc)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def _fail(self, exc: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def set_handler(self, handler: PacketHandler) -> None:
        self.on_packet = handler
        early, self._early = self._early, []
        for first, body in early:
            handler(first, body)

    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one write."""
        self._pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending and self.transport is not None and not self.transport.is_closing():
            data = b"".join(self._pending)
            self._pending.clear()
            self.transport.write(data)

    @property
    def writable(self) -> bool:
        """False while the transport's buffer is above its high-water mark."""
        return self._can_write.is_set()

    async def drain(self) -> None:
        await self._can_write.wait()


class MqttConnection:
    """One MQTT 3.1.1 session.  Use :meth:`open`; PUBLISH and PUBACK go to your handler.

    SUBACK, UNSUBACK and PINGRESP answer the awaitable requests here; CONNACK
    after the first is a protocol error.
    """

    def __init__(self, protocol: MqttProtocol, session_present: bool) -> None:
        self.protocol = protocol
        self.session_present = session_present
        self._handler: PacketHandler | None = None
        self._requests: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._next_request_id = 0xF000  # the load's PUBLISH ids stay below this
        protocol.set_handler(self._dispatch)

    @property
    def tls_info(self) -> str:
        transport = self.protocol.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        if sslobj is None:
            return "?"
        cipher = sslobj.cipher()
        return f"{sslobj.version()} {cipher[0] if cipher else '?'}"

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        clean_session: bool = True,
        keep_alive: int = 0,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        ws: WsTarget | None = None,
    ) -> MqttConnection:
        loop = asyncio.get_running_loop()
        if ws is None:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    MqttProtocol,
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname or host,
                ),
                timeout,
            )
        else:
            protocol = await asyncio.wait_for(
                open_wss(
                    MqttProtocol,
                    host,
                    port,
                    ssl_context,
                    ws,
                    server_hostname=server_hostname or host,
                ),
                timeout,
            )
        first: asyncio.Future[tuple[int, bytes]] = loop.create_future()

        def on_first(first_byte: int, body: bytes) -> None:
            if not first.done():
                first.set_result((first_byte, body))

        protocol.set_handler(on_first)
        protocol.write(
            connect_packet(
                client_id,
                username=username,
                password=password,
                clean_session=clean_session,
                keep_alive=keep_alive,
            )
        )
        try:
            waiters: list[asyncio.Future[Any]] = [first, protocol.closed]
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if first not in done:
                if protocol.closed.done() and protocol.closed.exception() is not None:
                    raise MqttError(f"connection lost: {protocol.closed.exception()}")
                raise MqttError("no CONNACK (connection closed or timed out)")
            first_byte, body = first.result()
            if first_byte >> 4 != CONNACK or len(body) != 2:
                raise MqttError(f"expected CONNACK, got packet type {first_byte >> 4}")
            if body[1]:
                reason = CONNACK_CODES.get(body[1], f"return code {body[1]}")
                raise MqttError(f"CONNECT refused: {reason}")
            session_present = bool(body[0] & 0x01)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        return cls(protocol, session_present)

    def set_handler(self, handler: PacketHandler) -> None:
        """Handler for PUBLISH and PUBACK packets: ``handler(first_byte, body)``."""
        self._handler = handler

    def _dispatch(self, first_byte: int, body: bytes) -> None:
        kind = first_byte >> 4
        if kind in (PUBLISH, PUBACK):
            if self._handler is not None:
                self._handler(first_byte, body)
            return
        if kind in (SUBACK, UNSUBACK):
            key = (kind, _U16.unpack_from(body, 0)[0])
        elif kind == PINGRESP:
            key = (kind, 0)
        else:
            self.protocol._fail(MqttError(f"unexpected packet type {kind} from the broker"))
            return
        fut = self._requests.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(body)

    def _request_id(self) -> int:
        # 0xF000-0xFFFF: clear of the PUBLISH ids the load uses on a connection.
        last = self._next_request_id
        self._next_request_id = 0xF000 if last >= 0xFFFF else last + 1
        return self._next_request_id

    async def _request(self, data: bytes, key: tuple[int, int], timeout: float) -> bytes:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._requests[key] = fut
        self.protocol.write(data)
        waiters: list[asyncio.Future[Any]] = [fut, self.protocol.closed]
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if fut not in done:
            self._requests.pop(key, None)
            raise MqttError(f"no answer to packet type {data[0] >> 4} (closed or timed out)")
        return fut.result()

    async def subscribe(self, topic_filter: str, qos: int, timeout: float = 30.0) -> int:
        """SUBSCRIBE one filter; return the granted QoS (raises if refused)."""
        pid = self._request_id()
        body = await self._request(
            subscribe_packet(pid, [(topic_filter, qos)]), (SUBACK, pid), timeout
        )
        granted = body[2] if len(body) > 2 else 0x80
        if granted == 0x80:
            raise MqttError(f"SUBSCRIBE to {topic_filter!r} refused")
        return granted

    async def unsubscribe(self, topic_filter: str, timeout: float = 30.0) -> None:
        pid = self._request_id()
        await self._request(unsubscribe_packet(pid, [topic_filter]), (UNSUBACK, pid), timeout)

    async def ping(self, timeout: float = 30.0) -> None:
        """PINGREQ → PINGRESP: the broker has read everything sent before."""
        await self._request(PINGREQ_PACKET, (PINGRESP, 0), timeout)

    def write(self, data: bytes) -> None:
        self.protocol.write(data)

    async def drain(self) -> None:
        await self.protocol.drain()

    async def disconnect(self, timeout: float = 10.0) -> None:
        """DISCONNECT, then wait (briefly) for the broker to close the connection."""
        try:
            if not self.protocol.closed.done():
                self.protocol.write(DISCONNECT_PACKET)
                await asyncio.wait([self.protocol.closed], timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()
