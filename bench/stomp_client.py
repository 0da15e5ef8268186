"""A small asyncio STOMP 1.2 client, built for load generation over TLS.

Only what the benchmark needs: CONNECT, SEND, SUBSCRIBE, ACK, DISCONNECT and
RECEIPT/ERROR handling.  Frames are parsed straight out of one bytearray, and
every write made during one event-loop iteration is coalesced into a single
``transport.write`` so a burst of SENDs or ACKs becomes one TLS record stream
rather than one tiny record per frame.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bench.ws import WsTarget, open_wss

_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"}
_UNESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "c": ":"}
_SPECIAL = frozenset(_ESCAPES)


class StompError(Exception):
    """The broker answered with an ERROR frame or broke the protocol."""


@dataclass(slots=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _escape(value: str) -> str:
    if _SPECIAL.isdisjoint(value):
        return value
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out: list[str] = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            if nxt not in _UNESCAPES:
                raise StompError(f"bad header escape \\{nxt}")
            out.append(_UNESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


def encode_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """Encode one frame; a body always gets a ``content-length`` header."""
    lines = [command]
    lines.extend(f"{_escape(k)}:{_escape(v)}" for k, v in headers.items())
    if body:
        lines.append(f"content-length:{len(body)}")
    head = ("\n".join(lines) + "\n\n").encode()
    return head + body + b"\x00"


def ack_frame(ack_id: str) -> bytes:
    """An ACK for the ``ack`` header of a MESSAGE (escaped: ActiveMQ's ids contain ':')."""
    return b"ACK\nid:" + _escape(ack_id).encode() + b"\n\n\x00"


class FrameParser:
    """Incremental STOMP frame parser (tolerates EOL heart-beats between frames)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while True:
            while pos < end and buf[pos] in (0x0A, 0x0D):
                pos += 1
            if pos >= end:
                break
            hdr_end = buf.find(b"\n\n", pos)
            if hdr_end < 0:
                break
            head = bytes(buf[pos:hdr_end]).decode().replace("\r\n", "\n")
            body_start = hdr_end + 2
            lines = head.split("\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                key, sep, value = line.partition(":")
                if not sep:
                    raise StompError(f"malformed header line {line!r}")
                key = _unescape(key)
                if key not in headers:  # STOMP 1.2: the first occurrence wins
                    headers[key] = _unescape(value)
            length = headers.get("content-length")
            if length is not None:
                body_end = body_start + int(length)
                if body_end >= end:
                    break
                if buf[body_end] != 0:
                    raise StompError("frame body not followed by NUL")
            else:
                body_end = buf.find(b"\x00", body_start)
                if body_end < 0:
                    break
            frames.append(Frame(lines[0], headers, bytes(buf[body_start:body_end])))
            pos = body_end + 1
        if pos:
            del buf[:pos]
        return frames


FrameHandler = Callable[[Frame], None]


class StompProtocol(asyncio.Protocol):
    """Transport glue: parses frames and hands them to ``on_frame`` synchronously."""

    def __init__(self) -> None:
        self.parser = FrameParser()
        self.on_frame: FrameHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._early: list[Frame] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's SSL transport is not an asyncio.Transport subclass, but quacks like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.parser.feed(data)
        except (StompError, ValueError, UnicodeDecodeError) as exc:
            self._fail(exc)
            return
        handler = self.on_frame
        for frame in frames:
            if handler is None:
                self._early.append(frame)
            else:
                handler(frame)

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

    def set_handler(self, handler: FrameHandler) -> None:
        self.on_frame = handler
        early, self._early = self._early, []
        for frame in early:
            handler(frame)

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


class StompConnection:
    """One STOMP 1.2 session.  Use :meth:`open`; frames go to the handler you set."""

    def __init__(self, protocol: StompProtocol, connected: Frame) -> None:
        self.protocol = protocol
        self.connected = connected
        self._receipts: dict[str, asyncio.Future[None]] = {}
        self._handler: FrameHandler | None = None
        self.error: Frame | None = None
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
        login: str | None,
        passcode: str | None,
        vhost: str = "localhost",
        server_hostname: str | None = None,
        timeout: float = 10.0,
        ws: WsTarget | None = None,
    ) -> StompConnection:
        loop = asyncio.get_running_loop()
        if ws is None:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    StompProtocol,
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
                    StompProtocol,
                    host,
                    port,
                    ssl_context,
                    ws,
                    server_hostname=server_hostname or host,
                ),
                timeout,
            )
        first: asyncio.Future[Frame] = loop.create_future()

        def on_first(frame: Frame) -> None:
            if not first.done():
                first.set_result(frame)

        protocol.set_handler(on_first)
        headers = {"accept-version": "1.2", "host": vhost, "heart-beat": "0,0"}
        if login is not None:
            headers["login"] = login
        if passcode is not None:
            headers["passcode"] = passcode
        protocol.write(encode_frame("CONNECT", headers))
        try:
            waiters: list[asyncio.Future[Any]] = [first, protocol.closed]
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if first not in done:
                if protocol.closed.done() and protocol.closed.exception() is not None:
                    raise StompError(f"connection lost: {protocol.closed.exception()}")
                raise StompError("no CONNECTED frame (connection closed or timed out)")
            reply = first.result()
            if reply.command != "CONNECTED":
                msg = reply.headers.get("message", "")
                raise StompError(f"CONNECT refused: {reply.command} {msg} {reply.body[:200]!r}")
            if reply.headers.get("version") != "1.2":
                raise StompError(f"broker negotiated STOMP {reply.headers.get('version')}")
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        return cls(protocol, reply)

    def set_handler(self, handler: FrameHandler) -> None:
        """Handler for MESSAGE frames (RECEIPT and ERROR are handled here)."""
        self._handler = handler

    def _dispatch(self, frame: Frame) -> None:
        command = frame.command
        if command == "MESSAGE":
            if self._handler is not None:
                self._handler(frame)
        elif command == "RECEIPT":
            fut = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            elif self._handler is not None:
                self._handler(frame)
        elif command == "ERROR":
            self.error = frame
            err = StompError(
                f"ERROR frame: {frame.headers.get('message', '')} {frame.body[:300]!r}"
            )
            for fut in self._receipts.values():
                if not fut.done():
                    fut.set_exception(err)
            self._receipts.clear()
            if self._handler is not None:
                self._handler(frame)

    def send_frame(self, command: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.protocol.write(encode_frame(command, headers, body))

    def write_raw(self, data: bytes) -> None:
        self.protocol.write(data)

    async def request(
        self, command: str, headers: dict[str, str], receipt: str, timeout: float = 30.0
    ) -> None:
        """Send a frame with a receipt header and wait for the RECEIPT."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts[receipt] = fut
        self.send_frame(command, {**headers, "receipt": receipt})
        await asyncio.wait_for(fut, timeout)

    async def drain(self) -> None:
        await self.protocol.drain()

    async def disconnect(self, timeout: float = 10.0) -> None:
        """Graceful DISCONNECT (waits for its receipt), then close the socket.

        The broker closing the connection also ends the wait: RabbitMQ's
        web_stomp closes the WebSocket on a DISCONNECT without sending its receipt.
        """
        closed = self.protocol.closed
        try:
            if not closed.done():
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._receipts["bye"] = fut
                self.send_frame("DISCONNECT", {"receipt": "bye"})
                done, _ = await asyncio.wait(
                    [fut, closed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    raise TimeoutError("no RECEIPT for DISCONNECT")
                if fut in done:
                    fut.result()
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: a reset after DISCONNECT is no failure
            self.close()

    def close(self) -> None:
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()
