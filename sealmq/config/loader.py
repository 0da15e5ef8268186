"""Load ``sealmq.toml`` into :class:`~sealmq.config.settings.Settings`.

The loader checks everything and reports every problem at once, each as
``<file>: <dotted.key>: <reason>``, so an operator fixes a file in one pass.
Relative paths in the file (``data_dir``, ``tls.*``) are relative to the
file's folder; the default ``./data`` and ``--data-dir`` are relative to the
working directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sealmq.config.abuse import ABUSE_LIMIT_KEYS, read_abuse_limits
from sealmq.config.authorization import read_authorization, read_temporary_destinations
from sealmq.config.checks import (
    check_account_id,
    check_bool,
    check_dead_letter_strategy,
    check_destination_pattern,
    check_endpoint,
    check_groups,
    check_host,
    check_kms_key,
    check_name,
    check_origins,
    check_password,
    check_port,
    check_queue,
    check_queue_prefix,
    check_region,
    check_slow_consumer_strategy,
    check_topic_pattern,
    check_virtual_topic_prefix,
    is_int,
    kind,
    suggest,
)
from sealmq.config.destinations import composite_destinations
from sealmq.config.settings import (
    DEFAULT_TLS_PORTS,
    DESTINATION_POLICY_KEYS,
    KNOWN_LISTENERS,
    LOG_LEVELS,
    MANAGED_KEY,
    OWNED_KEY,
    DestinationPolicySettings,
    EncryptionSettings,
    KmsSettings,
    LimitSettings,
    Listener,
    PolicySettings,
    SecuritySettings,
    Settings,
    StoreSettings,
    UserSettings,
    VirtualTopicSettings,
    WebSocketSettings,
)
from sealmq.config.tls import read_certificate_users, read_tls

__all__ = ["CONFIG_ENV_VAR", "ConfigError", "ConfigProblem", "load_settings"]

#: Environment variable naming the configuration file when no path is given.
CONFIG_ENV_VAR = "SEALMQ_CONFIG"

DEFAULT_DATA_DIR = Path("data")


# Upper bounds that catch unit mistakes (bytes for KiB, ms for s) early.
_MAX_FRAME_BODY = 2**31 - 1
_MAX_SEGMENT_SIZE = 2**31 - 1
#: An hour: beyond that the confirmed point would protect little against a crash.
_MAX_CONFIRMED_SYNC_SECONDS = 3600.0
_MIN_SEGMENT_SIZE = 4096
_MAX_DATA_KEY_CACHE_SECONDS = 86400.0
#: Longest connect or read timeout for an external key service: past a minute the
#: store's writer would stall producers for longer than any client waits.
_MAX_KMS_TIMEOUT_SECONDS = 60.0
_MAX_INT32 = 2**31 - 1
#: A queue's memory window: at least 64 KiB (a few messages), at most 1 TiB.
_MIN_MEMORY_LIMIT = 64 * 1024
_MAX_MEMORY_LIMIT = 2**40
_MAX_HANDSHAKE_SIZE = 1024 * 1024
_MAX_HANDSHAKE_SECONDS = 600.0
# A STOMP CONNECT with login, passcode and host, or an MQTT CONNECT with a token as
# password, fits in far less; below this even those would be refused.
_MIN_CONNECT_FRAME = 512
# Login and frame deadlines: beyond an hour is a unit mistake (ms for s), not a wish.
_MAX_LIMIT_SECONDS = 3600.0
# argon2 costs past these take seconds or GiBs per login: surely a unit mistake.
_MAX_ARGON2_TIME_COST = 64
_MAX_ARGON2_MEMORY_KIB = 4 * 1024 * 1024
_MAX_ARGON2_PARALLELISM = 64


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration file."""

    file: str
    """The file as the operator named it."""
    key: str
    """Dotted key (``listeners.stomp``, ``users[1].password``); empty for the whole file."""
    reason: str
    """What is wrong, phrased so the fix is obvious."""

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.reason}"
        return f"{self.file}: {self.reason}"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists every reason, one per line in str()."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_settings(
    path: Path | None,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] = os.environ,
) -> Settings:
    """Read and validate a configuration file; raise :class:`ConfigError` listing every problem.

    ``path`` None means ``env["SEALMQ_CONFIG"]`` if set, else pure defaults.
    ``data_dir`` (the CLI's ``--data-dir``) overrides the file's ``data_dir``.
    """
    if path is None and env.get(CONFIG_ENV_VAR):
        path = Path(env[CONFIG_ENV_VAR])
    override = _absolute(data_dir, Path.cwd()) if data_dir is not None else None
    if path is None:
        return Settings(data_dir=override or _absolute(DEFAULT_DATA_DIR, Path.cwd()))

    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(name, "", "configuration file not found")]) from None
    except OSError as exc:
        reason = f"cannot read configuration file: {exc.strerror or exc}"
        raise ConfigError([ConfigProblem(name, "", reason)]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(name, "", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(name, "", f"invalid TOML: {exc}")]) from None

    config_file = _absolute(path, Path.cwd())
    reader = _Reader(name, config_file.parent)
    settings = reader.settings(document, override, config_file)
    if reader.problems or settings is None:
        raise ConfigError(reader.problems)
    return settings


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


