"""The configuration layer: shipped files load, env overrides, secrets stay secret, errors name key paths."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from crdswatch.config import (
    DEFAULT_CONFIG_PATHS,
    AlertSettings,
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
    load_settings,
    redacted_summary,
)
from crdswatch.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SHIPPED = sorted(CONFIG_DIR.glob("*.toml"))

BASE = """
[[sources]]
observatory = "jwst"
server_url = "https://jwst-crds.stsci.edu"

[smtp]
host = "localhost"
sender = "CRDS notices <crds-notices@example.org>"

[[subscribers]]
name = "nirspec-team"
email = ["nirspec-team@example.org"]
instruments = ["NIRSpec"]
reftypes = ["dark", "flat"]
"""

SECRETS = {
    "CRDSWATCH_SMTP__PASSWORD": "smtp-pw-4711",
    "CRDSWATCH_HTTP__UNSUBSCRIBE_SECRET": "unsub-key-4712",
    "CRDSWATCH_SUBSCRIBERS__0__SLACK_WEBHOOK": "https://hooks.slack.com/services/T1/B2/slack-4713",
    "CRDSWATCH_SUBSCRIBERS__0__WEBHOOK_URL": "https://hooks.example.org/hook-4714",
    "CRDSWATCH_SUBSCRIBERS__0__WEBHOOK_SECRET": "whsec_c2VjcmV0LTQ3MTUtd2l0aC1ieXRlcw==",
}


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "crdswatch.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def error_of(path: Path | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return str(info.value)


# --- shipped files ---------------------------------------------------------------------------------


def test_config_dir_has_the_shipped_files() -> None:
    names = {p.name for p in SHIPPED}
    assert {"crdswatch.example.toml", "demo.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    settings = load_settings(path, {})
    assert settings.config_file == path
    assert settings.sources and settings.subscribers
    json.dumps(redacted_summary(settings))


def test_example_documents_every_key() -> None:
    text = (CONFIG_DIR / "crdswatch.example.toml").read_text()
    models: list[type[BaseModel]] = [
        Settings, StateSettings, SourceSettings, SmtpSettings, HttpSettings, AlertSettings, OutboxSettings,
        SubscriberSettings, LimitsSettings, UpstreamSettings, ListSettings, InboundSettings,
    ]
    missing = [f"{m.__name__}.{k}" for m in models for k in m.model_fields if k not in text]
    assert not missing


def test_demo_config() -> None:
    s = load_settings(CONFIG_DIR / "demo.toml", {})
    assert s.state.database.startswith("sqlite:///demo-out/")
    assert s.sources[0].server_url == "http://127.0.0.1:8078" and s.sources[0].poll_interval == 1
    assert s.smtp is not None and (s.smtp.host, s.smtp.port, s.smtp.security) == ("127.0.0.1", 8025, "none")
    subs = {sub.name: sub for sub in s.subscribers}
    assert set(subs) == {"nirspec-team", "miri-darks", "ifu-people", "everything-digest"}
    assert subs["miri-darks"].reftypes == ["dark"]
    assert subs["ifu-people"].parameters == {"EXP_TYPE": ["NRS_IFU", "MIR_MRS"]}
    assert subs["everything-digest"].digest == "daily"


# --- loading and defaults --------------------------------------------------------------------------


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if any(p.is_file() for p in DEFAULT_CONFIG_PATHS if p.is_absolute()):
        pytest.skip("this machine has a system-wide crdswatch configuration")
    s = load_settings(None, {})
    assert s.config_file is None
    assert s.state.database == "sqlite:////var/lib/crdswatch/state.db"
    assert s.sources == [] and s.subscribers == [] and s.smtp is None
    assert (s.http.listen, s.http.host, s.http.port) == ("127.0.0.1:8077", "127.0.0.1", 8077)
    assert s.outbox.max_attempts == 8 and s.lists == [] and s.log_format == "console"


def test_default_location_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "crdswatch.toml").write_text(BASE)
    s = load_settings(None, {})
    assert s.config_file == Path("config/crdswatch.toml") and s.subscribers[0].name == "nirspec-team"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.toml")
    assert "nope.toml" in message and "no such" in message


def test_toml_syntax_error_names_file_line_and_column(write: Callable[..., Path]) -> None:
    path = write('[state]\ndatabase = "sqlite:///x.db"\n\n[smtp\nhost = "x"\n')
    message = error_of(path)
    assert message.startswith(f"{path}: line 4, column")
    assert "TOML syntax error" in message


def test_values_are_normalised(write: Callable[..., Path]) -> None:
    s = load_settings(write(BASE + 'parameters = { exp_type = ["NRS_IFU"] }\nobservatories = ["JWST"]\n'), {})
    sub = s.subscribers[0]
    assert sub.instruments == ["nirspec"] and sub.observatories == ["jwst"]
    assert sub.parameters == {"EXP_TYPE": ["NRS_IFU"]}
    assert s.smtp is not None and s.smtp.port == 587


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_smtp_port_defaults_by_security(write: Callable[..., Path], security: str, port: int) -> None:
    s = load_settings(write(BASE.replace('host = "localhost"', f'security = "{security}"')), {})
    assert s.smtp is not None and s.smtp.port == port


def test_since_accepts_context_or_date(write: Callable[..., Path]) -> None:
    def config(since: str) -> str:
        return BASE.replace('observatory = "jwst"', f'observatory = "jwst"\nsince = "{since}"')

    for since in ("jwst_0500.pmap", "2024-05-01", "2024-05-01T12:00:00Z"):
        assert load_settings(write(config(since)), {}).sources[0].since == since
    for bad in ("hst_0500.pmap", "yesterday"):
        assert f"sources[0].since: {bad!r}" in error_of(write(config(bad)))


# --- environment -----------------------------------------------------------------------------------


def test_env_overrides_file(write: Callable[..., Path]) -> None:
    path = write(BASE + '\n[http]\nlisten = "127.0.0.1:1"\n')
    env = {
        "CRDSWATCH_STATE__DATABASE": "postgresql+psycopg://crdswatch@db/crdswatch",
        "CRDSWATCH_HTTP__LISTEN": "0.0.0.0:9000",
        "CRDSWATCH_SMTP__PASSWORD": "hunter2",
        "CRDSWATCH_SMTP__PORT": "2525",
        "CRDSWATCH_LOG_FORMAT": "json",
        "CRDSWATCH_ALERTS__ADMIN_EMAIL": '["ops@example.org"]',
        "CRDSWATCH_SOURCES__0__POLL_INTERVAL": "17",
        "CRDSWATCH_SUBSCRIBERS__0__REFTYPES": '["bias"]',
        "CRDSWATCH_CACHE": "/tmp/not-a-setting",  # other CRDSWATCH_* variables are not settings
    }
    s = load_settings(path, env)
    assert s.state.database == "postgresql+psycopg://crdswatch@db/crdswatch"
    assert (s.http.host, s.http.port) == ("0.0.0.0", 9000)
    assert s.smtp is not None and s.smtp.password is not None
    assert s.smtp.password.get_secret_value() == "hunter2"
    assert s.smtp.port == 2525 and s.smtp.host == "localhost"  # the rest of [smtp] kept
    assert s.log_format == "json" and s.alerts.admin_email == ["ops@example.org"]
    assert s.sources[0].poll_interval == 17 and s.sources[0].server_url == "https://jwst-crds.stsci.edu"
    assert s.subscribers[0].reftypes == ["bias"] and s.subscribers[0].instruments == ["nirspec"]


def test_env_reads_os_environ_by_default(write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRDSWATCH_SMTP__PASSWORD", "from-os-environ")
    s = load_settings(write(BASE))
    assert s.smtp is not None and s.smtp.password is not None
    assert s.smtp.password.get_secret_value() == "from-os-environ"
    assert os.environ["CRDSWATCH_CACHE"]  # set by conftest, and not a setting: no error


def test_env_replaces_whole_lists_as_json(write: Callable[..., Path]) -> None:
    subscribers = [{"name": "ops", "email": ["ops@example.org"]}]
    s = load_settings(write(BASE), {"CRDSWATCH_SUBSCRIBERS": json.dumps(subscribers)})
    assert [sub.name for sub in s.subscribers] == ["ops"]


def test_env_errors_name_the_variable(write: Callable[..., Path]) -> None:
    message = error_of(write(BASE), {"CRDSWATCH_SMTP__PASWORD": "x"})
    assert message == ("environment (CRDSWATCH_SMTP__PASWORD): smtp.pasword: unknown key "
                       "(did you mean 'password'?)")
    message = error_of(write(BASE), {"CRDSWATCH_SOURCES": "not json"})
    assert message.startswith("environment (CRDSWATCH_SOURCES): not valid JSON")
    message = error_of(write(BASE), {"CRDSWATCH_SUBSCRIBERS__3__NAME": "x"})
    assert "CRDSWATCH_SUBSCRIBERS__3" in message and "1 item" in message


# --- secrets ---------------------------------------------------------------------------------------


def test_secrets_never_shown(write: Callable[..., Path]) -> None:
    path = write(BASE.replace("[smtp]", "[state]\ndatabase = 'postgresql+psycopg://u:dbpw-4716@db/x'\n\n[smtp]"))
    s = load_settings(path, SECRETS)
    sub = s.subscribers[0]
    assert sub.webhook_secret is not None
    assert sub.webhook_secret.get_secret_value() == "whsec_c2VjcmV0LTQ3MTUtd2l0aC1ieXRlcw=="
    summary = redacted_summary(s)
    shown = [repr(s), str(s), s.model_dump_json(), json.dumps(summary), repr(s.smtp), str(sub),
             sub.model_dump_json()]
    for text in shown:
        for secret in [*SECRETS.values(), "dbpw-4716"]:
            assert secret not in text
    assert summary["smtp"]["password"] == "********"
    assert summary["subscribers"][0]["webhook_secret"] == "********"
    assert summary["state"]["database"] == "postgresql+psycopg://u:********@db/x"


def test_unset_secrets_in_summary(write: Callable[..., Path]) -> None:
    summary = redacted_summary(load_settings(write(BASE), {}))
    assert summary["smtp"]["password"] == "(not set)"
    assert summary["http"]["unsubscribe_secret"] == "(not set)"
    assert summary["subscribers"][0]["slack_webhook"] == "(not set)"
    assert summary["subscribers"][0]["email"] == ["nirspec-team@example.org"]


def test_bad_secret_is_not_echoed(write: Callable[..., Path]) -> None:
    env = {**SECRETS, "CRDSWATCH_SUBSCRIBERS__0__WEBHOOK_SECRET": "whsec_not*base64-4717",
           "CRDSWATCH_SUBSCRIBERS__0__SLACK_WEBHOOK": "http://insecure-4718.example.org/x"}
    message = error_of(write(BASE), env)
    assert "subscribers[0] (nirspec-team).webhook_secret: must be 'whsec_' followed by base64" in message
    assert "subscribers[0] (nirspec-team).slack_webhook: must be an https:// URL" in message
    assert "4717" not in message and "4718" not in message


# --- errors name the file and key path -------------------------------------------------------------


def test_unknown_key_at_top_level(write: Callable[..., Path]) -> None:
    path = write(BASE + "\n[smpt]\nhost = 'x'\n")
    assert f"{path}: smpt: unknown key (did you mean 'smtp'?)" in error_of(path)


def test_unknown_key_at_depth_two(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('host = "localhost"', 'host = "localhost"\npasword = "x"'))
    message = error_of(path)
    assert message == f"{path}: smtp.pasword: unknown key (did you mean 'password'?)"
    assert '"x"' not in message


def test_unknown_key_inside_subscribers(write: Callable[..., Path]) -> None:
    path = write(BASE + '\n[[subscribers]]\nname = "miri"\nemail = ["m@example.org"]\nrefypes = ["dark"]\n')
    assert error_of(path) == f"{path}: subscribers[1] (miri).refypes: unknown key (did you mean 'reftypes'?)"


def test_unknown_key_inside_sources(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('observatory = "jwst"', 'observatory = "jwst"\npoll_intervall = 5'))
    assert error_of(path) == f"{path}: sources[0].poll_intervall: unknown key (did you mean 'poll_interval'?)"


def test_bad_email(write: Callable[..., Path]) -> None:
    path = write(BASE.replace("nirspec-team@example.org", "not-an-address"))
    message = error_of(path)
    assert message == (f"{path}: subscribers[0] (nirspec-team).email[0]: "
                       "'not-an-address' is not an e-mail address")


def test_bad_sender(write: Callable[..., Path]) -> None:
    path = write(BASE.replace("CRDS notices <crds-notices@example.org>", "CRDS notices"))
    assert f"{path}: smtp.sender: 'CRDS notices' is not an e-mail address" == error_of(path)


def test_bad_timezone(write: Callable[..., Path]) -> None:
    path = write(BASE + 'timezone = "Mars/Olympus_Mons"\n')
    assert "subscribers[0] (nirspec-team).timezone: 'Mars/Olympus_Mons' is not a time zone" in error_of(path)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_***", "c2VjcmV0", "WHSEC_c2VjcmV0", "whsec_c2VjcmV0"])
def test_bad_webhook_secret(write: Callable[..., Path], secret: str) -> None:
    path = write(BASE + f'webhook_url = "https://example.org/h"\nwebhook_secret = "{secret}"\n')
    message = error_of(path)
    why = "too short: a webhook secret needs at least 16 bytes" if secret == "whsec_c2VjcmV0" else (
        "must be 'whsec_' followed by base64")
    assert f"subscribers[0] (nirspec-team).webhook_secret: {why}" in message
    assert secret not in message.removeprefix(f"{path}: ").replace("'whsec_'", "")


def test_webhook_needs_secret(write: Callable[..., Path]) -> None:
    path = write(BASE + 'webhook_url = "https://example.org/h"\n')
    assert "subscribers[0] (nirspec-team).webhook_secret: required when webhook_url is set" in error_of(path)


def test_missing_channel(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('email = ["nirspec-team@example.org"]\n', ""))
    assert error_of(path) == (f"{path}: subscribers[0] (nirspec-team): "
                              "no channel: give email, slack_webhook or webhook_url")


def test_duplicate_subscriber_names(write: Callable[..., Path]) -> None:
    path = write(BASE + '\n[[subscribers]]\nname = "NIRSpec-Team"\nemail = ["x@example.org"]\n')
    message = error_of(path)
    assert message == (f"{path}: subscribers[1].name: duplicate subscriber name 'NIRSpec-Team' "
                       "(also subscribers[0])")


def test_bad_subscriber_name(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('name = "nirspec-team"', 'name = "nirspec team"'))
    assert "subscribers[0].name: 'nirspec team' is not a name" in error_of(path)


def test_poll_interval_zero(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('observatory = "jwst"', 'observatory = "jwst"\npoll_interval = 0'))
    message = error_of(path)
    assert message.startswith(f"{path}: sources[0].poll_interval: Input should be greater than or equal to 1")
    assert "(got 0)" in message


def test_bad_security(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('host = "localhost"', 'host = "localhost"\nsecurity = "ssl"'))
    message = error_of(path)
    assert message.startswith(f"{path}: smtp.security: ")
    assert "'starttls', 'tls' or 'none'" in message and "(got 'ssl')" in message


RT = 'reftypes = ["dark", "flat"]'
SM = "[smtp]"


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('observatory = "jwst"', 'observatory = "euclid"', "sources[0].observatory: Input should be 'jwst'"),
        ("https://jwst-crds.stsci.edu", "ftp://x.org", "sources[0].server_url: 'ftp://x.org' is not an http://"),
        (RT, "states = []", "subscribers[0] (nirspec-team).states: give at least one"),
        (RT, 'states = ["latest", "latest"]', "(nirspec-team).states: ['latest', 'latest'] lists a"),
        (RT, "digest_hour = 24", "subscribers[0] (nirspec-team).digest_hour: Input should be less than"),
        (RT, 'change_levels = ["huge"]', "(nirspec-team).change_levels: 'huge' is not one of"),
        (RT, "parameters = { EXP_TYPE = [] }", "(nirspec-team).parameters: EXP_TYPE: give at least one"),
        (SM, f'[http]\nlisten = "localhost"\n{SM}', "http.listen: 'localhost' is not HOST:PORT"),
        (SM, f"[outbox]\nbackoff_max = 1\n{SM}", "outbox.backoff_max: 1.0 is less than backoff_base"),
        (SM, f'[state]\ndatabase = "mysql://x"\n{SM}', "state.database: expected an SQLAlchemy URL"),
        ("[[sources]]", 'log_format = "xml"\n[[sources]]', "log_format: Input should be 'console' or 'json'"),
    ],
)
def test_other_bad_values(write: Callable[..., Path], replace: str, by: str, expected: str) -> None:
    assert expected in error_of(write(BASE.replace(replace, by, 1)))


def test_email_subscribers_need_smtp(write: Callable[..., Path]) -> None:
    smtp = '[smtp]\nhost = "localhost"\nsender = "CRDS notices <crds-notices@example.org>"\n'
    message = error_of(write(BASE.replace(smtp, "")))
    assert "smtp: missing: subscribers[0] (nirspec-team) has e-mail addresses" in message


def test_several_errors_one_per_line(write: Callable[..., Path]) -> None:
    path = write(BASE.replace('host = "localhost"', 'hots = "x"\nport = "x"') + 'timezone = "Nowhere"\n')
    lines = error_of(path).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)


def test_upstream_tables(tmp_path: Path) -> None:
    good = Settings(upstream=[{"name": "miri_reffiles_upd", "address": "upstream+miri@lists.example.org"},
                              {"name": "mast", "kind": "mast", "address": "upstream+mast@lists.example.org"}])
    assert good.upstream[0].instruments == ["miri"] and good.upstream[1].instruments == []
    with pytest.raises(ValidationError, match="give address"):
        Settings(upstream=[{"name": "x"}])
    with pytest.raises(ValidationError, match="MAST notices come by mail only"):
        Settings(upstream=[{"name": "m", "kind": "mast", "address": "a@b.org", "feed_url": "https://x.org/f"}])
    assert Settings(subscribers=[{"name": "p", "webhook_url": "https://x.org/h", "webhook_secret": "whsec_c2VjcmV0LTQ3MTUtd2l0aC1ieXRlcw==", "programs": ["01234"]}]).subscribers[0].programs == ["1234"]
    with pytest.raises(ValidationError, match="not a program number"):
        Settings(subscribers=[{"name": "p", "webhook_url": "https://x.org/h", "webhook_secret": "whsec_c2VjcmV0LTQ3MTUtd2l0aC1ieXRlcw==", "programs": ["jw1234"]}])


def test_subscriber_and_upstream_names_are_slugs() -> None:
    with pytest.raises(ValidationError, match="is not a name of letters, digits"):
        Settings(upstream=[{"name": "a b", "address": "x@example.org"}])
    with pytest.raises(ValidationError, match="is not a name of letters, digits"):
        Settings(subscribers=[{"name": "a b", "webhook_url": "https://x.org/h",
                               "webhook_secret": "whsec_c2VjcmV0LTQ3MTUtd2l0aC1ieXRlcw=="}])
