"""Reading ``[tls]`` (certificates, client certificates per listener) and
``[[certificate_users]]``; kept apart from ``loader.py``, which calls it with its reader."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sealmq.config.checks import check_bool, check_groups, check_name, kind, suggest
from sealmq.config.settings import (
    CLIENT_AUTH_MODES,
    KNOWN_LISTENERS,
    CertificateUserSettings,
    ClientAuth,
    TLSSettings,
)

if TYPE_CHECKING:
    from sealmq.config.loader import _Reader

__all__ = ["read_certificate_users", "read_tls"]

_TLS_KEYS = ("cert", "key", "ca", "require_client_cert", "client_auth", "client_ca", "listeners")
_SAN_KINDS = ("DNS", "email", "URI", "IP Address")


def check_mode(value: str) -> str | None:
    if value in CLIENT_AUTH_MODES:
        return None
    return (
        "must be one of "
        + ", ".join(f'"{mode}"' for mode in CLIENT_AUTH_MODES)
        + suggest(value, CLIENT_AUTH_MODES)
    )


def read_tls(reader: _Reader, doc: Mapping[str, Any]) -> TLSSettings:
    table = reader.table(doc, "tls", "", _TLS_KEYS)
    cert = reader.path(table, "cert", "tls.")
    key = reader.path(table, "key", "tls.")
    ca = reader.path(table, "ca", "tls.")
    require = reader.value(table, "require_client_cert", "tls.", False, check_bool)
    client_ca = reader.path(table, "client_ca", "tls.")
    mode = reader.string(table, "client_auth", "tls.", "", check_mode) or None
    if "cert" in table and "key" not in table:
        reader.error("tls.key", "required when tls.cert is set (give both or neither)")
    if "key" in table and "cert" not in table:
        reader.error("tls.cert", "required when tls.key is set (give both or neither)")
    # The old keys keep working alone; mixed with their replacements they are ambiguous.
    if "ca" in table and "client_ca" in table:
        reader.error("tls.ca", "replaced by tls.client_ca: give only client_ca")
    if "require_client_cert" in table and "client_auth" in table:
        reader.error(
            "tls.require_client_cert",
            'replaced by tls.client_auth ("none", "optional", "required"): give only client_auth',
        )
    if require and "ca" not in table and "client_ca" not in table:
        reader.error(
            "tls.require_client_cert", "needs tls.ca, the CA that client certificates chain to"
        )
    listeners: list[tuple[str, ClientAuth]] = []
    entries = reader.table(table, "listeners", "tls.", KNOWN_LISTENERS)
    for name, entry in entries.items():
        prefix = f"tls.listeners.{name}."
        if not isinstance(entry, dict):
            reader.error(f"tls.listeners.{name}", f"expected a table, got {kind(entry)}")
            continue
        reader.unknown_keys(entry, prefix, ("client_auth", "client_ca"))
        if "client_auth" not in entry:
            reader.error(prefix + "client_auth", "required")
        listener_mode = reader.string(entry, "client_auth", prefix, "none", check_mode)
        listener_ca = reader.path(entry, "client_ca", prefix)
        listeners.append((name, ClientAuth(listener_mode, listener_ca)))
    settings = TLSSettings(
        cert=cert,
        key=key,
        ca=ca,
        require_client_cert=require,
        client_auth=mode,
        client_ca=client_ca,
        listeners=tuple(listeners),
    )
    for name in entries:
        auth = settings.client_auth_for(name)
        if auth.mode != "none" and auth.ca is None:
            reader.error(
                f"tls.listeners.{name}.client_ca",
                f'client_auth = "{auth.mode}" needs a CA bundle: set it here or tls.client_ca',
            )
    if mode is not None and mode != "none" and settings.client_ca is None and ca is None:
        reader.error("tls.client_ca", f'required with tls.client_auth = "{mode}"')
    return settings


def read_certificate_users(
    reader: _Reader, doc: Mapping[str, Any]
) -> tuple[CertificateUserSettings, ...]:
    entries = doc.get("certificate_users", [])
    if not isinstance(entries, list):
        reader.error(
            "certificate_users",
            f"expected an array of tables ([[certificate_users]]), got {kind(entries)}",
        )
        return ()
    result = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        prefix = f"certificate_users[{index}]."
        if not isinstance(entry, dict):
            reader.error(f"certificate_users[{index}]", f"expected a table, got {kind(entry)}")
            continue
        reader.unknown_keys(entry, prefix, ("subject", "san", "username", "groups"))
        if "username" not in entry:
            reader.error(prefix + "username", "required")
        if ("subject" in entry) == ("san" in entry):
            reader.error(prefix + "subject", "give exactly one of subject and san")
        username = reader.string(entry, "username", prefix, "", check_name)
        subject = reader.string(entry, "subject", prefix, "") or None
        san = reader.string(entry, "san", prefix, "", _check_san) or None
        groups: list[str] = reader.value(entry, "groups", prefix, [], check_groups)
        if not (subject or san):
            continue
        match = f"subject:{subject}" if subject else f"san:{san}"
        if match in seen:
            reader.error(prefix + ("subject" if subject else "san"), "listed twice")
        seen.add(match)
        if username:
            result.append(CertificateUserSettings(username, subject, san, frozenset(groups)))
    return tuple(result)


def _check_san(value: str) -> str | None:
    kind_, sep, rest = value.partition(":")
    if not sep or kind_ not in _SAN_KINDS or not rest:
        return "must be " + ", ".join(f'"{k}:..."' for k in _SAN_KINDS)
    return None
