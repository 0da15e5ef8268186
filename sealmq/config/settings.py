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
    "CLIENT_AUTH_MODES",
    "DEFAULT_TLS_PORTS",
    "KNOWN_LISTENERS",
    "LOG_LEVELS",
    "MANAGED_KEY",
    "OWNED_KEY",
    "SLOW_CONSUMER_STRATEGIES",
    "AuthorizationSettings",
    "CertificateUserSettings",
    "ClientAuth",
    "CompositeDestinationSettings",
    "EncryptionSettings",
    "KmsSettings",
    "LimitSettings",
    "Listener",
    "PolicySettings",
    "SecuritySettings",
    "Settings",
    "StoreSettings",
    "TLSSettings",
    "TemporaryDestinationSettings",
    "UserSettings",
    "WebSocketSettings",
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

#: Accepted ``[policy] slow_consumer_strategy`` values (see :class:`PolicySettings`).
SLOW_CONSUMER_STRATEGIES: tuple[str, ...] = ("discard_oldest", "abort")

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


#: ``client_auth`` values: no client certificate asked for; verified if sent; required.
CLIENT_AUTH_MODES: tuple[str, ...] = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """What one listener asks of client certificates (``[tls.listeners.<name>]``)."""

    mode: str = "none"
    """One of :data:`CLIENT_AUTH_MODES`. ``required``: a client without a certificate
    that chains to ``ca`` fails the TLS handshake; ``optional``: one is verified if
    sent (a bad one fails the handshake); ``none``: none is asked for."""
    ca: Path | None = None
    """PEM CA bundle client certificates must chain to (needed unless ``none``)."""


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
    False with ``ca`` set: a client certificate is verified if one is presented.
    ``ca`` and ``require_client_cert`` are replaced by ``client_ca`` and
    ``client_auth``; they still work (a warning says so)."""
    client_auth: str | None = None
    """Every listener's :attr:`ClientAuth.mode` unless ``listeners`` says otherwise;
    None: from the old keys (``optional`` with ``ca``, ``required`` with
    ``require_client_cert``), else ``none``."""
    client_ca: Path | None = None
    """PEM CA bundle client certificates must chain to, for every listener that
    names none of its own."""
    listeners: tuple[tuple[str, ClientAuth], ...] = ()
    """``[tls.listeners.<name>]``: a listener's own ``client_auth`` (and ``client_ca``)."""

    @property
    def legacy_client_keys(self) -> bool:
        """True when the replaced ``ca`` / ``require_client_cert`` are in use."""
        return self.ca is not None or self.require_client_cert

    def client_auth_for(self, listener: str) -> ClientAuth:
        """What ``listener`` asks of client certificates."""
        default_ca = self.client_ca or self.ca
        for name, auth in self.listeners:
            if name == listener:
                return ClientAuth(auth.mode, auth.ca or default_ca)
        if self.client_auth is not None:
            return ClientAuth(self.client_auth, default_ca)
        if self.ca is not None:
            return ClientAuth("required" if self.require_client_cert else "optional", self.ca)
        return ClientAuth()

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
class AuthorizationSettings:
    """One ``[[authorization]]`` entry (ActiveMQ's ``authorizationEntry``)."""

    destination: str
    """``queue://<pattern>`` or ``topic://<pattern>``, ActiveMQ wildcards (``*`` one
    level, ``>`` the rest) allowed."""
    read: frozenset[str] = frozenset()
    """Groups that may subscribe to, consume from and browse what ``destination``
    selects; ``"*"``: every authenticated user."""
    write: frozenset[str] = frozenset()
    """Groups that may send to it."""
    admin: frozenset[str] = frozenset()
    """Groups that may create it (its first use)."""


