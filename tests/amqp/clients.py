"""Qpid Proton clients of a test broker, over TLS with SASL PLAIN, all closed at teardown."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from proton import SSLDomain
from proton.reactor import Container
from proton.utils import BlockingConnection

from tests.support import PASSWORD, TIMEOUT, USER


def client_domain(ca_file: Path) -> SSLDomain:
    """Proton's TLS for a client that trusts the broker's CA and checks its name."""
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(str(ca_file))
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return domain


class AmqpClients:
    def __init__(self, port: int, ca_file: Path) -> None:
        self.port = port
        self.ca_file = ca_file
        self.made: list[BlockingConnection] = []

    @property
    def url(self) -> str:
        return f"amqps://localhost:{self.port}"

    def connect(
        self,
        user: str | None = USER,
        password: str | None = PASSWORD,
        *,
        mechs: str = "PLAIN",
        container_id: str | None = None,
        **kwargs: Any,
    ) -> BlockingConnection:
        """A BlockingConnection over TLS; ``user`` None: no credentials (``mechs``)."""
        options: dict[str, Any] = {
            "ssl_domain": client_domain(self.ca_file),
            "timeout": TIMEOUT,
            "allowed_mechs": mechs,
            "sasl_enabled": True,
        }
        if user is not None:
            options["user"] = user
            options["password"] = password
        if container_id is not None:
            container = Container()
            container.container_id = container_id
            options["container"] = container
        options.update(kwargs)
        conn = BlockingConnection(self.url, **options)
        self.made.append(conn)
        return conn

    def close_all(self) -> None:
        for conn in self.made:
            # Already closed by the broker, or the broker is gone.
            with contextlib.suppress(Exception):
                conn.close()
        self.made.clear()
