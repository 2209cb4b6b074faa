"""crdswatch configuration: a TOML file (--config) overridden by CRDSWATCH_* environment variables.

    settings = load_settings(Path("config/crdswatch.toml"))   # or load_settings(None): default locations
    settings.sources[0].server_url, settings.smtp.password.get_secret_value(), ...

Every table rejects unknown keys; errors are ConfigError naming the file and key path.
`redacted_summary(settings)` is what `crdswatch check-config` prints: secrets masked.
"""

from __future__ import annotations

from crdswatch.config.checks import (
    CHANGE_LEVELS,
    OBSERVATORIES,
    SMTP_DEFAULT_PORTS,
    ContextState,
    Observatory,
)
from crdswatch.config.loader import (
    DEFAULT_CONFIG_PATHS,
    NOT_SET,
    find_config_file,
    format_errors,
    load_settings,
    redacted_summary,
)
from crdswatch.config.models import (
    AlertSettings,
    FilterSettings,
    HttpSettings,
    InboundSettings,
    LimitsSettings,
    ListSettings,
    OutboxSettings,
    Settings,
    SmtpSettings,
    SourceSettings,
    StateSettings,
    SubscriberSettings,
    UpstreamSettings,
)
from crdswatch.redact import MASK

__all__ = [
    "CHANGE_LEVELS",
    "DEFAULT_CONFIG_PATHS",
    "MASK",
    "NOT_SET",
    "OBSERVATORIES",
    "SMTP_DEFAULT_PORTS",
    "AlertSettings",
    "ContextState",
    "FilterSettings",
    "HttpSettings",
    "InboundSettings",
    "LimitsSettings",
    "ListSettings",
    "Observatory",
    "OutboxSettings",
    "Settings",
    "SmtpSettings",
    "SourceSettings",
    "StateSettings",
    "SubscriberSettings",
    "UpstreamSettings",
    "find_config_file",
    "format_errors",
    "load_settings",
    "redacted_summary",
]