@dataclass(frozen=True, slots=True)
class TemporaryDestinationSettings:
    """``[security.temporary_destinations]``: who may create (``admin``), send to
    (``write``) and consume from (``read``, own connection's only) temporary queues and
    topics, once ``[[authorization]]`` is configured (ActiveMQ's
    ``tempDestinationAuthorizationEntry``). Absent: every authenticated user."""

    read: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CertificateUserSettings:
    """One ``[[certificate_users]]`` entry: a verified client certificate that logs in as
    a user without a password (ActiveMQ's ``JaasCertificateAuthenticationPlugin``)."""

    username: str
    """The user the connection acts as."""
    subject: str | None = None
    """The certificate's subject as ActiveMQ writes it, most specific first
    (``CN=device-17,O=Example,C=US``); exact match."""
    san: str | None = None
    """Or a subject alternative name, ``DNS:name``, ``email:addr``, ``URI:uri`` or
    ``IP Address:1.2.3.4`` (exact match). Exactly one of ``subject`` and ``san``."""
    groups: frozenset[str] = frozenset()
    """The user's groups, for ``[[authorization]]``."""


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
    max_connect_frame: int = 64 * 1024
    """Largest frame a connection may send before it has logged in, in bytes: the
    STOMP CONNECT/STOMP frame (command, headers and body) and the MQTT CONNECT packet
    (fixed header included). A larger one is refused at once (STOMP ERROR; MQTT 5
    CONNACK 0x95, MQTT 3.1.1 close) and its bytes dropped, so an unauthenticated peer
    pins at most this much. Real CONNECTs are a few hundred bytes."""
    login_timeout: float = 10.0
    """Seconds from accepting a connection to its completed login (TLS handshake,
    CONNECT, authentication), on every listener; the key service's HTTPS listener
    gives a request this long to arrive once begun (answered 408 after). A connection
    not logged in by then is closed, with a STOMP ERROR saying why (Mosquitto and
    ActiveMQ close such connections too)."""
    frame_read_timeout: float = 60.0
    """Seconds a logged-in client may take to send one whole frame once its first
    byte arrived; a frame not complete by then closes the connection (STOMP ERROR,
    MQTT 5 DISCONNECT). Raise it for very large messages over slow links."""
    max_connections: int = 1000
    """Logged-in client connections in total (ActiveMQ's ``maximumConnections``); past
    it a login is refused (STOMP ERROR, MQTT 5 CONNACK 0x97, 3.1.1 return code 3).
    0: no limit. Every limit below is answered the same way, with its own message."""
    max_connections_per_user: int = 500
    """Connections of one user at once; 0: no limit."""
    max_connections_per_address: int = 500
    """Connections from one source address at once (a NAT'd fleet shares one: raise it
    then); 0: no limit."""
    max_subscriptions_per_connection: int = 1000
    """Subscriptions and consumers one connection may hold (STOMP ERROR, MQTT SUBACK
    0x97 / 0x80); 0: no limit."""
    max_destinations: int = 10_000
    """Queues and temporary destinations (and, under ``[[authorization]]``, topics) the
    broker holds before a client's first use of a new one is refused; 0: no limit."""
    max_login_failures: int = 10
    """Failed logins of one user, or from one address, after which it is refused
    without a check for ``login_lockout`` seconds; from the 4th failure on, each
    refusal is answered up to 5 s later. 0: no throttling."""
    login_lockout: float = 60.0
    """Seconds a user or address past ``max_login_failures`` stays refused, counted
    from its last failure (failures older than this are forgotten)."""


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The ``wss`` listener: MQTT and STOMP over WebSocket (``docs/websocket.md``)."""

    allowed_origins: tuple[str, ...] = ()
    """``Origin`` values a WebSocket upgrade may carry (``"https://app.example.com"``,
    exact match); a request from any other origin is refused with HTTP 403.
    Requests with no ``Origin`` (non-browser clients) are always accepted.
    Empty: every origin is accepted."""
    max_message_size: int = 100 * MIB + 64 * 1024
    """Largest WebSocket message accepted (all fragments together), in bytes; a
    larger one closes the connection with code 1009. The default holds the largest
    STOMP frame ``[limits]`` allows (body and headers)."""
    max_handshake_size: int = 32 * 1024
    """Largest HTTP upgrade request accepted, in bytes (nginx's default header
    buffers hold 32 KiB); a larger one is refused with HTTP 431."""
    handshake_timeout: float = 10.0
    """Seconds a client has, from TCP accept, to complete the HTTP upgrade; then it
    gets HTTP 408 and the connection is closed."""
    permessage_deflate: bool = False
    """True: offer permessage-deflate compression (RFC 7692) to clients asking for it.
    Off by default: it costs CPU and memory (a zlib context each way) per
    connection, and compressing secrets next to data a peer chooses, under TLS,
    can leak them by the compressed size (as CRIME did)."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Journal layout."""

    segment_size: int = 32 * MIB
    """Size at which the journal starts a new segment file (and a new data key),
    in bytes (KahaDB's default journal file length is 32 MiB)."""

    confirmed_sync_seconds: float = 1.0
    """Longest time, in seconds, the journal's confirmed point (how far it was
    confirmed to clients, rewritten after every group commit) may go without an
    fsync of its own. Only an OS crash or power loss can lose it meanwhile; recovery
    then detects cuts up to the point that old (docs/store.md). 0: every commit."""


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
    kms_connect_timeout: float = 1.0
    """Seconds the store's client of ``kms_endpoint`` waits to connect, per
    attempt. The store's writer thread waits on these calls (a new data key per
    segment, a re-check each cache period), so every confirmation waits too:
    together with ``kms_read_timeout`` and ``kms_max_attempts`` it bounds how
    long producers stall before a key service that hangs is given up on and
    every client is told the key is unavailable."""
    kms_read_timeout: float = 2.0
    """Seconds the store's client waits for ``kms_endpoint`` to answer one request
    (AWS KMS answers GenerateDataKey and Decrypt in milliseconds)."""
    kms_max_attempts: int = 2
    """Attempts per call of the store's client, the first included (botocore's
    standard retry mode, with its short backoff). The writer waits at most about
    ``kms_max_attempts * (kms_connect_timeout + kms_read_timeout)`` seconds."""

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
    audit_max_bytes: int = 64 * MIB
    """Size at which the audit trail's live file (``audit/kms.jsonl``) is renamed
    ``kms.000001.jsonl`` (then ``.000002`` ...) and a new one begun, in bytes;
    the hash chain continues across files and ``sealmq kms verify-audit``
    checks them all. Rotated files are kept: archive or remove them yourself."""


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Destination policy, with ActiveMQ's names and defaults."""

    maximum_redeliveries: int = 6
    """Redeliveries before a message goes to the dead-letter queue; -1 = never."""
    dead_letter_strategy: str = "shared"
    """``"shared"``: every dead letter goes to ``dead_letter_queue`` (ActiveMQ's
    sharedDeadLetterStrategy); ``"individual"``: each destination's to a queue of its
    own, ``dead_letter_queue_prefix`` + a queue's name or ``dead_letter_topic_prefix``
    + a topic's (individualDeadLetterStrategy)."""
    dead_letter_queue: str = "ActiveMQ.DLQ"
    """Queue (ActiveMQ name, no wildcards) that receives messages past the limit."""
    dead_letter_queue_prefix: str = "ActiveMQ.DLQ.Queue."
    dead_letter_topic_prefix: str = "ActiveMQ.DLQ.Topic."
    redelivery_delay_ms: int = 0
    """Delay before a rolled-back or unacknowledged message is redelivered, in ms."""
    use_exponential_back_off: bool = False
    """Multiply the delay by ``back_off_multiplier`` at each further redelivery."""
    back_off_multiplier: float = 5.0
    """ActiveMQ's default multiplier (at least 1)."""
    maximum_redelivery_delay_ms: int = -1
    """The longest redelivery delay, in ms; -1: no cap."""
    process_non_persistent: bool = False
    """Dead-letter non-persistent messages too (they become persistent in the DLQ);
    off: they are dropped past the redelivery limit or on expiry, as in ActiveMQ."""
    process_expired: bool = True
    """Dead-letter expired messages; off: they are dropped."""
    default_prefetch: int = 1000
    """Messages dispatched ahead of acks to a consumer that names no prefetch
    (ActiveMQ's queue default); 0 makes consumers pull one at a time."""
    pending_message_limit: int = 1000
    """Messages a non-durable topic subscription (STOMP ``/topic/``, MQTT without a
    persistent session) may hold for a consumer that cannot take them (its
    connection's write buffer is full, or its prefetch of unacknowledged
    messages is), in messages; past it the oldest of the lowest priority is
    discarded, counted and logged once per episode (ActiveMQ's
    ``constantPendingMessageLimitStrategy``). -1: no limit (ActiveMQ's default)."""
    slow_consumer_strategy: str = "discard_oldest"
    """What happens to a connection that cannot keep up: ``"discard_oldest"`` keeps
    it and only discards past ``pending_message_limit``; ``"abort"`` also closes
    it, with the protocol's error, once its write buffer has stayed above
    ``write_buffer_high_water`` for ``max_slow_duration_ms`` (ActiveMQ's
    ``abortSlowConsumerStrategy``)."""
    max_slow_duration_ms: int = 30_000
    """How long a connection may stay slow before the ``"abort"`` strategy closes
    it, in ms (ActiveMQ's ``maxSlowDuration`` default)."""
    write_buffer_high_water: int = 1024 * 1024
    """Bytes of output one connection may have waiting for its socket before the
    broker stops handing it deliveries (queue messages then stay in the queue and
    the store, topic messages pend under ``pending_message_limit``); it takes
    deliveries again once the buffer is down to a quarter of this."""
    memory_limit: int = 32 * 1024 * 1024
    """Bytes of queued messages one queue or durable subscription keeps in memory
    (bodies plus a fixed cost per message); past it persistent messages stay only in
    the encrypted journal and are read back as the consumers drain the queue, in send
    order (ActiveMQ's per-destination ``memoryLimit`` and store cursor). Non-persistent
    messages are always kept in memory (``docs/core.md``, Paging)."""
    destinations: tuple[DestinationPolicySettings, ...] = ()
    """``[[policy.destinations]]``: overrides for the destinations a pattern names."""


