"""Load ``sealmq.toml`` into :class:`~sealmq.config.settings.Settings`.

The loader checks everything and reports every problem at once, each as
``<file>: <dotted.key>: <reason>``, so an operator fixes a file in one pass.
Relative paths in the file (``data_dir``, ``tls.*``) are relative to the
file's folder; the default ``./data`` and ``--data-dir`` are relative to the
working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sealmq.config.settings import (
    DEFAULT_TLS_PORTS,
    KNOWN_LISTENERS,
    LOG_LEVELS,
    MANAGED_KEY,
    OWNED_KEY,
    EncryptionSettings,
    KmsSettings,
    LimitSettings,
    Listener,
    PolicySettings,
    Settings,
    StoreSettings,
    TLSSettings,
    UserSettings,
)

__all__ = ["CONFIG_ENV_VAR", "ConfigError", "ConfigProblem", "load_settings"]

#: Environment variable naming the configuration file when no path is given.
CONFIG_ENV_VAR = "SEALMQ_CONFIG"

DEFAULT_DATA_DIR = Path("data")

# Amazon MQ's rule for user and group names.
_NAME_RE = re.compile(r"[A-Za-z0-9._~-]{1,100}")
# A hostname or address to bind: letters, digits, '.', '-', ':' (IPv6), '%' (scope).
_HOST_RE = re.compile(r"[A-Za-z0-9.:%-]{1,253}")

# Upper bounds that catch unit mistakes (bytes for KiB, ms for s) early.
_MAX_FRAME_BODY = 2**31 - 1
_MAX_SEGMENT_SIZE = 2**31 - 1
_MIN_SEGMENT_SIZE = 4096
_MAX_DATA_KEY_CACHE_SECONDS = 86400.0
_MAX_INT32 = 2**31 - 1

# What KMS accepts as a KeyId: key id, key ARN, alias name, alias ARN.
_KEY_ID_RE = re.compile(
    r"(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|mrk-[0-9a-f]{32})"
)
_ALIAS_RE = re.compile(r"alias/[a-zA-Z0-9/_-]{1,250}")
_KMS_ARN_RE = re.compile(
    r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/(?P<key>.+)|(?P<alias>alias/.+))"
)
_ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


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
            self.error(dotted, f"expected a table, got {_kind(value)}")
            return {}
        self.unknown_keys(value, dotted + ".", allowed)
        return value

    def unknown_keys(self, table: Mapping[str, Any], prefix: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                self.error(prefix + key, "unknown key" + _suggest(key, allowed))

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
            if not _is_int(value):
                return f"expected an integer, got {_kind(value)}"
            if not low <= value <= high:
                return f"must be between {low} and {high}{unit}, got {value}"
            return None

        return self.value(table, key, prefix, default, check)

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
                return f"expected a string, got {_kind(value)}"
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
                "store",
                "encryption",
                "kms",
                "policy",
            ),
        )
        file_data_dir = self.string(doc, "data_dir", "", "")
        if data_dir is None:
            data_dir = (
                _absolute(Path(file_data_dir), self.base_dir)
                if file_data_dir
                else _absolute(DEFAULT_DATA_DIR, Path.cwd())
            )
        host = self.string(doc, "host", "", "0.0.0.0", _check_host)

        def check_level(value: str) -> str | None:
            if value.lower() in LOG_LEVELS:
                return None
            return "must be one of " + ", ".join(LOG_LEVELS) + _suggest(value.lower(), LOG_LEVELS)

        log_level = self.string(doc, "log_level", "", "info", check_level).lower()
        settings = Settings(
            data_dir=data_dir,
            host=host,
            log_level=log_level,
            listeners=self.listeners(doc),
            tls=self.tls(doc),
            users=self.users(doc),
            limits=self.limits(doc),
            store=self.store(doc),
            encryption=self.encryption(doc),
            kms=self.kms(doc),
            policy=self.policy(doc),
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
                port = self.value(section, name, prefix, default, _check_port)
                if port is None or port is False:
                    continue
                if port and port in used:
                    self.error(prefix + name, f"port {port} is already used by {used[port]}")
                    continue
                if port:
                    used[port] = prefix + name
                result.append(Listener(name, port, tls))
        return tuple(result)

    def tls(self, doc: Mapping[str, Any]) -> TLSSettings:
        table = self.table(doc, "tls", "", ("cert", "key", "ca", "require_client_cert"))
        cert = self.path(table, "cert", "tls.")
        key = self.path(table, "key", "tls.")
        ca = self.path(table, "ca", "tls.")
        require = self.value(table, "require_client_cert", "tls.", False, _check_bool)
        if "cert" in table and "key" not in table:
            self.error("tls.key", "required when tls.cert is set (give both or neither)")
        if "key" in table and "cert" not in table:
            self.error("tls.cert", "required when tls.key is set (give both or neither)")
        if require and "ca" not in table:
            self.error(
                "tls.require_client_cert", "needs tls.ca, the CA that client certificates chain to"
            )
        return TLSSettings(cert=cert, key=key, ca=ca, require_client_cert=require)

    def users(self, doc: Mapping[str, Any]) -> tuple[UserSettings, ...]:
        entries = doc.get("users", [])
        if not isinstance(entries, list):
            self.error("users", f"expected an array of tables ([[users]]), got {_kind(entries)}")
            return ()
        result: list[UserSettings] = []
        seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            prefix = f"users[{index}]."
            if not isinstance(entry, dict):
                self.error(f"users[{index}]", f"expected a table, got {_kind(entry)}")
                continue
            self.unknown_keys(entry, prefix, ("username", "password", "groups"))
            if "username" not in entry:
                self.error(prefix + "username", "required")
            if "password" not in entry:
                self.error(prefix + "password", "required")
            username = self.string(entry, "username", prefix, "", _check_name)
            password = self.string(entry, "password", prefix, "", _check_password)
            groups: list[str] = self.value(entry, "groups", prefix, [], _check_groups)
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
            doc, "limits", "", ("max_frame_body", "max_frame_headers", "mqtt_max_packet_size")
        )
        return LimitSettings(
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
        )

    def store(self, doc: Mapping[str, Any]) -> StoreSettings:
        table = self.table(doc, "store", "", ("segment_size",))
        return StoreSettings(
            segment_size=self.integer(
                table,
                "segment_size",
                "store.",
                StoreSettings().segment_size,
                low=_MIN_SEGMENT_SIZE,
                high=_MAX_SEGMENT_SIZE,
                unit=" bytes",
            )
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
        )
        table = self.table(doc, "encryption", "", keys)
        prefix = "encryption."

        def check(value: Any) -> str | None:
            if not (_is_int(value) or isinstance(value, float)):
                return f"expected a number of seconds, got {_kind(value)}"
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
        key = self.string(table, "kms_key", prefix, "", _check_kms_key) or None
        endpoint = self.string(table, "kms_endpoint", prefix, "", _check_endpoint) or None
        region = self.string(table, "kms_region", prefix, "", _check_region) or None
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
        )

    def kms(self, doc: Mapping[str, Any]) -> KmsSettings:
        defaults = KmsSettings()
        table = self.table(
            doc, "kms", "", ("region", "account_id", "min_pending_window_days", "data_dir")
        )
        folder = self.string(table, "data_dir", "kms.", "")
        account_id = self.value(table, "account_id", "kms.", "", _check_account_id)
        return KmsSettings(
            region=self.string(table, "region", "kms.", defaults.region, _check_region),
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
        )

    def policy(self, doc: Mapping[str, Any]) -> PolicySettings:
        defaults = PolicySettings()
        table = self.table(
            doc,
            "policy",
            "",
            (
                "maximum_redeliveries",
                "dead_letter_queue",
                "redelivery_delay_ms",
                "default_prefetch",
            ),
        )
        return PolicySettings(
            maximum_redeliveries=self.integer(
                table,
                "maximum_redeliveries",
                "policy.",
                defaults.maximum_redeliveries,
                low=-1,
                high=_MAX_INT32,
            ),
            dead_letter_queue=self.string(
                table, "dead_letter_queue", "policy.", defaults.dead_letter_queue, _check_queue
            ),
            redelivery_delay_ms=self.integer(
                table,
                "redelivery_delay_ms",
                "policy.",
                defaults.redelivery_delay_ms,
                low=0,
                high=_MAX_INT32,
                unit=" ms",
            ),
            default_prefetch=self.integer(
                table,
                "default_prefetch",
                "policy.",
                defaults.default_prefetch,
                low=0,
                high=_MAX_INT32,
            ),
        )


# -- value checks: return the reason a value is wrong, or None --------------------------------


def _is_int(value: Any) -> bool:
    # bool is an int subclass; `port = true` must not mean port 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_port(value: Any) -> str | None:
    if value is False:
        return None
    if not _is_int(value):
        return f"expected a port number or false (disabled), got {_kind(value)}"
    if not 0 <= value <= 65535:
        return f"port must be between 0 and 65535 (0 = pick a free port), got {value}"
    return None


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"


def _check_host(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value) and ":" not in value:
        return None
    return f"not an IP address or host name: {value!r}"


def _check_kms_key(value: str) -> str | None:
    if value in (MANAGED_KEY, OWNED_KEY):
        return None
    if _KEY_ID_RE.fullmatch(value) or _ALIAS_RE.fullmatch(value):
        return None
    arn = _KMS_ARN_RE.fullmatch(value)
    if arn is not None:
        name = arn.group("key") or ""
        alias = arn.group("alias") or ""
        if _KEY_ID_RE.fullmatch(name) or _ALIAS_RE.fullmatch(alias):
            return None
    return (
        f'must be "{MANAGED_KEY}", "{OWNED_KEY}", or a KMS key id, key ARN, alias name '
        f"(alias/...) or alias ARN, got {value[:100]!r}"
    )


def _check_endpoint(value: str) -> str | None:
    if not value.startswith("https://") or len(value) <= len("https://"):
        return f"must be an https:// URL (keys never travel in clear), got {value[:100]!r}"
    return None


def _check_region(value: str) -> str | None:
    if _REGION_RE.fullmatch(value):
        return None
    return f"not a region name like us-east-1, got {value[:64]!r}"


def _check_account_id(value: Any) -> str | None:
    if isinstance(value, str) and _ACCOUNT_ID_RE.fullmatch(value):
        return None
    shown = repr(value[:64]) if isinstance(value, str) else _kind(value)
    return f'must be a string of exactly 12 digits, like "111122223333", got {shown}'


def _check_name(value: str) -> str | None:
    if _NAME_RE.fullmatch(value):
        return None
    return "must be 1-100 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'"


def _check_password(value: str) -> str | None:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "must not contain control characters"
    return None


def _check_groups(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"expected an array of group names, got {_kind(value)}"
    for item in value:
        if not isinstance(item, str):
            return f"group names must be strings, got {_kind(item)}"
        if not _NAME_RE.fullmatch(item):
            return f"invalid group name {item!r}: {_check_name(item)}"
    return None


def _check_queue(value: str) -> str | None:
    if any(char in value for char in "*>") or value.startswith(("/", "queue://", "topic://")):
        return "must be a plain ActiveMQ queue name, without wildcards or prefixes"
    if any(not part for part in value.split(".")):
        return "must not have empty segments (leading, trailing or doubled '.')"
    return None


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _suggest(key: str, choices: Iterable[str]) -> str:
    import difflib  # only when a key is unknown

    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
