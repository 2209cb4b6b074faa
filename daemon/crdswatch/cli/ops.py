"""Service commands: run, check-config, outbox, subscribers, preview, send-test (registered on cli.app)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from crdswatch.cli.common import (
    ConfigOpt,
    JsonOpt,
    emit_json,
    fail,
    load_settings_or_fail,
    open_store_or_fail,
)
from crdswatch.errors import CrdswatchError, StartupError
from crdswatch.redact import redact_error, redact_url


def outbox(
    config: ConfigOpt = None,
    status: Annotated[str | None, typer.Option(help="Only rows in this state: pending, leased, sent, dead.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, newest first.")] = 50,
    requeue: Annotated[int | None, typer.Option(help="Put this dead delivery back in the queue.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliveries waiting, sent and dead (with their last error); requeue a dead one."""
    if status is not None and status not in ("pending", "leased", "sent", "dead"):
        fail(f"--status {status!r}: expected pending, leased, sent or dead")
    # Only --requeue changes anything: showing the outbox neither migrates nor rewrites subscribers.
    settings = load_settings_or_fail(config)
    store = open_store_or_fail(settings, read_only=requeue is None)
    if requeue is not None:
        if not store.requeue_dead(requeue):
            fail(f"delivery {requeue} is not dead (or does not exist)")
        typer.echo(f"delivery {requeue} requeued")
        return
    rows = store.outbox_rows(status=status, limit=limit)
    counts = store.counts()
    urls = _secret_urls(settings, store)
    if as_json:
        emit_json({"counts": counts, "rows": [r.to_shown_json(urls) for r in rows]})
        return
    from crdswatch.render.clean import clean_line  # a receiver's error page reaches the terminal

    typer.echo("  ".join(f"{k}: {v}" for k, v in counts.items()))
    for r in rows:
        when = (r.sent_at or r.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")
        error = f"  error: {clean_line(redact_error(r.last_error, urls))}" if r.last_error else ""
        typer.echo(f"{r.id:>6}  {r.status:<7} {when}  {clean_line(r.context):<16} {clean_line(r.subscriber):<20} "
                   f"{clean_line(r.channel)}  tries={r.attempts}{error}")


def _secret_urls(settings: Any, store: Any) -> list[str]:
    """Every webhook and Slack URL the config or the store names: a row's error text may hold one
    (written before errors were scrubbed where they are made), or a receiver's echo of it."""
    urls = {str(value.get_secret_value()) for sub in settings.subscribers
            for value in (sub.webhook_url, sub.slack_webhook) if value is not None}
    urls.update(store.secret_urls())
    return sorted(urls)


LogFormatOpt = Annotated[
    str | None, typer.Option("--log-format", help="console (default) or json (one JSON object per line).")
]


def run(config: ConfigOpt = None, log_format: LogFormatOpt = None) -> None:
    """Run the daemon (pollers, outbox drain, HTTP endpoints) until SIGTERM or Ctrl-C.

    Endpoints on [http] listen: /healthz, /metrics (Prometheus), /feed.atom, /unsubscribe.
    Under systemd (Type=notify) it reports READY, WATCHDOG and STOPPING.
    A start-up failure is one line on stderr (what, where, what to do) and exit code 2.
    """
    import asyncio

    from crdswatch.config import load_settings
    from crdswatch.service import startup

    if log_format not in (None, "console", "json"):
        fail(f"--log-format {log_format!r}: expected console or json")
    try:
        settings = load_settings(config)
    except CrdswatchError as exc:
        startup.report(startup.config_line(exc), log_format)
    fmt = log_format or settings.log_format
    if not settings.sources:
        startup.report("no [[sources]] configured: nothing to watch; add a [[sources]] table", fmt)
    from crdswatch.service.logs import configure

    configure(fmt)
    from crdswatch.service.daemon import Daemon

    try:
        with startup.step("daemon", settings):
            daemon = Daemon(settings)
        asyncio.run(daemon.run())
    except StartupError as exc:
        startup.report(str(exc), fmt)


def check_config(
    config: ConfigOpt = None,
    offline: Annotated[bool, typer.Option(help="Validate only; do not contact servers or SMTP.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate the configuration and contact each CRDS server and the SMTP host (nothing is sent).

    Subscriber instrument, reftype and parameter names are checked against the server's newest
    context (--offline: the mapping cache, else the bundled mappings); every bad name is listed.
    Prints a summary with secrets masked. Exit 0 all good, 1 a check failed, 2 invalid config.
    """
    import asyncio

    from crdswatch.config import redacted_summary

    settings = load_settings_or_fail(config)
    checks: list[dict[str, Any]] = [] if offline else asyncio.run(_connectivity(settings))
    checks += _name_checks(settings, online=not offline)
    ok = all(c["ok"] for c in checks)
    summary = redacted_summary(settings)
    for src in summary.get("sources") or []:  # a server URL may carry user:password@
        src["server_url"] = redact_url(str(src["server_url"]))
    if as_json:
        emit_json({"config": summary, "checks": checks, "ok": ok})
    else:
        typer.echo(json.dumps(summary, indent=2, default=str))
        for c in checks:
            typer.echo(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']}: {c['detail']}")
    raise typer.Exit(0 if ok else 1)


def _name_checks(settings: Any, *, online: bool) -> list[dict[str, Any]]:
    """Subscriber and list instrument, reftype and parameter names against the newest context."""
    from crdswatch.app.names import check_settings, split_definitive
    from crdswatch.cli.common import name_vocabularies

    if not settings.subscribers and not settings.lists:
        return []
    vocabs, notes = name_vocabularies(settings, online=online)
    out = [{"check": "names", "ok": True, "detail": note} for note in notes]
    definitive, snapshot = split_definitive(vocabs)
    for line in check_settings(settings, definitive):
        where, _, detail = line.partition(": ")
        out.append({"check": f"names {where}", "ok": False, "detail": detail})
    for line in check_settings(settings, snapshot):  # the bundled snapshot may predate a name
        where, _, detail = line.partition(": ")
        out.append({"check": f"names {where}", "ok": True, "detail": f"warning: {detail}"})
        typer.echo(f"crdswatch: warning: {line}", err=True)
    for note in notes:
        if "skipped" in note:
            typer.echo(f"crdswatch: warning: {note}", err=True)
    return out


async def _connectivity(settings: Any) -> list[dict[str, Any]]:
    from crdswatch.sources.crds_rpc import CrdsRpcClient

    out: list[dict[str, Any]] = []
    for src in settings.sources:
        async with CrdsRpcClient(str(src.server_url), timeout=src.timeout, retries=0) as client:
            for state in src.states:
                name = f"{redact_url(str(src.server_url))} {src.observatory} {state}"
                try:
                    out.append({"check": name, "ok": True,
                                "detail": await client.get_default_context(src.observatory, state)})
                except CrdswatchError as exc:
                    out.append({"check": name, "ok": False, "detail": redact_url(str(exc))})
    if settings.smtp is not None:
        out.append(await _smtp_check(settings.smtp))
    return out


async def _smtp_check(smtp: Any) -> dict[str, Any]:
    import aiosmtplib

    from crdswatch.channels.email import EmailChannel, SmtpSettings
    from crdswatch.errors import DeliveryError

    name = f"smtp {smtp.host}:{smtp.port} ({smtp.security})"
    if smtp.username and smtp.password is None:  # the daemon would connect, then be refused at MAIL
        return {"check": name, "ok": False,
                "detail": "smtp.username is set but no password (smtp.password or CRDSWATCH_SMTP__PASSWORD)"}
    # The daemon's own handshake (EmailChannel.connect: same client, TLS context, EHLO and login,
    # same error typing), not a second one built here: the check cannot pass where the daemon fails.
    try:
        client = await EmailChannel(SmtpSettings.from_config(smtp)).connect()
    except DeliveryError as exc:
        return {"check": name, "ok": False, "detail": str(exc)}
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()  # connected and logged in: a server that hangs up on QUIT is still fine
    return {"check": name, "ok": True, "detail": "connected" + (" and authenticated" if smtp.username else "")}


def register(app: typer.Typer) -> None:
    app.command()(outbox)
    app.command()(run)
    app.command("check-config")(check_config)