#: The ``[policy]`` settings a ``[[policy.destinations]]`` entry may override.
DESTINATION_POLICY_KEYS = (
    "maximum_redeliveries",
    "redelivery_delay_ms",
    "use_exponential_back_off",
    "back_off_multiplier",
    "maximum_redelivery_delay_ms",
    "process_non_persistent",
    "process_expired",
    "dead_letter_strategy",
    "dead_letter_queue",
    "dead_letter_queue_prefix",
    "dead_letter_topic_prefix",
    "default_prefetch",
    "pending_message_limit",
    "memory_limit",
)


@dataclass(frozen=True, slots=True)
class DestinationPolicySettings:
    """One ``[[policy.destinations]]`` entry: a destination pattern and what it overrides.

    ``destination`` is ``queue://<pattern>`` or ``topic://<pattern>`` (ActiveMQ wildcards
    ``*`` and ``>``). A destination takes the most specific entry that matches it
    (an exact name, then more literal levels, then ``*`` before ``>``; on a tie the
    later entry); what that entry does not set comes from ``[policy]``.
    """

    destination: str
    overrides: tuple[tuple[str, int | float | str], ...] = ()


@dataclass(frozen=True, slots=True)
class CompositeDestinationSettings:
    """One ``[[composite_destinations]]`` entry."""

    destination: str
    """``queue://name`` or ``topic://name``: where producers send."""
    forward_to: tuple[tuple[str, str | None], ...]
    """Each target (``queue://`` or ``topic://``) with its selector, if any."""
    forward_only: bool = True
    """Whether the original destination keeps no copy (ActiveMQ's default)."""


