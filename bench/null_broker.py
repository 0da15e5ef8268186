"""A do-nothing STOMP- and MQTT-over-TLS "broker" for calibrating the load client.

``python -m bench --broker null`` runs the scenarios against it, which shows
how fast the benchmark client itself can go on this machine.  It keeps nothing
on disk.  STOMP: it sends RECEIPTs at once, forwards each SEND straight to a
subscriber of the destination (every subscriber of a ``/topic/``; or holds it in
memory until one subscribes) and
ignores ACKs and prefetch.  MQTT 3.1.1: it accepts any CONNECT, PUBACKs a QoS 1
PUBLISH at once and forwards every PUBLISH to each subscriber whose filter is
exactly its topic (no wildcards, no retained messages, no offline queueing: the
load subscribes before it publishes), at the lower of the two QoS, ignoring the
subscribers' PUBACKs.  Not a broker: a ceiling for the client, nothing more.

Run as a child process:
``python -m bench.null_broker [--stomp-port P] [--mqtt-port P] --cert C --key K``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from collections import deque

from bench.aio import run_async
from bench.mqtt_client import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP_PACKET,
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MqttError,
    PacketParser,
    decode_publish,
    encode_length,
    encode_string,
    puback_packet,
)
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
        # A queue message goes to one subscriber (round robin), a topic message to all.
        targets = list(subs) if destination.startswith("/topic/") else [subs[0]]
        self.next_id += 1
        msg_id = str(self.next_id)
        for session, sub_id in targets:
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


# -- MQTT 3.1.1 ---------------------------------------------------------------------------


class _MqttHub:
    def __init__(self) -> None:
        # topic filter -> {session: granted QoS}
        self.subscribers: dict[str, dict[NullMqttSession, int]] = {}

    def publish(self, topic: str, qos: int, body: bytes, payload_at: int) -> None:
        subs = self.subscribers.get(topic)
        if not subs:
            return
        topic_field = encode_string(topic)
        payload = body[payload_at:]
        qos0 = b""
        for session, granted in subs.items():
            if min(qos, granted) == 0:
                if not qos0:
                    qos0 = b"\x30" + encode_length(len(topic_field) + len(payload)) + topic_field
                    qos0 += payload
                session.write(qos0)
            else:
                pid = session.next_packet_id()
                head = b"\x32" + encode_length(len(topic_field) + 2 + len(payload)) + topic_field
                session.write(head + pid.to_bytes(2, "big") + payload)

    def subscribe(self, session: NullMqttSession, topic_filter: str, qos: int) -> None:
        self.subscribers.setdefault(topic_filter, {})[session] = qos

    def unsubscribe(self, session: NullMqttSession, topic_filter: str) -> None:
        self.subscribers.get(topic_filter, {}).pop(session, None)

    def drop(self, session: NullMqttSession) -> None:
        for subs in self.subscribers.values():
            subs.pop(session, None)


class NullMqttSession(asyncio.Protocol):
    def __init__(self, hub: _MqttHub) -> None:
        self.hub = hub
        self.parser = PacketParser()
        self.transport: asyncio.WriteTransport | None = None
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.drop(self)

    def next_packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.parser.feed(data)
        except MqttError:
            if self.transport is not None:
                self.transport.abort()
            return
        out: list[bytes] = []
        for first, body in packets:
            kind = first >> 4
            if kind == PUBLISH:
                topic, qos, pid, payload_at = decode_publish(first, body)
                if qos:
                    out.append(puback_packet(pid))
                self.hub.publish(topic, qos, body, payload_at)
            elif kind == CONNECT:
                out.append(b"\x20\x02\x00\x00")
            elif kind in (SUBSCRIBE, UNSUBSCRIBE):
                pos, granted = 2, bytearray()
                while pos < len(body):
                    n = int.from_bytes(body[pos : pos + 2], "big")
                    topic_filter = body[pos + 2 : pos + 2 + n].decode()
                    pos += 2 + n
                    if kind == SUBSCRIBE:
                        qos = min(body[pos], 1)
                        pos += 1
                        granted.append(qos)
                        self.hub.subscribe(self, topic_filter, qos)
                    else:
                        self.hub.unsubscribe(self, topic_filter)
                if kind == SUBSCRIBE:
                    ack = body[:2] + bytes(granted)
                    out.append(b"\x90" + encode_length(len(ack)) + ack)
                else:
                    out.append(b"\xb0\x02" + body[:2])
            elif kind == PINGREQ:
                out.append(PINGRESP_PACKET)
            elif kind == DISCONNECT and self.transport is not None:
                self.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.write(b"".join(out))


async def serve(stomp_port: int | None, mqtt_port: int | None, cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    if stomp_port:
        hub = _Hub()
        servers.append(
            await loop.create_server(lambda: NullSession(hub), "127.0.0.1", stomp_port, ssl=ctx)
        )
        print(f"null broker: STOMP on 127.0.0.1:{stomp_port}", flush=True)
    if mqtt_port:
        mqtt_hub = _MqttHub()
        servers.append(
            await loop.create_server(
                lambda: NullMqttSession(mqtt_hub), "127.0.0.1", mqtt_port, ssl=ctx
            )
        )
        print(f"null broker: MQTT on 127.0.0.1:{mqtt_port}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.null_broker")
    parser.add_argument("--stomp-port", "--port", type=int, dest="stomp_port")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    if not args.stomp_port and not args.mqtt_port:
        parser.error("give --stomp-port and/or --mqtt-port")
    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(args.stomp_port, args.mqtt_port, args.cert, args.key))


if __name__ == "__main__":
    main()