T = TypeVar("T")
_MISSING: Any = object()


class _Reader:
    """Walks the parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []

    def error(self, key: str, reason: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, reason))

    # -- generic checks -------------------------------------------------------------------

    def table(
        self, parent: Mapping[str, Any], key: str, prefix: str, allowed: Iterable[str]
    ) -> dict[str, Any]:
        """``parent[key]`` as a table whose keys are all in ``allowed`` (unknown ones reported)."""
        value = parent.get(key, {})
        dotted = prefix + key
        if not isinstance(value, dict):
            self.error(dotted, f"expected a table, got {kind(value)}")
            return {}
        self.unknown_keys(value, dotted + ".", allowed)
        return value

    def unknown_keys(self, table: Mapping[str, Any], prefix: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                self.error(prefix + key, "unknown key" + suggest(key, allowed))

    def value(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        default: T,
        check: Callable[[Any], str | None],
    ) -> T:
        """``table[key]`` if ``check`` finds nothing wrong with it, else ``default``."""
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return default
        problem = check(value)
        if problem is not None:
            self.error(prefix + key, problem)
            return default
        return value  # type: ignore[no-any-return]

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        default: int,
        *,
        low: int,
        high: int,
        unit: str = "",
    ) -> int:
        def check(value: Any) -> str | None:
            if not is_int(value):
                return f"expected an integer, got {kind(value)}"
            if not low <= value <= high:
                return f"must be between {low} and {high}{unit}, got {value}"
            return None

        return self.value(table, key, prefix, default, check)

    def seconds(
        self, table: Mapping[str, Any], key: str, prefix: str, default: float, high: float
    ) -> float:
        """A positive number of seconds, at most ``high``."""

        def check(value: Any) -> str | None:
            if not (is_int(value) or isinstance(value, float)):
                return f"expected a number of seconds, got {kind(value)}"
            if not 0 < value <= high:
                return f"must be more than 0 and at most {high:g} seconds, got {value}"
            return None

        return float(self.value(table, key, prefix, default, check))

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        default: str,
        check: Callable[[str], str | None] = lambda _: None,
    ) -> str:
        def typed(value: Any) -> str | None:
            if not isinstance(value, str):
                return f"expected a string, got {kind(value)}"
            if not value:
                return "must not be empty"
            return check(value)

        return self.value(table, key, prefix, default, typed)

    def path(self, table: Mapping[str, Any], key: str, prefix: str) -> Path | None:
        """An existing file, relative to the configuration file's folder."""
        text = self.string(table, key, prefix, "")
        if not text:
            return None
        path = _absolute(Path(text), self.base_dir)
        if not path.is_file():
            self.error(prefix + key, f"file not found: {path}")
        return path

    # -- sections ---------------------------------------------------------------------------

    def settings(
        self, doc: Mapping[str, Any], data_dir: Path | None, config_file: Path
    ) -> Settings | None:
        self.unknown_keys(
            doc,
            "",
            (
                "data_dir",
                "host",
                "log_level",
                "listeners",
                "tls",
                "users",
                "limits",
                "websocket",
                "store",
                "encryption",
                "kms",
                "policy",
                "security",
                "virtual_topics",
                "advisories",
                "composite_destinations",
                "authorization",
                "certificate_users",
            ),
        )
        file_data_dir = self.string(doc, "data_dir", "", "")
        if data_dir is None:
            data_dir = (
                _absolute(Path(file_data_dir), self.base_dir)
                if file_data_dir
                else _absolute(DEFAULT_DATA_DIR, Path.cwd())
            )
        host = self.string(doc, "host", "", "0.0.0.0", check_host)

        def check_level(value: str) -> str | None:
            if value.lower() in LOG_LEVELS:
                return None
            return "must be one of " + ", ".join(LOG_LEVELS) + suggest(value.lower(), LOG_LEVELS)

        log_level = self.string(doc, "log_level", "", "info", check_level).lower()
        settings = Settings(
            data_dir=data_dir,
            host=host,
            log_level=log_level,
            listeners=self.listeners(doc),
            tls=read_tls(self, doc),
            users=self.users(doc),
            limits=self.limits(doc),
            websocket=self.websocket(doc),
            store=self.store(doc),
            encryption=self.encryption(doc),
            kms=self.kms(doc),
            policy=self.policy(doc),
            security=self.security(doc),
            virtual_topics=self.virtual_topics(doc),
            composite_destinations=composite_destinations(self, doc),
            advisories=self.value(
                self.table(doc, "advisories", "", ("enabled",)),
                "enabled",
                "advisories.",
                True,
                check_bool,
            ),
            certificate_users=read_certificate_users(self, doc),
            authorization=read_authorization(self, doc),
            config_file=config_file,
        )
        return None if self.problems else settings

    def listeners(self, doc: Mapping[str, Any]) -> tuple[Listener, ...]:
        table = self.table(doc, "listeners", "", (*KNOWN_LISTENERS, "plain"))
        plain = self.table(table, "plain", "listeners.", KNOWN_LISTENERS)
        result: list[Listener] = []
        used: dict[int, str] = {}
        for tls, section, prefix in (
            (True, table, "listeners."),
            (False, plain, "listeners.plain."),
        ):
            for name in KNOWN_LISTENERS:
                default: int | None = DEFAULT_TLS_PORTS[name] if tls else None
                port = self.value(section, name, prefix, default, check_port)
                if port is None or port is False:
                    continue
                if port and port in used:
                    self.error(prefix + name, f"port {port} is already used by {used[port]}")
                    continue
                if port:
                    used[port] = prefix + name
                result.append(Listener(name, port, tls))
        return tuple(result)

    def users(self, doc: Mapping[str, Any]) -> tuple[UserSettings, ...]:
        entries = doc.get("users", [])
        if not isinstance(entries, list):
            self.error("users", f"expected an array of tables ([[users]]), got {kind(entries)}")
            return ()
        result: list[UserSettings] = []
        seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            prefix = f"users[{index}]."
            if not isinstance(entry, dict):
                self.error(f"users[{index}]", f"expected a table, got {kind(entry)}")
                continue
            self.unknown_keys(entry, prefix, ("username", "password", "groups"))
            if "username" not in entry:
                self.error(prefix + "username", "required")
            if "password" not in entry:
                self.error(prefix + "password", "required")
            username = self.string(entry, "username", prefix, "", check_name)
            password = self.string(entry, "password", prefix, "", check_password)
            groups: list[str] = self.value(entry, "groups", prefix, [], check_groups)
            if username in seen:
                self.error(prefix + "username", f"duplicate of {seen[username]} ({username!r})")
            elif username:
                seen[username] = prefix + "username"
            if username and password:
                result.append(UserSettings(username, password, frozenset(groups)))
        return tuple(result)

    def limits(self, doc: Mapping[str, Any]) -> LimitSettings:
        defaults = LimitSettings()
        table = self.table(
            doc,
            "limits",
            "",
            (
                "max_frame_body",
                "max_frame_headers",
                "mqtt_max_packet_size",
                "max_connect_frame",
                "login_timeout",
                "frame_read_timeout",
                *ABUSE_LIMIT_KEYS,
            ),
        )
        return LimitSettings(
            **read_abuse_limits(self, table, defaults),
            max_frame_body=self.integer(
                table,
                "max_frame_body",
                "limits.",
                defaults.max_frame_body,
                low=1,
                high=_MAX_FRAME_BODY,
                unit=" bytes",
            ),
            max_frame_headers=self.integer(
                table,
                "max_frame_headers",
                "limits.",
                defaults.max_frame_headers,
                low=1024,
                high=_MAX_INT32,
                unit=" bytes",
            ),
            mqtt_max_packet_size=self.integer(
                table,
                "mqtt_max_packet_size",
                "limits.",
                defaults.mqtt_max_packet_size,
                low=1024,
                high=defaults.mqtt_max_packet_size,
                unit=" bytes",
            ),
            max_connect_frame=self.integer(
                table,
                "max_connect_frame",
                "limits.",
                defaults.max_connect_frame,
                low=_MIN_CONNECT_FRAME,
                high=_MAX_INT32,
                unit=" bytes",
            ),
            login_timeout=self.seconds(
                table, "login_timeout", "limits.", defaults.login_timeout, _MAX_LIMIT_SECONDS
            ),
            frame_read_timeout=self.seconds(
                table,
                "frame_read_timeout",
                "limits.",
                defaults.frame_read_timeout,
                _MAX_LIMIT_SECONDS,
            ),
        )

    def websocket(self, doc: Mapping[str, Any]) -> WebSocketSettings:
        defaults = WebSocketSettings()
        prefix = "websocket."
        table = self.table(
            doc,
            "websocket",
            "",
            (
                "allowed_origins",
                "max_message_size",
                "max_handshake_size",
                "handshake_timeout",
                "permessage_deflate",
            ),
        )

        origins: list[str] = self.value(table, "allowed_origins", prefix, [], check_origins)
        return WebSocketSettings(
            allowed_origins=tuple(origins),
            max_message_size=self.integer(
                table,
                "max_message_size",
                prefix,
                defaults.max_message_size,
                low=1024,
                high=_MAX_INT32,
                unit=" bytes",
            ),
            max_handshake_size=self.integer(
                table,
                "max_handshake_size",
                prefix,
                defaults.max_handshake_size,
                low=1024,
                high=_MAX_HANDSHAKE_SIZE,
                unit=" bytes",
            ),
            handshake_timeout=self.seconds(
                table,
                "handshake_timeout",
                prefix,
                defaults.handshake_timeout,
                _MAX_HANDSHAKE_SECONDS,
            ),
            permessage_deflate=self.value(
                table, "permessage_deflate", prefix, defaults.permessage_deflate, check_bool
            ),
        )

    def store(self, doc: Mapping[str, Any]) -> StoreSettings:
        table = self.table(doc, "store", "", ("segment_size", "confirmed_sync_seconds"))

        def sync_check(value: Any) -> str | None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"expected a number of seconds, got {kind(value)}"
            if not 0 <= value <= _MAX_CONFIRMED_SYNC_SECONDS:
                return f"must be between 0 and {_MAX_CONFIRMED_SYNC_SECONDS:g} seconds"
            return None

        confirmed_sync = self.value(
            table,
            "confirmed_sync_seconds",
            "store.",
            StoreSettings().confirmed_sync_seconds,
            sync_check,
        )
        return StoreSettings(
            segment_size=self.integer(
                table,
                "segment_size",
                "store.",
                StoreSettings().segment_size,
                low=_MIN_SEGMENT_SIZE,
                high=_MAX_SEGMENT_SIZE,
                unit=" bytes",
            ),
            confirmed_sync_seconds=float(confirmed_sync),
        )

    def encryption(self, doc: Mapping[str, Any]) -> EncryptionSettings:
        keys = (
            "data_key_cache_seconds",
            "kms_key",
            "kms_endpoint",
            "kms_region",
            "kms_access_key_id",
            "kms_secret_access_key",
            "kms_credentials_file",
            "kms_profile",
            "kms_ca_bundle",
            "kms_connect_timeout",
            "kms_read_timeout",
            "kms_max_attempts",
        )
        table = self.table(doc, "encryption", "", keys)
        prefix = "encryption."

        def check(value: Any) -> str | None:
            if not (is_int(value) or isinstance(value, float)):
                return f"expected a number of seconds, got {kind(value)}"
            if not 0 < value <= _MAX_DATA_KEY_CACHE_SECONDS:
                return f"must be more than 0 and at most {_MAX_DATA_KEY_CACHE_SECONDS:g} seconds"
            return None

        seconds = self.value(
            table,
            "data_key_cache_seconds",
            prefix,
            EncryptionSettings().data_key_cache_seconds,
            check,
        )
        defaults = EncryptionSettings()

        def timeout(value: Any) -> str | None:
            if not (is_int(value) or isinstance(value, float)):
                return f"expected a number of seconds, got {kind(value)}"
            if not 0 < value <= _MAX_KMS_TIMEOUT_SECONDS:
                return f"must be more than 0 and at most {_MAX_KMS_TIMEOUT_SECONDS:g} seconds"
            return None

        connect_timeout = self.value(
            table, "kms_connect_timeout", prefix, defaults.kms_connect_timeout, timeout
        )
        read_timeout = self.value(
            table, "kms_read_timeout", prefix, defaults.kms_read_timeout, timeout
        )
        attempts = self.integer(
            table, "kms_max_attempts", prefix, defaults.kms_max_attempts, low=1, high=10
        )
        key = self.string(table, "kms_key", prefix, "", check_kms_key) or None
        endpoint = self.string(table, "kms_endpoint", prefix, "", check_endpoint) or None
        region = self.string(table, "kms_region", prefix, "", check_region) or None
        access_key = self.string(table, "kms_access_key_id", prefix, "") or None
        secret = self.string(table, "kms_secret_access_key", prefix, "") or None
        profile = self.string(table, "kms_profile", prefix, "") or None
        credentials = self.path(table, "kms_credentials_file", prefix)
        ca_bundle = self.path(table, "kms_ca_bundle", prefix)
        if ("kms_access_key_id" in table) != ("kms_secret_access_key" in table):
            missing = (
                "kms_access_key_id" if "kms_access_key_id" not in table else "kms_secret_access_key"
            )
            self.error(prefix + missing, "required with the other half of the access key")
        if "kms_endpoint" not in table:
            for name in keys[3:]:
                if name in table:
                    self.error(prefix + name, "only used with encryption.kms_endpoint")
        elif endpoint is None:
            pass  # reported above
        elif "kms_key" in table and key in (MANAGED_KEY, OWNED_KEY, "alias/aws/mq"):
            self.error(
                prefix + "kms_key",
                "with kms_endpoint, name a customer managed key (id, ARN or alias): "
                "the managed and owned keys exist only in the embedded key service",
            )
        elif "kms_key" not in table:
            self.error(prefix + "kms_key", "required with kms_endpoint (a customer managed key)")
        return EncryptionSettings(
            data_key_cache_seconds=float(seconds),
            kms_key=key,
            kms_endpoint=endpoint,
            kms_region=region,
            kms_access_key_id=access_key,
            kms_secret_access_key=secret,
            kms_credentials_file=credentials,
            kms_profile=profile,
            kms_ca_bundle=ca_bundle,
            kms_connect_timeout=float(connect_timeout),
            kms_read_timeout=float(read_timeout),
            kms_max_attempts=attempts,
        )

    def kms(self, doc: Mapping[str, Any]) -> KmsSettings:
        defaults = KmsSettings()
        table = self.table(
            doc,
            "kms",
            "",
            ("region", "account_id", "min_pending_window_days", "data_dir", "audit_max_bytes"),
        )
        folder = self.string(table, "data_dir", "kms.", "")
        account_id = self.value(table, "account_id", "kms.", "", check_account_id)
        return KmsSettings(
            region=self.string(table, "region", "kms.", defaults.region, check_region),
            account_id=account_id or None,
            min_pending_window_days=self.integer(
                table,
                "min_pending_window_days",
                "kms.",
                defaults.min_pending_window_days,
                low=1,
                high=defaults.min_pending_window_days,
                unit=" days",
            ),
            data_dir=_absolute(Path(folder), self.base_dir) if folder else None,
            audit_max_bytes=self.integer(
                table,
                "audit_max_bytes",
                "kms.",
                defaults.audit_max_bytes,
                low=4096,
                high=2**40,
                unit=" bytes",
            ),
        )

    def policy(self, doc: Mapping[str, Any]) -> PolicySettings:
        defaults = PolicySettings()
        prefix = "policy."
        table = self.table(
            doc,
            "policy",
            "",
            (
                *DESTINATION_POLICY_KEYS,
                "slow_consumer_strategy",
                "max_slow_duration_ms",
                "write_buffer_high_water",
                "destinations",
            ),
        )
        general = self.destination_policy(table, prefix, defaults)
        return PolicySettings(
            **general,  # type: ignore[arg-type]
            slow_consumer_strategy=self.string(
                table,
                "slow_consumer_strategy",
                prefix,
                defaults.slow_consumer_strategy,
                check_slow_consumer_strategy,
            ),
            max_slow_duration_ms=self.integer(
                table,
                "max_slow_duration_ms",
                prefix,
                defaults.max_slow_duration_ms,
                low=1,
                high=_MAX_INT32,
                unit=" ms",
            ),
            write_buffer_high_water=self.integer(
                table,
                "write_buffer_high_water",
                prefix,
                defaults.write_buffer_high_water,
                low=4096,
                high=_MAX_INT32,
                unit=" bytes",
            ),
            destinations=self.policy_destinations(table, defaults),
        )

    def policy_destinations(
        self, table: Mapping[str, Any], defaults: PolicySettings
    ) -> tuple[DestinationPolicySettings, ...]:
        entries = table.get("destinations", [])
        if not isinstance(entries, list):
            self.error(
                "policy.destinations",
                f"expected [[policy.destinations]] entries, got {kind(entries)}",
            )
            return ()
        result = []
        for i, entry in enumerate(entries):
            prefix = f"policy.destinations[{i}]."
            if not isinstance(entry, dict):
                self.error(prefix[:-1], f"expected a table, got {kind(entry)}")
                continue
            self.unknown_keys(entry, prefix, ("destination", *DESTINATION_POLICY_KEYS))
            pattern = self.string(entry, "destination", prefix, "", check_destination_pattern)
            if "destination" not in entry:
                self.error(prefix + "destination", 'missing: e.g. "queue://orders.>"')
            overrides = self.destination_policy(entry, prefix, defaults, present_only=True)
            if pattern:
                result.append(DestinationPolicySettings(pattern, tuple(overrides.items())))
        return tuple(result)

    def destination_policy(
        self,
        table: Mapping[str, Any],
        prefix: str,
        defaults: PolicySettings,
        *,
        present_only: bool = False,
    ) -> dict[str, int | float | str]:
        """The per-destination settings of ``table`` (all of them, defaulted, or only
        those it sets)."""
        int32 = _MAX_INT32

        def multiplier(value: Any) -> str | None:
            if not (is_int(value) or isinstance(value, float)):
                return f"expected a number, got {kind(value)}"
            if not 1 <= value <= 1000:
                return f"must be between 1 and 1000, got {value}"
            return None

        values: dict[str, int | float | str] = {
            "maximum_redeliveries": self.integer(
                table,
                "maximum_redeliveries",
                prefix,
                defaults.maximum_redeliveries,
                low=-1,
                high=int32,
            ),
            "redelivery_delay_ms": self.integer(
                table,
                "redelivery_delay_ms",
                prefix,
                defaults.redelivery_delay_ms,
                low=0,
                high=int32,
                unit=" ms",
            ),
            "use_exponential_back_off": self.value(
                table,
                "use_exponential_back_off",
                prefix,
                defaults.use_exponential_back_off,
                check_bool,
            ),
            "back_off_multiplier": float(
                self.value(
                    table, "back_off_multiplier", prefix, defaults.back_off_multiplier, multiplier
                )
            ),
            "maximum_redelivery_delay_ms": self.integer(
                table,
                "maximum_redelivery_delay_ms",
                prefix,
                defaults.maximum_redelivery_delay_ms,
                low=-1,
                high=int32,
                unit=" ms (-1: no cap)",
            ),
            "process_non_persistent": self.value(
                table,
                "process_non_persistent",
                prefix,
                defaults.process_non_persistent,
                check_bool,
            ),
            "process_expired": self.value(
                table, "process_expired", prefix, defaults.process_expired, check_bool
            ),
            "dead_letter_strategy": self.string(
                table,
                "dead_letter_strategy",
                prefix,
                defaults.dead_letter_strategy,
                check_dead_letter_strategy,
            ),
            "dead_letter_queue": self.string(
                table, "dead_letter_queue", prefix, defaults.dead_letter_queue, check_queue
            ),
            "dead_letter_queue_prefix": self.string(
                table,
                "dead_letter_queue_prefix",
                prefix,
                defaults.dead_letter_queue_prefix,
                check_queue_prefix,
            ),
            "dead_letter_topic_prefix": self.string(
                table,
                "dead_letter_topic_prefix",
                prefix,
                defaults.dead_letter_topic_prefix,
                check_queue_prefix,
            ),
            "default_prefetch": self.integer(
                table,
                "default_prefetch",
                prefix,
                defaults.default_prefetch,
                low=0,
                high=int32,
            ),
            "pending_message_limit": self.integer(
                table,
                "pending_message_limit",
                prefix,
                defaults.pending_message_limit,
                low=-1,
                high=int32,
                unit=" messages (-1: no limit)",
            ),
            "memory_limit": self.integer(
                table,
                "memory_limit",
                prefix,
                defaults.memory_limit,
                low=_MIN_MEMORY_LIMIT,
                high=_MAX_MEMORY_LIMIT,
                unit=" bytes",
            ),
        }
        if present_only:
            return {key: value for key, value in values.items() if key in table}
        return values

    def security(self, doc: Mapping[str, Any]) -> SecuritySettings:
        defaults = SecuritySettings()
        prefix = "security."
        table = self.table(
            doc,
            "security",
            "",
            (
                "password_hash_time_cost",
                "password_hash_memory_kib",
                "password_hash_parallelism",
                "anonymous_access",
                "temporary_destinations",
            ),
        )
        result = SecuritySettings(
            password_hash_time_cost=self.integer(
                table,
                "password_hash_time_cost",
                prefix,
                defaults.password_hash_time_cost,
                low=1,
                high=_MAX_ARGON2_TIME_COST,
            ),
            password_hash_memory_kib=self.integer(
                table,
                "password_hash_memory_kib",
                prefix,
                defaults.password_hash_memory_kib,
                low=8,
                high=_MAX_ARGON2_MEMORY_KIB,
                unit=" KiB",
            ),
            password_hash_parallelism=self.integer(
                table,
                "password_hash_parallelism",
                prefix,
                defaults.password_hash_parallelism,
                low=1,
                high=_MAX_ARGON2_PARALLELISM,
            ),
            anonymous_access=self.value(table, "anonymous_access", prefix, False, check_bool),
            temporary_destinations=read_temporary_destinations(self, table),
        )
        if result.password_hash_memory_kib < 8 * result.password_hash_parallelism:
            self.error(
                prefix + "password_hash_memory_kib",
                "argon2 needs at least 8 KiB per lane "
                f"({8 * result.password_hash_parallelism} for password_hash_parallelism = "
                f"{result.password_hash_parallelism}), got {result.password_hash_memory_kib}",
            )
        return result

    def virtual_topics(self, doc: Mapping[str, Any]) -> VirtualTopicSettings:
        defaults = VirtualTopicSettings()
        prefix = "virtual_topics."
        table = self.table(doc, "virtual_topics", "", ("enabled", "name", "prefix"))
        return VirtualTopicSettings(
            enabled=self.value(table, "enabled", prefix, defaults.enabled, check_bool),
            name=self.string(table, "name", prefix, defaults.name, check_topic_pattern),
            prefix=self.string(
                table, "prefix", prefix, defaults.prefix, check_virtual_topic_prefix
            ),
        )
