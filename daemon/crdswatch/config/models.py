"""The configuration schema: one pydantic model per TOML table, unknown keys rejected at every depth."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crdswatch.config.checks import (
    CHANGE_LEVELS,
    OBSERVATORIES,
    SMTP_DEFAULT_PORTS,
    EmailAddress,
    Observatory,
    States,
    WebUrl,
    Weekday,
    check_timezone,
    check_url,
    check_webhook_secret,
    fail,
    names,
)
from crdswatch.config.sources import env_source, toml_source
from crdswatch.contexts.history import since_cutoff
from crdswatch.limits import DEFAULT_LIMITS as _L
from crdswatch.limits import Limits
from crdswatch.redact import redact_url

__all__ = [
    "AlertSettings", "FilterSettings", "HttpSettings", "InboundSettings", "LimitsSettings",
    "ListSettings", "OutboxSettings", "Settings", "SmtpSettings", "SourceSettings", "StateSettings",
    "SubscriberSettings", "UpstreamSettings",
]

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONTEXT_NAME = re.compile(r"([a-z]+)(?:_(\d+))?\.pmap")  # jwst.pmap: the first activation
_KEYWORD = re.compile(r"[A-Z0-9_.\-]+")
_STRICT = ConfigDict(extra="forbid")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a name of letters, digits, '-', '_' and '.'")
    return value


# A subscriber's or an upstream's name: it appears in outbox keys, logs and Message-IDs.
SlugName = Annotated[str, AfterValidator(_slug)]


class StateSettings(BaseModel):
    model_config = _STRICT
    database: str = "sqlite:////var/lib/crdswatch/state.db"  # four slashes: an absolute path

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not re.match(r"(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected an SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://...")
        return value

    def __repr_args__(self) -> Any:  # the URL may hold a password
        yield "database", redact_url(self.database)

    @field_serializer("database", when_used="json")
    def _hide_password(self, value: str) -> str:
        return redact_url(value)


class SourceSettings(BaseModel):
    model_config = _STRICT
    observatory: Observatory
    server_url: WebUrl
    poll_interval: int = Field(default=300, ge=1)
    states: States = ["latest"]
    alert_after: int = Field(default=3, ge=1)
    timeout: float = Field(default=30, gt=0)
    since: str | None = None
    fits_fallback: bool = False  # read PEDIGREE/DESCRIP from FITS headers the catalog lacks


    @model_validator(mode="after")
    def _since(self) -> SourceSettings:
        if self.since is None:
            return self
        self.since = self.since.strip()
        context = _CONTEXT_NAME.fullmatch(self.since)
        if context:
            if context.group(1) != self.observatory:
                raise fail("since", f"{self.since!r} is not a {self.observatory} context")
            return self
        try:
            since_cutoff(self.since)
        except ValueError:
            raise fail("since", f"{self.since!r} is neither a context name like "
                       f"{self.observatory}_0500.pmap nor an ISO date like 2024-05-01") from None
        return self


class SmtpSettings(BaseModel):
    model_config = _STRICT
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535, description="default by security: 587/465/25")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: EmailAddress
    timeout: float = Field(default=30, gt=0)
    ca_file: Path | None = None
    verify: bool = True
    max_connections: int = Field(default=4, ge=1)
    # The right-hand side of Message-IDs; not set: the sender's domain (channels.mail).
    message_id_domain: str | None = None

    @field_validator("message_id_domain")
    @classmethod
    def _message_id_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", value) or ".." in value:
            raise ValueError(f"{value!r} is not a domain name like notices.example.org")
        if value == "invalid" or value.endswith(".invalid"):
            raise ValueError(f"{value!r} is under .invalid (RFC 2606): mail on it scores as spam")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            security = data.get("security", "starttls")
            port = SMTP_DEFAULT_PORTS.get(security, 587) if isinstance(security, str) else 587
            data = {**data, "port": port}
        return data


class HttpSettings(BaseModel):
    model_config = _STRICT
    listen: str = "127.0.0.1:8077"
    public_url: WebUrl | None = None
    unsubscribe_secret: SecretStr | None = None
    # Bounds on HTTP clients (crdswatch.service.web.server.WebLimits says why these defaults).
    max_connections: int = Field(default=256, ge=8, le=65536)
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    keepalive_timeout: float = Field(default=5.0, gt=0, le=300)
    request_deadline: float = Field(default=30.0, gt=0, le=600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        value = value.strip()
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})", value)
        if not match or int(match.group(2)) > 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (like 127.0.0.1:8077 or [::1]:8077)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AlertSettings(BaseModel):
    model_config = _STRICT
    admin_email: list[EmailAddress] = []


class OutboxSettings(BaseModel):
    model_config = _STRICT
    max_attempts: int = Field(default=8, ge=1)
    lease_seconds: int = Field(default=120, ge=1)
    backoff_base: float = Field(default=30, gt=0)
    backoff_max: float = Field(default=3600, gt=0)
    drain_interval: float = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _backoff(self) -> OutboxSettings:
        if self.backoff_max < self.backoff_base:
            raise fail("backoff_max", f"{self.backoff_max} is less than backoff_base ({self.backoff_base})")
        return self


class LimitsSettings(BaseModel):
    """Bounds on everything from outside; defaults and reasons live in crdswatch.limits."""

    model_config = _STRICT
    crds_reply_max_bytes: int = Field(default=_L.crds_reply_max_bytes, ge=1024)
    mapping_max_bytes: int = Field(default=_L.mapping_max_bytes, ge=1024)
    mapping_max_items: int = Field(default=_L.mapping_max_items, ge=100)
    fits_header_max_bytes: int = Field(default=_L.fits_header_max_bytes, ge=2880)
    request_deadline: float = Field(default=_L.request_deadline, gt=0)
    poll_deadline: float = Field(default=_L.poll_deadline, gt=0)
    drain_deadline: float = Field(default=_L.drain_deadline, gt=0)
    retry_after_max: float = Field(default=_L.retry_after_max, gt=0)
    send_deadline: float = Field(default=_L.send_deadline, gt=0)
    stale_polls: int = Field(default=_L.stale_polls, ge=1)
    channel_stale_after: float = Field(default=_L.channel_stale_after, gt=0)
    history_every: int = Field(default=_L.history_every, ge=1)
    max_mappings_per_context: int = Field(default=_L.max_mappings_per_context, ge=3)
    download_concurrency: int = Field(default=_L.download_concurrency, ge=1)
    regex_timeout: float = Field(default=_L.regex_timeout, gt=0)
    db_connect_timeout: float = Field(default=_L.db_connect_timeout, ge=0)
    db_statement_timeout: float = Field(default=_L.db_statement_timeout, ge=0)
    db_lock_timeout: float = Field(default=_L.db_lock_timeout, ge=0)
    feed_max_bytes: int = Field(default=_L.feed_max_bytes, ge=1024)
    feed_deadline: float = Field(default=_L.feed_deadline, gt=0)
    feed_alert_after: int = Field(default=_L.feed_alert_after, ge=1)
    narrowing_values: int = Field(default=_L.narrowing_values, ge=1, le=500)
    narrowing_wait: float = Field(default=_L.narrowing_wait, ge=0)
    affected_attempts: int = Field(default=_L.affected_attempts, ge=1)
    affected_backoff: float = Field(default=_L.affected_backoff, gt=0)
    affected_backoff_max: float = Field(default=_L.affected_backoff_max, gt=0)
    affected_ids_shown: int = Field(default=_L.affected_ids_shown, ge=1)

    def to_limits(self) -> Limits:
        """The pure value the inner layers take."""
        return Limits(**self.model_dump())


class FilterSettings(BaseModel):
    """The keys a subscriber and a list share: a name, the filters and the digest schedule."""

    model_config = _STRICT
    name: SlugName
    observatories: list[str] = []
    instruments: list[str] = []
    reftypes: list[str] = []
    change_levels: list[str] = []
    pedigrees: list[str] = []
    parameters: dict[str, list[str]] = {}
    states: States = ["latest"]
    digest: Literal["immediate", "daily", "weekly"] = "immediate"
    digest_hour: int = Field(default=8, ge=0, le=23)
    digest_weekday: Weekday = "mon"
    timezone: str = "UTC"
    # JWST/HST program ids (MAST program notices; "01234" and "1234" are the same program).
    programs: list[str] = []

    @field_validator("programs")
    @classmethod
    def _programs(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            text = str(item).strip()
            if not text.isdigit():
                raise ValueError(f"{item!r} is not a program number like \"1234\"")
            out.append(text.lstrip("0") or "0")
        return out


    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)


class SubscriberSettings(FilterSettings):
    email: list[EmailAddress] = []
    # Dataset subscriptions: parameter tables as a header has them (FITS keywords or JWST
    # data-model paths, `instrument` for INSTRUME), or {fits = "path"} to read one; `id` names it.
    datasets: list[dict[str, str | int | float | bool]] = []
    slack_webhook: SecretStr | None = None
    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None

    @field_validator("slack_webhook", "webhook_url")
    @classmethod
    def _urls(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        if value is not None:
            url = value.get_secret_value()
            # Slack webhooks carry a token: https only, except to this machine (tests, local relays).
            loopback = urlsplit(url.strip()).hostname in ("127.0.0.1", "localhost", "::1")
            schemes = ("https",) if info.field_name == "slack_webhook" and not loopback else ("http", "https")
            check_url(url, schemes, show=False)  # never echo a secret
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, table in enumerate(value):
            keys = {k.upper() for k in table}
            if "FITS" in keys:
                if not str(table.get("fits") or "").strip():
                    raise ValueError(f"datasets[{index}]: fits = path to a dataset FITS file")
                continue
            if not keys & {"INSTRUMENT", "INSTRUME", "META.INSTRUMENT.NAME"}:
                raise ValueError(f"datasets[{index}]: name the instrument (instrument = \"nirspec\") or a fits file")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_webhook_secret(value.get_secret_value())
        return value

    @field_validator("observatories", "instruments", "reftypes", "change_levels", "pedigrees")
    @classmethod
    def _lower(cls, value: list[str], info: Any) -> list[str]:
        out = names(value, str(info.field_name).rstrip("s").replace("_", " "))
        allowed = {"observatories": OBSERVATORIES, "change_levels": CHANGE_LEVELS}.get(str(info.field_name))
        for name in out:
            if allowed and name not in allowed:
                raise ValueError(f"{name!r} is not one of {', '.join(allowed)}")
        return out

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, values in value.items():
            name = key.strip().upper()
            if not _KEYWORD.fullmatch(name):
                raise ValueError(f"{key!r} is not a keyword like EXP_TYPE or META.EXPOSURE.TYPE")
            if not values or not all(v.strip() for v in values):
                raise ValueError(f"{key}: give at least one non-empty value")
            out.setdefault(name, []).extend(v.strip() for v in values if v.strip() not in out.get(name, []))
        return out

    @model_validator(mode="after")
    def _channels(self) -> SubscriberSettings:
        if not (self.email or self.slack_webhook or self.webhook_url):
            raise ValueError("no channel: give email, slack_webhook or webhook_url")
        if self.webhook_url and not self.webhook_secret:
            raise fail("webhook_secret", "required when webhook_url is set")
        if self.webhook_secret and not self.webhook_url:
            raise fail("webhook_secret", "set but webhook_url is not")
        return self


class UpstreamSettings(BaseModel):
    """One upstream crdswatch reads: a ReDCaT LISTSERV list (by mail and/or archive feed) or MAST mail."""

    model_config = _STRICT
    name: SlugName
    kind: Literal["list", "mast"] = "list"
    address: EmailAddress | None = None  # where the upstream delivers to us, at [inbound] domain
    list_id: str | None = None  # recognise posts by their List-Id; other mail goes to the admin
    feed_url: WebUrl | None = None
    feed_interval: int = Field(default=3600, ge=60)
    observatory: Observatory = "jwst"
    instruments: list[str] = []  # default: inferred from a <instrument>_reffiles_upd name
    auto_confirm: bool = False  # answer LISTSERV's "reply OK to confirm" ourselves

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, value: list[str]) -> list[str]:
        return names(value, "instrument")

    @model_validator(mode="after")
    def _paths(self) -> UpstreamSettings:
        if self.address is None and self.feed_url is None:
            raise ValueError("give address (mail delivered to crdswatch) or feed_url (an archive feed)")
        if self.kind == "mast" and self.feed_url is not None:
            raise fail("feed_url", "MAST notices come by mail only; give address")
        if not self.instruments and self.kind == "list":
            from crdswatch.notices.upstream import infer_instruments

            self.instruments = list(infer_instruments(self.name))
        return self


class ListSettings(FilterSettings):
    """One mailing list: a subscription template every confirmed member gets (see [[lists]])."""

    description: str = ""
    archive_url: WebUrl | None = None

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        value = " ".join(value.split())
        # List-Id carries it as raw bytes: printable ASCII only, and no quote to break the phrase.
        if any(not (" " <= c <= "~") or c in '"\\' for c in value):
            raise ValueError("use printable ASCII without quotes or backslashes (it goes into List-Id)")
        if len(value) > 200:
            raise ValueError("at most 200 characters")
        return value


def check_listen(value: str) -> str:
    """HOST:PORT, IPv6 hosts in brackets."""
    value = value.strip()
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (like 127.0.0.1:8024 or [::1]:8024)")
    return value


class InboundSettings(BaseModel):
    """The lists' inbound mail listener (LMTP for an MTA transport, or SMTP)."""

    model_config = _STRICT
    listen: str = "127.0.0.1:8024"
    protocol: Literal["lmtp", "smtp"] = "lmtp"
    domain: str
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    token_secret: SecretStr
    token_ttl_hours: float = Field(default=48, gt=0)
    session_timeout: float = Field(default=60, gt=0)
    max_requests_per_address: int = Field(default=5, ge=1)
    max_requests_per_hour: int = Field(default=200, ge=1)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", value):
            raise ValueError(f"{value!r} is not a mail domain like lists.example.org")
        return value

    @field_validator("token_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRDSWATCH_", env_nested_delimiter="__", extra="forbid")

    state: StateSettings = Field(default_factory=StateSettings)
    sources: list[SourceSettings] = []
    smtp: SmtpSettings | None = None
    http: HttpSettings = Field(default_factory=HttpSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    subscribers: list[SubscriberSettings] = []
    lists: list[ListSettings] = []
    inbound: InboundSettings | None = None
    upstream: list[UpstreamSettings] = []
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    log_format: Literal["console", "json"] = "console"

    _config_file: Path | None = PrivateAttr(None)

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings were read from (None: defaults and environment only)."""
        return self._config_file

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: keyword arguments > CRDSWATCH_* environment > the TOML file (see load_settings)."""
        toml = toml_source(settings_cls)
        return (init_settings, env_source(settings_cls)) + ((toml,) if toml else ())

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[SourceSettings]) -> list[SourceSettings]:
        seen: dict[tuple[str, str], int] = {}
        for i, source in enumerate(value):
            key = (source.observatory, source.server_url)
            if key in seen:
                raise fail(f"[{i}]", f"same observatory and server_url as sources[{seen[key]}]")
            seen[key] = i
        return value

    @field_validator("subscribers")
    @classmethod
    def _unique_names(cls, value: list[SubscriberSettings]) -> list[SubscriberSettings]:
        seen: dict[str, int] = {}
        for i, sub in enumerate(value):
            if sub.name.lower() in seen:
                raise fail(f"[{i}].name", f"duplicate subscriber name {sub.name!r} "
                           f"(also subscribers[{seen[sub.name.lower()]}])")
            seen[sub.name.lower()] = i
        return value

    @field_validator("lists")
    @classmethod
    def _unique_lists(cls, value: list[ListSettings]) -> list[ListSettings]:
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            if item.name.lower() in seen:
                raise fail(f"[{i}].name", f"duplicate list name {item.name!r} (also lists[{seen[item.name.lower()]}])")
            seen[item.name.lower()] = i
        return value

    @model_validator(mode="after")
    def _inbound_needed(self) -> Settings:
        if self.lists and self.inbound is None:
            raise fail("inbound", "missing: [[lists]] are configured but there is no [inbound] table "
                       "(the lists need their mail domain and token_secret)")
        if self.inbound is not None and self.smtp is None:
            raise fail("smtp", "missing: [inbound] is set but there is no [smtp] table to send "
                       "confirmations with")
        return self

    @model_validator(mode="after")
    def _smtp_needed(self) -> Settings:
        if self.smtp is None:
            for i, sub in enumerate(self.subscribers):
                if sub.email:
                    raise fail("smtp", f"missing: subscribers[{i}] ({sub.name}) has e-mail addresses "
                               "but there is no [smtp] table")
            if self.alerts.admin_email:
                raise fail("smtp", "missing: alerts.admin_email is set but there is no [smtp] table")
        return self
