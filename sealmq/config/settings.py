"""Typed broker settings: what ``sealmq.toml`` can say, with every default.

Every class here is a frozen dataclass; build them with
:func:`sealmq.config.load_settings` (which validates and reports every problem
at once) or directly in tests, e.g. ``Settings(data_dir=tmp_path).with_free_ports()``.
Direct construction is not validated beyond making ``data_dir`` absolute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "DEFAULT_TLS_PORTS",
    "KNOWN_LISTENERS",
    "LOG_LEVELS",
    "MANAGED_KEY",
    "OWNED_KEY",
    "EncryptionSettings",
    "KmsSettings",
    "LimitSettings",
    "Listener",
    "PolicySettings",
    "Settings",
    "StoreSettings",
    "TLSSettings",
    "UserSettings",
]

#: Endpoint names a listener may have, in the order the broker starts them.
KNOWN_LISTENERS: tuple[str, ...] = ("openwire", "amqp", "stomp", "mqtt", "wss", "console", "kms")

#: TLS ports a newcomer gets. These are Amazon MQ for ActiveMQ's endpoint ports
#: (OpenWire 61617, AMQP 5671, STOMP 61614, MQTT 8883, MQTT/STOMP over WSS 61619,
#: web console 8162), so existing client configuration works unchanged; ``kms``
#: (the local key service's AWS KMS JSON API) has no Amazon MQ port, 9443 is ours.
DEFAULT_TLS_PORTS: Mapping[str, int] = MappingProxyType(
    {
        "openwire": 61617,
        "amqp": 5671,
        "stomp": 61614,
        "mqtt": 8883,
        "wss": 61619,
        "console": 8162,
        "kms": 9443,
    }
)

#: Accepted ``log_level`` values (the names of the stdlib ``logging`` levels, lower case).
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Listener:
    """One network endpoint the broker binds on ``Settings.host``."""

    name: str
    """Endpoint name, one of :data:`KNOWN_LISTENERS`."""
    port: int
    """TCP port, 1-65535; 0 lets the OS pick a free port (tests use this)."""
    tls: bool = True
    """True: served over TLS. False: plain TCP, which exists only when configured
    explicitly under ``[listeners.plain]``."""


DEFAULT_LISTENERS: tuple[Listener, ...] = tuple(
    Listener(name, DEFAULT_TLS_PORTS[name]) for name in KNOWN_LISTENERS
)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """Certificates the TLS listeners use. Paths are absolute once loaded."""

    cert: Path | None = None
    """PEM certificate chain (leaf first). None: a local CA and server certificate
    are generated on first run under ``Settings.tls_dir``."""
    key: Path | None = None
    """PEM private key of ``cert`` (unencrypted). Set exactly when ``cert`` is set."""
    ca: Path | None = None
    """PEM CA bundle that client certificates are verified against. None: client
    certificates are not asked for."""
    require_client_cert: bool = False
    """True: refuse TLS clients without a certificate signed by ``ca`` (needs ``ca``).
    False with ``ca`` set: a client certificate is verified if one is presented."""

    @property
    def generate(self) -> bool:
        """True when no certificate is configured and the broker must mint its own."""
        return self.cert is None


@dataclass(frozen=True, slots=True)
class UserSettings:
    """A broker user declared in the configuration file."""

    username: str
    """Login name: 1-100 of ``A-Z a-z 0-9 - . _ ~`` (Amazon MQ's rule)."""
    password: str = field(repr=False)
    """Clear-text password as written in the file; hash it before keeping it."""
    groups: frozenset[str] = frozenset()
    """Group names the user belongs to, used by authorization rules."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Per-frame limits that bound what one client can make the broker buffer."""

    max_frame_body: int = 100 * MIB
    """Largest message body accepted in one frame, in bytes (ActiveMQ's default
    maxFrameSize is 100 MiB)."""
    max_frame_headers: int = 64 * 1024
    """Largest total size of one frame's headers, in bytes."""
    mqtt_max_packet_size: int = 268_435_455 + 5
    """Largest MQTT packet accepted, in bytes, fixed header included (the protocol's
    own ceiling: a 256 MiB remaining length plus 5 header bytes)."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Journal layout."""

    segment_size: int = 32 * MIB
    """Size at which the journal starts a new segment file (and a new data key),
    in bytes (KahaDB's default journal file length is 32 MiB)."""


#: ``kms_key`` values naming the two kinds of key the service itself holds.
MANAGED_KEY = "managed"
OWNED_KEY = "owned"


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    """Encryption at rest: which key the broker is created with, and how it reaches it."""

    data_key_cache_seconds: float = 300.0
    """How long a plaintext data key stays cached after the key service last
    unwrapped it, in seconds. It is also how long the broker keeps serving after
    the key service starts refusing (grant revoked, key disabled), and the period
    of the broker's key-access check."""
    kms_key: str | None = None
    """The key the broker is created with, fixed for its life (as in Amazon MQ):
    ``"managed"`` (the service-managed key ``alias/aws/mq``, created if needed),
    ``"owned"`` (the service-owned key, not visible in the account), or a
    customer managed key's id, key ARN, alias name (``alias/x``) or alias ARN.
    None: ``"managed"`` for a new broker; an existing broker keeps its key.
    Naming another key than the broker's refuses the start."""
    kms_endpoint: str | None = None
    """URL of a KMS-compatible service (``https://kms.eu-west-1.amazonaws.com``,
    or another sealmq's ``kms`` listener) to use instead of the embedded key
    service; ``kms_key`` must then name a customer managed key. None: embedded."""
    kms_region: str | None = None
    """Region to sign requests to ``kms_endpoint`` for; None: ``[kms] region``."""
    kms_access_key_id: str | None = None
    """Access key for ``kms_endpoint``; None: ``kms_credentials_file``/``kms_profile``,
    else botocore's usual chain (environment, ~/.aws, instance role)."""
    kms_secret_access_key: str | None = field(default=None, repr=False)
    """Secret of ``kms_access_key_id`` (set both or neither)."""
    kms_credentials_file: Path | None = None
    """AWS shared-credentials file for ``kms_endpoint`` (e.g. another sealmq's
    ``<data_dir>/credentials``); absolute once loaded."""
    kms_profile: str | None = None
    """Profile of the credentials file to use; None: ``default``."""
    kms_ca_bundle: Path | None = None
    """PEM CA bundle that ``kms_endpoint``'s certificate must chain to; None: the
    system's trust store."""

    @property
    def external(self) -> bool:
        """True when the broker's key lives in a KMS-compatible service at ``kms_endpoint``."""
        return self.kms_endpoint is not None


@dataclass(frozen=True, slots=True)
class KmsSettings:
    """The embedded key service (AWS KMS JSON API on the ``kms`` listener)."""

    region: str = "us-east-1"
    """Region the key service answers as (in ARNs and SigV4 scopes). Fixed when the
    key service is first created: a later configuration naming another region is
    refused at start and by ``sealmq kms``."""
    account_id: str | None = None
    """The account's 12-digit id (in ARNs and principals), as a string; None: 12
    random digits. Fixed when the key service is first created: a later
    configuration naming another id is refused at start and by ``sealmq kms``."""
    min_pending_window_days: int = 7
    """Smallest ScheduleKeyDeletion waiting period accepted, in days (KMS: 7;
    lower it only for tests)."""
    data_dir: Path | None = None
    """Folder of the key service (``keys/``, ``audit/``, ``credentials``); None:
    the broker's ``data_dir``. Outside it, ``sealmq broker delete`` removes the
    whole data folder and the key service lives on."""


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Destination policy, with ActiveMQ's names and defaults."""

    maximum_redeliveries: int = 6
    """Redeliveries before a message goes to the dead-letter queue; -1 = never."""
    dead_letter_queue: str = "ActiveMQ.DLQ"
    """Queue (ActiveMQ name, no wildcards) that receives messages past the limit."""
    redelivery_delay_ms: int = 0
    """Delay before a rolled-back or unacknowledged message is redelivered, in ms."""
    default_prefetch: int = 1000
    """Messages dispatched ahead of acks to a consumer that names no prefetch
    (ActiveMQ's queue default); 0 makes consumers pull one at a time."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``sealmq serve`` needs to start one broker."""

    data_dir: Path
    """Folder holding the journal, keys and generated certificates (absolute)."""
    host: str = "0.0.0.0"
    """Address every listener binds to ("0.0.0.0" = all IPv4, "::" = all)."""
    log_level: str = "info"
    """One of :data:`LOG_LEVELS`."""
    listeners: tuple[Listener, ...] = DEFAULT_LISTENERS
    """Enabled endpoints, TLS and plain. A disabled endpoint is simply absent."""
    tls: TLSSettings = TLSSettings()
    """Certificates for the TLS listeners."""
    users: tuple[UserSettings, ...] = ()
    """Users from the file. Empty: the broker creates an admin user itself."""
    limits: LimitSettings = LimitSettings()
    """Frame limits."""
    store: StoreSettings = StoreSettings()
    """Journal layout."""
    encryption: EncryptionSettings = EncryptionSettings()
    """Encryption at rest."""
    kms: KmsSettings = KmsSettings()
    """The embedded key service."""
    policy: PolicySettings = PolicySettings()
    """Redelivery, dead-letter and prefetch policy."""
    config_file: Path | None = None
    """Absolute path of the file these settings came from; None for pure defaults."""

    def __post_init__(self) -> None:
        # Relative paths would silently change meaning if the process chdirs.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())

    @property
    def kms_dir(self) -> Path:
        """Folder of the embedded key service (``[kms] data_dir``, else ``data_dir``)."""
        return self.kms.data_dir if self.kms.data_dir is not None else self.data_dir

    @property
    def tls_dir(self) -> Path:
        """Folder for the generated local CA and server certificate (``data_dir/tls``)."""
        return self.data_dir / "tls"

    def url_host(self, host: str | None = None) -> str:
        """The host part of a URL for this broker's listeners: ``host`` if given, else
        the bind address (``127.0.0.1`` for a wildcard bind); IPv6 in brackets."""
        if host is None:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"[{host}]" if ":" in host else host

    def listener(self, name: str, *, tls: bool = True) -> Listener | None:
        """The enabled listener ``name`` (TLS or plain), or None if it is disabled."""
        for listener in self.listeners:
            if listener.name == name and listener.tls == tls:
                return listener
        return None

    def listener_ports(self, *, tls: bool = True) -> dict[str, int]:
        """Enabled endpoint name -> port, for the TLS listeners (or the plain ones)."""
        return {item.name: item.port for item in self.listeners if item.tls == tls}

    def with_free_ports(self) -> Settings:
        """A copy with every enabled listener on port 0, so the OS picks free ports."""
        return dataclasses.replace(
            self, listeners=tuple(dataclasses.replace(item, port=0) for item in self.listeners)
        )
