"""Value checks for the configuration loader: each returns why a value is wrong, or None."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from sealmq.config.settings import MANAGED_KEY, OWNED_KEY, SLOW_CONSUMER_STRATEGIES

# Amazon MQ's rule for user and group names.
_NAME_RE = re.compile(r"[A-Za-z0-9._~-]{1,100}")
# A hostname or address to bind: letters, digits, '.', '-', ':' (IPv6), '%' (scope).
_HOST_RE = re.compile(r"[A-Za-z0-9.:%-]{1,253}")
# An Origin is scheme://host[:port] (RFC 6454), or "null" from sandboxed pages.
_ORIGIN_RE = re.compile(r"(?:[a-z][a-z0-9+.-]*://[^/\s?#]+|null)")
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


def check_slow_consumer_strategy(value: str) -> str | None:
    if value in SLOW_CONSUMER_STRATEGIES:
        return None
    return "must be one of " + ", ".join(SLOW_CONSUMER_STRATEGIES)


def is_int(value: Any) -> bool:
    # bool is an int subclass; `port = true` must not mean port 1.
    return isinstance(value, int) and not isinstance(value, bool)


def check_port(value: Any) -> str | None:
    if value is False:
        return None
    if not is_int(value):
        return f"expected a port number or false (disabled), got {kind(value)}"
    if not 0 <= value <= 65535:
        return f"port must be between 0 and 65535 (0 = pick a free port), got {value}"
    return None


def check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {kind(value)}"


def check_host(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value) and ":" not in value:
        return None
    return f"not an IP address or host name: {value!r}"


def check_kms_key(value: str) -> str | None:
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


def check_endpoint(value: str) -> str | None:
    if not value.startswith("https://") or len(value) <= len("https://"):
        return f"must be an https:// URL (keys never travel in clear), got {value[:100]!r}"
    return None


def check_region(value: str) -> str | None:
    if _REGION_RE.fullmatch(value):
        return None
    return f"not a region name like us-east-1, got {value[:64]!r}"


def check_account_id(value: Any) -> str | None:
    if isinstance(value, str) and _ACCOUNT_ID_RE.fullmatch(value):
        return None
    shown = repr(value[:64]) if isinstance(value, str) else kind(value)
    return f'must be a string of exactly 12 digits, like "111122223333", got {shown}'


def check_origins(value: Any) -> str | None:
    if not isinstance(value, list):
        return f'expected an array of origins like ["https://app.example.com"], got {kind(value)}'
    for item in value:
        if not isinstance(item, str):
            return f"origins must be strings, got {kind(item)}"
        if not _ORIGIN_RE.fullmatch(item):
            return f"not an origin (scheme://host[:port], no path): {item[:100]!r}"
    return None


def check_name(value: str) -> str | None:
    if _NAME_RE.fullmatch(value):
        return None
    return "must be 1-100 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'"


#: Amazon MQ's password rules for ActiveMQ brokers, for configured and managed users alike.
MIN_PASSWORD_LENGTH = 12
FORBIDDEN_PASSWORD_CHARACTERS = ",:="


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be a user's (Amazon MQ's rules), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    bad = sorted({char for char in password if char in FORBIDDEN_PASSWORD_CHARACTERS})
    if bad:
        return "a password may not contain " + " ".join(repr(char) for char in bad)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in password):
        return "a password may not contain control characters"
    return None


def check_password(value: str) -> str | None:
    return password_problem(value)


def check_groups(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"expected an array of group names, got {kind(value)}"
    for item in value:
        if not isinstance(item, str):
            return f"group names must be strings, got {kind(item)}"
        if not _NAME_RE.fullmatch(item):
            return f"invalid group name {item!r}: {check_name(item)}"
    return None


def check_queue(value: str) -> str | None:
    if any(char in value for char in "*>") or value.startswith(("/", "queue://", "topic://")):
        return "must be a plain ActiveMQ queue name, without wildcards or prefixes"
    if any(not part for part in value.split(".")):
        return "must not have empty segments (leading, trailing or doubled '.')"
    return None


def kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def suggest(key: str, choices: Iterable[str]) -> str:
    import difflib  # only when a key is unknown

    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_dead_letter_strategy(value: str) -> str | None:
    if value in ("shared", "individual"):
        return None
    return 'must be "shared" or "individual"'


def check_queue_prefix(value: str) -> str | None:
    if any(char in value for char in "*>") or value.startswith(("/", "queue://", "topic://")):
        return "must be the start of a plain ActiveMQ queue name, without wildcards or prefixes"
    return None


def check_destination_pattern(value: str) -> str | None:
    kind_, sep, name = value.partition("://")
    if not sep or kind_ not in ("queue", "topic"):
        return f'must start with queue:// or topic://, like "queue://orders.>", got {value[:100]!r}'
    parts = name.split(".")
    if not name or any(not part for part in parts):
        return "must name a destination, without empty segments (leading, trailing or doubled '.')"
    if any((part != ">" and ">" in part) or (part != "*" and "*" in part) for part in parts):
        return "wildcards must be whole segments: '*' for one, '>' for the rest"
    if ">" in parts[:-1]:
        return "'>' may only be the last segment"
    return None


def check_topic_pattern(value: str) -> str | None:
    """A bare ActiveMQ topic name or pattern (``VirtualTopic.>``)."""
    if value.startswith(("/", "queue://", "topic://")):
        return "must be a bare ActiveMQ name, without prefixes"
    parts = value.split(".")
    if any(not part for part in parts):
        return "must not have empty segments (leading, trailing or doubled '.')"
    if ">" in parts[:-1] or any(("*" in p or ">" in p) and len(p) > 1 for p in parts):
        return "'*' stands for one whole level, '>' only for the last"
    return None


def check_virtual_topic_prefix(value: str) -> str | None:
    if not value.endswith(".") or value == ".":
        return "must end with '.', like \"Consumer.*.\""
    parts = value[:-1].split(".")
    if any(not part for part in parts):
        return "must not have empty segments (leading or doubled '.')"
    if any(p == ">" or (("*" in p or ">" in p) and len(p) > 1) for p in parts):
        return "may use '*' for one whole level, not '>'"
    return None