@dataclass(frozen=True, slots=True)
class VirtualTopicSettings:
    """ActiveMQ's virtual topics: a send to a topic ``name`` matches also reaches every
    queue named ``prefix`` + the topic's name (``Consumer.<app>.VirtualTopic.Orders``)."""

    enabled: bool = True
    """On by default, as in ActiveMQ."""
    name: str = "VirtualTopic.>"
    """Topics that are virtual (ActiveMQ wildcards)."""
    prefix: str = "Consumer.*."
    """What precedes the topic's name in its consumer queues' names; ends with '.',
    may use ``*`` for one level, not ``>``."""


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """How user passwords are hashed (argon2id). The defaults are argon2-cffi's, RFC
    9106's "low memory" profile; lower them only for tests, where a broker hashes its
    users at every start: a cheaper hash is a cheaper guess at a stolen hash."""

    password_hash_time_cost: int = 3
    """argon2id passes over the memory (iterations), at least 1."""
    password_hash_memory_kib: int = 64 * 1024
    """Memory one hash or verify uses, in KiB (65536 = 64 MiB); at least 8 per lane."""
    password_hash_parallelism: int = 4
    """argon2id lanes (threads) per hash, at least 1."""
    anonymous_access: bool = False
    """True: clients of every protocol may connect without credentials, as user
    ``anonymous`` in group ``anonymous``, still subject to ``[[authorization]]``
    (ActiveMQ's ``anonymousAccessAllowed``). False: such a client is refused like a
    wrong password."""
    temporary_destinations: TemporaryDestinationSettings | None = None
    """Who may use temporary destinations under an authorization map; None: everyone."""

    @property
    def weaker_than_default(self) -> bool:
        """True when any cost is below the default (the start logs a warning)."""
        default = SecuritySettings()
        return (
            self.password_hash_time_cost < default.password_hash_time_cost
            or self.password_hash_memory_kib < default.password_hash_memory_kib
        )


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
    websocket: WebSocketSettings = WebSocketSettings()
    """The ``wss`` listener's WebSocket limits and origin checks."""
    store: StoreSettings = StoreSettings()
    """Journal layout."""
    encryption: EncryptionSettings = EncryptionSettings()
    """Encryption at rest."""
    kms: KmsSettings = KmsSettings()
    """The embedded key service."""
    policy: PolicySettings = PolicySettings()
    """Redelivery, dead-letter and prefetch policy."""
    virtual_topics: VirtualTopicSettings = VirtualTopicSettings()
    """Topics whose messages also reach consumer queues."""
    composite_destinations: tuple[CompositeDestinationSettings, ...] = ()
    """``[[composite_destinations]]``: sends to one destination forwarded to others."""
    advisories: bool = True
    """``[advisories] enabled``: publish ActiveMQ.Advisory.* topics (ActiveMQ's
    advisorySupport, on by default)."""
    security: SecuritySettings = SecuritySettings()
    """Password hashing cost."""
    certificate_users: tuple[CertificateUserSettings, ...] = ()
    """``[[certificate_users]]``: client certificates that log in without a password."""
    authorization: tuple[AuthorizationSettings, ...] = ()
    """``[[authorization]]`` entries. Empty: every authenticated user may read, write
    and create every destination; set: what no entry grants is refused."""
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
