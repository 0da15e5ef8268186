"""KeyProvider clients: in-process through the service, and remote over the wire."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import pytest

from sealmq.kms.clients import RemoteKeyProvider, ServiceKeyProvider
from sealmq.kms.errors import KmsError
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.keys import DataKeyCache, KeyProvider
from tests.kms.support import Kms

CTX = {"broker": "b-1", "purpose": "sealmq-journal", "segment": "1"}


def test_service_provider_serves_the_store_through_a_grant(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    arn, _ = kms.principal("broker-b-1")
    grant = admin.create_grant(
        KeyId=key,
        GranteePrincipal=arn,
        Operations=["GenerateDataKey", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"broker": "b-1"}},
    )
    provider: KeyProvider = ServiceKeyProvider(
        kms.service, key, arn, grant_tokens=[grant["GrantToken"]]
    )
    clock = [0.0]
    cache = DataKeyCache(provider, ttl_seconds=60, clock=lambda: clock[0])
    dek, wrapped = cache.generate(CTX)
    assert cache.decrypt(wrapped, CTX) == dek
    admin.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    assert cache.decrypt(wrapped, CTX) == dek  # cached: nothing asked yet
    clock[0] = 61.0
    with pytest.raises(KeyUnavailableError, match="AccessDeniedException"):
        cache.decrypt(wrapped, CTX)
    with pytest.raises(KeyUnavailableError):
        cache.generate(CTX)


def test_service_provider_without_the_service_cannot_use_aws_mq(kms: Kms) -> None:
    direct = ServiceKeyProvider(kms.service, "alias/aws/mq", via_service=False)
    kms.service.service_managed_key()
    with pytest.raises(KmsError) as info:
        direct.generate_data_key(CTX)
    assert info.value.code == "AccessDeniedException"


def test_remote_provider_against_the_served_endpoint(kms: Kms, admin: Any) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.create_alias(AliasName="alias/broker", TargetKeyId=key)
    arn = f"arn:aws:iam::{kms.service.account_id}:role/remote-broker"
    access = kms.service.keystore.create_access_key(arn)
    grant = admin.create_grant(
        KeyId=key, GranteePrincipal=arn, Operations=["GenerateDataKey", "Decrypt"]
    )
    remote = RemoteKeyProvider(
        kms.endpoint,
        "alias/broker",
        access_key_id=access.access_key_id,
        secret_access_key=access.secret,
        verify=str(kms.certs.ca),
        grant_tokens=[grant["GrantToken"]],
        max_attempts=1,
    )
    try:
        dek, wrapped = remote.generate_data_key(CTX)
        assert len(dek) == 32 and remote.key_id == "alias/broker"
        assert remote.decrypt_data_key(wrapped, CTX) == dek
        with pytest.raises(KmsError) as info:
            remote.decrypt_data_key(wrapped, {**CTX, "segment": "2"})
        assert info.value.code == "InvalidCiphertextException"
        admin.disable_key(KeyId=key)
        with pytest.raises(KmsError) as info:
            remote.decrypt_data_key(wrapped, CTX)
        assert info.value.code == "DisabledException"
    finally:
        remote.close()


def test_remote_provider_gives_up_on_a_silent_service_within_its_bounds() -> None:
    """A service that accepts connections and never answers holds a call a bounded time."""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])  # and never a byte back

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    provider = RemoteKeyProvider(
        f"https://127.0.0.1:{server.getsockname()[1]}",
        "alias/x",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="secret",
        verify=False,
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=2,
    )
    try:
        started = time.monotonic()
        with pytest.raises((ConnectTimeoutError, ReadTimeoutError)):
            provider.generate_data_key(CTX)
        took = time.monotonic() - started
        # Two attempts of at most 0.5 + 0.5 s, and botocore's backoff (under 1 s) between.
        assert 0.5 <= took <= 2 * (0.5 + 0.5) + 1.0 + 2.0, f"{took:.1f} s"
        assert len(accepted) == 2  # both attempts reached the service, none more
    finally:
        provider.close()
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        server.close()
