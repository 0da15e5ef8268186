"""Typed settings and the TOML loader.

``load_settings(path)`` returns a validated, frozen :class:`Settings` or raises
:class:`ConfigError` listing every problem. This package imports nothing else
from sealmq.
"""

from sealmq.config.loader import CONFIG_ENV_VAR, ConfigError, ConfigProblem, load_settings
from sealmq.config.settings import (
    DEFAULT_TLS_PORTS,
    KNOWN_LISTENERS,
    LOG_LEVELS,
    MANAGED_KEY,
    OWNED_KEY,
    AuthorizationSettings,
    CertificateUserSettings,
    ClientAuth,
    CompositeDestinationSettings,
    EncryptionSettings,
    KmsSettings,
    LimitSettings,
    Listener,
    PolicySettings,
    SecuritySettings,
    Settings,
    StoreSettings,
    TemporaryDestinationSettings,
    TLSSettings,
    UserSettings,
    VirtualTopicSettings,
    WebSocketSettings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_TLS_PORTS",
    "KNOWN_LISTENERS",
    "LOG_LEVELS",
    "MANAGED_KEY",
    "OWNED_KEY",
    "AuthorizationSettings",
    "CertificateUserSettings",
    "ClientAuth",
    "CompositeDestinationSettings",
    "ConfigError",
    "ConfigProblem",
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
    "VirtualTopicSettings",
    "WebSocketSettings",
    "load_settings",
]
