"""Shared fixtures for the store tests: key providers, messages, store flavours."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.core.model import (
    MQTT_ANNOTATION,
    BodyKind,
    Byte,
    Char,
    Destination,
    DestinationKind,
    Float32,
    Int,
    Message,
    Short,
    Symbol,
    Timestamp,
)
from sealmq.core.ports import (
    AddMessage,
    AddScheduled,
    Op,
    PrepareTransaction,
    RecoveredState,
    SetRetained,
)
from sealmq.kms.local import LocalKeyService
from sealmq.store.crypto import encode_context


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeKeyProvider:
    """An in-memory KEK that can be revoked, counting its calls."""

    def __init__(self, key_id: str = "fake-key") -> None:
        self._key_id = key_id
        self._kek = AESGCM(os.urandom(32))
        self.available = True
        self.generated = 0
        self.decrypted = 0

    @property
    def key_id(self) -> str:
        return self._key_id

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        if not self.available:
            raise PermissionError("grant revoked")
        self.generated += 1
        dek = os.urandom(32)
        nonce = os.urandom(12)
        return dek, nonce + self._kek.encrypt(nonce, dek, encode_context(context))

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        if not self.available:
            raise PermissionError("grant revoked")
        self.decrypted += 1
        try:
            return self._kek.decrypt(wrapped[:12], wrapped[12:], encode_context(context))
        except InvalidTag:
            raise ValueError("context mismatch") from None


@pytest.fixture
def kms(tmp_path: Path) -> LocalKeyService:
    return LocalKeyService(tmp_path / "keys")


@pytest.fixture
def fake_keys() -> FakeKeyProvider:
    return FakeKeyProvider()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_message(i: int, queue: str = "orders", **overrides: Any) -> Message:
    m = Message(
        message_id=f"ID:test-{i}",
        destination=Destination.queue(queue),
        body=f"body {i}".encode(),
        body_kind=BodyKind.TEXT,
        persistent=True,
    )
    for key, value in overrides.items():
        setattr(m, key, value)
    return m


def v1_message(marker: str = "x") -> Message:
    """A message with every field of message version 1 set to something other than its
    default: what the committed format-1 journals (``files/golden*``) hold."""
    return Message(
        message_id=f"ID:{marker}-id",
        destination=Destination(DestinationKind.TEMP_TOPIC, f"dest.{marker}"),
        body=f"body {marker}".encode(),
        body_kind=BodyKind.MAP,
        persistent=True,
        priority=9,
        expiration=1_900_000_000_000,
        timestamp=1_700_000_000_000,
        correlation_id=f"corr-{marker}",
        reply_to=Destination(DestinationKind.TEMP_QUEUE, f"reply.{marker}"),
        type=f"type-{marker}",
        group_id=f"group-{marker}",
        group_seq=42,
        properties={
            f"str-{marker}": f"value-{marker}",
            "bytes": f"bytes-{marker}".encode(),
            "int": -7,
            "big": 2**80,
            "float": 2.5,
            "true": True,
            "false": False,
            "none": None,
        },
        redelivery_count=3,
        original_destination=Destination(DestinationKind.QUEUE, f"orig.{marker}"),
        origin="conn-1",
        # Version 1's QoS 2 and retain flag.
        annotations={MQTT_ANNOTATION: b"\x06"},
    )


def full_message(marker: str = "x") -> Message:
    """A message with every field set to something other than its default."""
    m = v1_message(marker)
    m.correlation_id = UUID(int=7)
    m.properties.update(
        {
            "byte": Byte(-3),
            "short": Short(300),
            "int32": Int(70000),
            "float32": Float32(1.5),
            "char": Char("c"),
            "symbol": Symbol(f"sym-{marker}"),
            "timestamp": Timestamp(1_700_000_000_123),
            "uuid": UUID(int=42),
            "decimal": Decimal("-1.50"),
        }
    )
    m.user_id = f"user-{marker}"
    m.client_message_id = f"client-id-{marker}".encode()
    m.content_type = "application/json"
    m.content_encoding = "gzip"
    m.subject = f"subject-{marker}"
    m.reply_to_group_id = f"reply-group-{marker}"
    m.delivery_time = 1_800_000_000_000
    m.broker_path = ("broker-a", f"broker-{marker}")
    m.producer_id = f"producer-{marker}"
    m.producer_seq = 17
    m.annotations = {MQTT_ANNOTATION: b"\x06", "amqp": b"\x00\x53\x70"}
    return m


def message_fields(m: Message) -> dict[str, Any]:
    """Every persisted field (``origin`` is never persisted)."""
    return {f.name: getattr(m, f.name) for f in fields(m) if f.name != "origin"}


def op_view(op: Op) -> object:
    """A comparable form of an op (messages compare by identity)."""
    if isinstance(op, AddMessage):
        return ("add", message_fields(op.message), op.owners)
    if isinstance(op, SetRetained):
        return ("retain", op.topic, None if op.message is None else message_fields(op.message))
    if isinstance(op, AddScheduled):
        job = op.job
        return ("schedule", job.job_id, message_fields(job.message), job.schedule)
    if isinstance(op, PrepareTransaction):
        return ("prepare", op.xid, [op_view(each) for each in op.ops])
    return op


def state_view(state: RecoveredState) -> tuple[Any, ...]:
    """A comparable form of a recovered state (subscriptions have no order)."""
    return (
        [(message_fields(s.message), s.owners, s.delivery_counts) for s in state.messages],
        sorted(state.subscriptions, key=lambda info: info.key),
        [message_fields(m) for m in state.retained],
        state.sessions,
        state.destinations,
        [op_view(AddScheduled(job)) for job in state.scheduled],
        {xid: [op_view(op) for op in ops] for xid, ops in state.prepared.items()},
    )


def all_files(root: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            yield Path(dirpath) / name
