"""An asyncio HTTPS server for the KMS JSON protocol: HTTP/1.1, keep-alive, bounded.

Only what KMS clients send is understood: requests with a ``Content-Length``
body (no chunked uploads), ``Expect: 100-continue``, persistent connections.
Each request is answered by :class:`~sealmq.kms.wire.WireHandler` on a worker
thread (the key service fsyncs), one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time

from sealmq.kms.wire import HttpResponse, WireHandler

__all__ = [
    "IDLE_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "KmsServer",
]

log = logging.getLogger(__name__)

#: Request line and headers: SDKs send well under 2 KiB; nginx's default buffer is 8 KiB.
MAX_HEAD_BYTES = 16 * 1024
#: Body: the largest KMS request is a ReEncrypt of a 6 KiB blob (~8 KiB base64)
#: plus two encryption contexts; AWS caps request payloads far below this.
MAX_BODY_BYTES = 256 * 1024
#: Connections served at once; another waits up to IO_TIMEOUT_SECONDS for a slot.
MAX_CONNECTIONS = 256
#: A connection with no complete request for this long is closed (AWS: ~60 s).
IDLE_TIMEOUT_SECONDS = 60.0
#: Default time to finish a TLS handshake, for a new connection to begin its first
#: request, and for a request's head, then its body, to arrive once begun (a slow
#: drip is answered 408; Apache's mod_reqtimeout and nginx's client_header_timeout
#: bound the same; the broker passes ``[limits] login_timeout``).
IO_TIMEOUT_SECONDS = 10.0
#: Time for a peer to answer our TLS close_notify before the socket is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}


def _http_date() -> str:
    """Now as an HTTP ``Date`` (RFC 7231 IMF-fixdate), without importing ``email``."""
    now = time.gmtime()
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[now.tm_wday]
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[
        now.tm_mon - 1
    ]
    return f"{day}, {now.tm_mday:02d} {month} {now.tm_year} {time.strftime('%H:%M:%S', now)} GMT"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KmsServer:
    """Serve ``handler`` on ``host``:``port`` (0 picks a free port) over TLS.

    ``ssl_context`` None serves plain HTTP, for a deliberately plain listener only.
    """

    def __init__(
        self,
        handler: WireHandler,
        ssl_context: ssl.SSLContext | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        request_timeout: float = IO_TIMEOUT_SECONDS,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        self._handler = handler
        #: Listening sockets bound by the caller (the broker binds without uvloop's
        #: resolver threads); None: bind ``host``/``port`` here.
        self._sockets = sockets
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._idle_timeout = idle_timeout
        self._request_timeout = request_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        if not self._servers:
            raise RuntimeError("the server is not started")
        return int(self._servers[0].sockets[0].getsockname()[1])

    async def start(self) -> int:
        """Bind (unless given sockets) and start serving; returns the bound port."""
        timeout = self._request_timeout if self._ssl is not None else None
        try:
            if self._sockets is None:
                self._servers.append(
                    await asyncio.start_server(
                        self._connection,
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        limit=MAX_HEAD_BYTES,
                        ssl_handshake_timeout=timeout,
                    )
                )
            for sock in self._sockets or ():
                self._servers.append(
                    await asyncio.start_server(
                        self._connection,
                        sock=sock,
                        ssl=self._ssl,
                        limit=MAX_HEAD_BYTES,
                        ssl_handshake_timeout=timeout,
                    )
                )
        except BaseException:
            for server in self._servers:
                server.close()
            self._servers.clear()
            raise
        return self.port

    async def close(self) -> None:
        """Stop accepting, drop every connection and wait for their tasks."""
        for server in self._servers:
            server.close()
        for task, writer in list(self._connections.items()):
            # abort(), not close(): a TLS close waits for the peer's close_notify,
            # which an idle pooled client connection never sends.
            writer.transport.abort()
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> KmsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            # A connection waits a bounded time for a slot, so a flood cannot pile up.
            await asyncio.wait_for(self._slots.acquire(), IO_TIMEOUT_SECONDS)
            try:
                await self._serve(reader, writer)
            finally:
                self._slots.release()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("key service: connection failed")
        finally:
            self._connections.pop(task, None)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_SECONDS)
            except Exception:
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else "unknown"
        # A new connection gets request_timeout to begin a request; between requests of
        # a kept-alive one, idle_timeout. Nothing begun by then: closed without a word.
        wait = self._request_timeout
        while True:
            try:
                first = await asyncio.wait_for(reader.read(1), wait)
            except TimeoutError:
                return
            if not first:
                return
            wait = self._idle_timeout
            try:
                head = first + await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), self._request_timeout
                )
            except asyncio.LimitOverrunError:
                await _send_plain(writer, 431, "request head too large", keep_alive=False)
                return
            except asyncio.IncompleteReadError as exc:
                if (first + exc.partial).strip():
                    await _send_plain(writer, 400, "incomplete request", keep_alive=False)
                return
            except TimeoutError:
                await _send_plain(
                    writer, 408, "request head not received in time", keep_alive=False
                )
                return
            try:
                method, target, version, headers = _parse_head(head)
                length = _content_length(headers)
            except _BadRequest as exc:
                await _send_plain(writer, exc.status, exc.message, keep_alive=False)
                return
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            try:
                body = await asyncio.wait_for(reader.readexactly(length), self._request_timeout)
            except TimeoutError:
                await _send_plain(
                    writer, 408, "request body not received in time", keep_alive=False
                )
                return
            connection = headers.get("connection", "").lower()
            keep_alive = (version == "HTTP/1.1" and connection != "close") or (
                version == "HTTP/1.0" and connection == "keep-alive"
            )
            response = await asyncio.to_thread(
                self._handler.handle, method, target, headers, body, peer
            )
            await _send(writer, response, keep_alive=keep_alive)
            if not keep_alive:
                return


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400, "request head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1].startswith("/"):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, "HTTP version not supported")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        # Repeated headers are combined as RFC 9110 5.3 says (and SigV4 expects).
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    if "host" not in headers:
        raise _BadRequest(400, "missing Host header")
    return method, target, version, headers


def _content_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise _BadRequest(400, "malformed Content-Length")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise _BadRequest(413, "request body too large")
    return length


async def _send(writer: asyncio.StreamWriter, response: HttpResponse, *, keep_alive: bool) -> None:
    reason = _REASONS.get(response.status, "Error")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines += [
        f"Content-Length: {len(response.body)}",
        f"Date: {_http_date()}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()


async def _send_plain(
    writer: asyncio.StreamWriter, status: int, message: str, *, keep_alive: bool
) -> None:
    body = json.dumps({"__type": "SerializationException", "message": message}).encode()
    await _send(
        writer,
        HttpResponse(status, [("Content-Type", "application/x-amz-json-1.1")], body),
        keep_alive=keep_alive,
    )
