"""A do-nothing STOMP-over-TLS "broker" for calibrating the load client.

``python -m bench --broker null`` runs the scenarios against it, which shows
how fast the benchmark client itself can go on this machine.  It keeps nothing
on disk, sends RECEIPTs at once, forwards each SEND straight to a subscriber of
the destination (or holds it in memory until one subscribes) and ignores ACKs
and prefetch.  Not a broker: a ceiling for the client, nothing more.

Run as a child process: ``python -m bench.null_broker --port P --cert C --key K``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from collections import deque

from bench.aio import run_async
from bench.stomp_client import Frame, FrameParser, StompError, encode_frame

_DROP = frozenset({"receipt", "content-length"})


class _Hub:
    def __init__(self) -> None:
        self.subscribers: dict[str, deque[tuple[NullSession, str]]] = {}
        self.backlog: dict[str, deque[Frame]] = {}
        self.next_id = 0

    def deliver(self, destination: str, frame: Frame) -> None:
        subs = self.subscribers.get(destination)
        if not subs:
            self.backlog.setdefault(destination, deque()).append(frame)
            return
        subs.rotate(-1)
        session, sub_id = subs[0]
        self.next_id += 1
        msg_id = str(self.next_id)
        headers = {k: v for k, v in frame.headers.items() if k not in _DROP}
        headers.update({"subscription": sub_id, "message-id": msg_id, "ack": msg_id})
        session.write(encode_frame("MESSAGE", headers, frame.body))

    def subscribe(self, session: NullSession, destination: str, sub_id: str) -> None:
        self.subscribers.setdefault(destination, deque()).append((session, sub_id))
        backlog = self.backlog.pop(destination, deque())
        while backlog:
            self.deliver(destination, backlog.popleft())

    def drop(self, session: NullSession) -> None:
        for subs in self.subscribers.values():
            for entry in [e for e in subs if e[0] is session]:
                subs.remove(entry)


class NullSession(asyncio.Protocol):
    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
        self.parser = FrameParser()
        self.transport: asyncio.WriteTransport | None = None
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.drop(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.parser.feed(data)
        except (StompError, ValueError, UnicodeDecodeError):
            if self.transport is not None:
                self.transport.abort()
            return
        out: list[bytes] = []
        for frame in frames:
            headers = frame.headers
            command = frame.command
            if command in ("CONNECT", "STOMP"):
                out.append(encode_frame("CONNECTED", {"version": "1.2", "heart-beat": "0,0"}))
            elif command == "SEND":
                self.hub.deliver(headers["destination"], frame)
            elif command == "SUBSCRIBE":
                self.hub.subscribe(self, headers["destination"], headers["id"])
            elif command == "UNSUBSCRIBE":
                self.hub.drop(self)
            if "receipt" in headers:
                out.append(encode_frame("RECEIPT", {"receipt-id": headers["receipt"]}))
            if command == "DISCONNECT" and self.transport is not None:
                self.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.write(b"".join(out))


async def serve(port: int, cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    hub = _Hub()
    server = await asyncio.get_running_loop().create_server(
        lambda: NullSession(hub), "127.0.0.1", port, ssl=ctx
    )
    print(f"null broker ready on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.null_broker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(args.port, args.cert, args.key))


if __name__ == "__main__":
    main()
