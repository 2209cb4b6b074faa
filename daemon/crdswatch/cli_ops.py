"""Service commands: run, check-config, outbox, subscribers, preview, send-test (registered on cli.app)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crdswatch.cli import JsonOpt, _emit_json, app, fail
from crdswatch.errors import CrdswatchError

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config (default config/crdswatch.toml, then /etc/crdswatch/crdswatch.toml)."),
]


def _settings(config: Path | None) -> Any:
    from crdswatch.config import load_settings

    try:
        return load_settings(config)
    except CrdswatchError as exc:
        fail(str(exc))


def _open_store(settings: Any) -> Any:
    from crdswatch.runtime import open_store

    try:
        return open_store(settings)
    except Exception as exc:  # noqa: BLE001 - any database failure is reported the same way
        fail(f"cannot open the state database {settings.state.database!r}: {exc}")


@app.command()
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
    store = _open_store(_settings(config))
    if requeue is not None:
        if not store.requeue_dead(requeue):
            fail(f"delivery {requeue} is not dead (or does not exist)")
        typer.echo(f"delivery {requeue} requeued")
        return
    rows = store.outbox_rows(status=status, limit=limit)
    counts = store.counts()
    if as_json:
        _emit_json({"counts": counts, "rows": [_row_json(r) for r in rows]})
        return
    typer.echo("  ".join(f"{k}: {v}" for k, v in counts.items()))
    for r in rows:
        when = (r.sent_at or r.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{r.id:>6}  {r.status:<7} {when}  {r.context:<16} {r.subscriber:<20} {r.channel}"
                   f"  tries={r.attempts}" + (f"  error: {r.last_error}" if r.last_error else ""))


def _row_json(row: Any) -> dict[str, Any]:
    data: dict[str, Any] = row.to_json()
    data.pop("payload", None)  # the notice itself is large; `preview` shows it
    return data


LogFormatOpt = Annotated[
    str | None, typer.Option("--log-format", help="console (default) or json (one JSON object per line).")
]


def _configure_logging(fmt: str) -> None:
    import logging

    import structlog

    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


@app.command()
def run(config: ConfigOpt = None, log_format: LogFormatOpt = None) -> None:
    """Run the daemon (pollers, outbox drain, HTTP endpoints) until SIGTERM or Ctrl-C.

    Endpoints on [http] listen: /healthz, /metrics (Prometheus), /feed.atom, /unsubscribe.
    Under systemd (Type=notify) it reports READY, WATCHDOG and STOPPING.
    """
    import asyncio

    settings = _settings(config)
    if log_format not in (None, "console", "json"):
        fail(f"--log-format {log_format!r}: expected console or json")
    _configure_logging(log_format or settings.log_format)
    if not settings.sources:
        fail("no [[sources]] configured: nothing to watch")
    from crdswatch.service import Daemon

    try:
        daemon = Daemon(settings)
    except Exception as exc:  # noqa: BLE001 - start-up failures get one clear line
        fail(f"cannot start: {exc}")
    asyncio.run(daemon.run())


@app.command("check-config")
def check_config(
    config: ConfigOpt = None,
    offline: Annotated[bool, typer.Option(help="Validate only; do not contact servers or SMTP.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate the configuration and contact each CRDS server and the SMTP host (nothing is sent).

    Prints a summary with secrets masked. Exit 0 all good, 1 a check failed, 2 invalid config.
    """
    import asyncio

    from crdswatch.config import redacted_summary

    settings = _settings(config)
    checks: list[dict[str, Any]] = [] if offline else asyncio.run(_connectivity(settings))
    ok = all(c["ok"] for c in checks)
    summary = redacted_summary(settings)
    for src in summary.get("sources") or []:  # a server URL may carry user:password@
        src["server_url"] = _scrub(str(src["server_url"]))
    if as_json:
        _emit_json({"config": summary, "checks": checks, "ok": ok})
    else:
        typer.echo(json.dumps(summary, indent=2, default=str))
        for c in checks:
            typer.echo(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']}: {c['detail']}")
    raise typer.Exit(0 if ok else 1)


async def _connectivity(settings: Any) -> list[dict[str, Any]]:
    from crdswatch.sources.crds_rpc import CrdsRpcClient

    out: list[dict[str, Any]] = []
    for src in settings.sources:
        async with CrdsRpcClient(str(src.server_url), timeout=src.timeout, retries=0) as client:
            for state in src.states:
                name = f"{_scrub(str(src.server_url))} {src.observatory} {state}"
                try:
                    out.append({"check": name, "ok": True,
                                "detail": await client.get_default_context(src.observatory, state)})
                except CrdswatchError as exc:
                    out.append({"check": name, "ok": False, "detail": _scrub(str(exc))})
    if settings.smtp is not None:
        out.append(await _smtp_check(settings.smtp))
    return out


async def _smtp_check(smtp: Any) -> dict[str, Any]:
    import aiosmtplib

    name = f"smtp {smtp.host}:{smtp.port} ({smtp.security})"
    if smtp.username and smtp.password is None:  # the daemon would connect, then be refused at MAIL
        return {"check": name, "ok": False,
                "detail": "smtp.username is set but no password (smtp.password or CRDSWATCH_SMTP__PASSWORD)"}
    client = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, use_tls=smtp.security == "tls",
                             start_tls=smtp.security == "starttls", timeout=smtp.timeout,
                             validate_certs=smtp.verify, cert_bundle=str(smtp.ca_file) if smtp.ca_file else None)
    try:
        await client.connect()
        if smtp.username and smtp.password is not None:
            await client.login(smtp.username, smtp.password.get_secret_value())
        await client.quit()
    except (aiosmtplib.SMTPException, OSError) as exc:
        return {"check": name, "ok": False, "detail": str(exc)}
    return {"check": name, "ok": True, "detail": "connected" + (" and authenticated" if smtp.username else "")}


def _scrub(text: str) -> str:
    """Mask the password of any URL user-info (scheme://user:password@host) in `text`."""
    import re

    return re.sub(r"(://[^/@:\s]*:)[^/@\s]*@", r"\1********@", text)


subscribers_app = typer.Typer(help="Manage subscribers (stored in the state database; the config file seeds them).",
                              no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("list")
def subscribers_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every subscriber with its channels and filters (secrets masked)."""
    store = _open_store(_settings(config))
    rows = [{"name": s.name, **_masked(s.config)} for s in store.list_subscribers()]
    if as_json:
        _emit_json(rows)
        return
    from crdswatch.subscriptions import subscription_from_config

    for s in store.list_subscribers():
        sub = subscription_from_config(s.name, s.config)
        typer.echo(f"{s.name:<24} {', '.join(sub.channels) or '(no channels)'}")
        typer.echo(f"{'':<24} {sub.reason}" + (f"; {sub.digest} digest" if sub.digest != "immediate" else ""))


@subscribers_app.command("show")
def subscribers_show(name: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One subscriber's stored settings (secrets masked)."""
    found = _open_store(_settings(config)).get_subscriber(name)
    if found is None:
        fail(f"no subscriber named {name!r}")
    data = {"name": found.name, **_masked(found.config)}
    if as_json:
        _emit_json(data)
    else:
        typer.echo(json.dumps(data, indent=2, default=str))


@subscribers_app.command("add")
def subscribers_add(
    name: Annotated[str, typer.Argument(help="Unique name, e.g. nirspec-team.")],
    email: Annotated[list[str] | None, typer.Option(help="E-mail address (repeatable).")] = None,
    slack_webhook: Annotated[str | None, typer.Option(help="Slack incoming-webhook URL.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Generic webhook URL.")] = None,
    webhook_secret: Annotated[str | None, typer.Option(help="Standard Webhooks secret (whsec_...).")] = None,
    observatory: Annotated[list[str] | None, typer.Option(help="jwst, hst, roman (repeatable).")] = None,
    instrument: Annotated[list[str] | None, typer.Option(help="e.g. nirspec (repeatable).")] = None,
    reftype: Annotated[list[str] | None, typer.Option(help="e.g. dark (repeatable).")] = None,
    change_level: Annotated[list[str] | None, typer.Option(help="e.g. SEVERE (repeatable).")] = None,
    pedigree: Annotated[list[str] | None, typer.Option(help="e.g. INFLIGHT (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY=V1|V2, e.g. EXP_TYPE=NRS_IFU (repeatable).")] = None,
    digest: Annotated[str, typer.Option(help="immediate, daily or weekly.")] = "immediate",
    digest_hour: Annotated[int, typer.Option(help="Hour (0-23) digests go out, in --timezone.")] = 8,
    digest_weekday: Annotated[str, typer.Option(help="Weekly digests: mon, tue, ... sun.")] = "mon",
    timezone: Annotated[str, typer.Option(help="Time zone of digest hours, e.g. Europe/Paris.")] = "UTC",
    config: ConfigOpt = None,
) -> None:
    """Add or replace a subscriber. Empty filters mean everything.

    Example: crdswatch subscribers add ifu --email me@example.org --instrument nirspec --param EXP_TYPE=NRS_IFU
    """
    from crdswatch.config import SubscriberSettings
    from crdswatch.runtime import subscriber_json

    params: dict[str, list[str]] = {}
    for item in param or []:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            fail(f"--param {item!r}: expected KEY=VALUE or KEY=V1|V2")
        params[key.strip()] = [v.strip() for v in values.split("|") if v.strip()]
    raw = {"name": name, "email": email or [], "slack_webhook": slack_webhook, "webhook_url": webhook_url,
           "webhook_secret": webhook_secret, "observatories": observatory or [], "instruments": instrument or [],
           "reftypes": reftype or [], "change_levels": change_level or [], "pedigrees": pedigree or [],
           "parameters": params, "digest": digest, "digest_hour": digest_hour, "digest_weekday": digest_weekday,
           "timezone": timezone}
    try:
        sub = SubscriberSettings.model_validate({k: v for k, v in raw.items() if v is not None})
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the bad field
        fail(f"subscriber {name!r}: {exc}")
    data = subscriber_json(sub)
    data["origin"] = "cli"
    _open_store(_settings(config)).upsert_subscriber(name, data)
    typer.echo(f"subscriber {name!r} saved")


@subscribers_app.command("remove")
def subscribers_remove(name: str, config: ConfigOpt = None) -> None:
    """Remove a subscriber (one named in the config file comes back at the next start)."""
    if not _open_store(_settings(config)).remove_subscriber(name):
        fail(f"no subscriber named {name!r}")
    typer.echo(f"subscriber {name!r} removed")


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    secret_keys = ("slack_webhook", "webhook_url", "webhook_secret")
    return {k: ("********" if k in secret_keys and v else v) for k, v in config.items()}


@app.command()
def preview(
    subscriber: Annotated[str, typer.Option("--subscriber", help="Subscriber name.")],
    activation: Annotated[str, typer.Option("--activation", help="Activated context, e.g. jwst_0541.pmap.")],
    fmt: Annotated[str, typer.Option("--format", help="text, html, slack or json.")] = "text",
    config: ConfigOpt = None,
) -> None:
    """Render the notice a subscriber got (or would get) for an activation, without sending it.

    The activation must be one the daemon has seen (it is read from the state database).
    Exit 0 printed, 1 the subscriber's filters select nothing in it, 2 error.
    """
    from crdswatch.codec import change_from_json
    from crdswatch.match import notices_for
    from crdswatch.model import ActivationDiff
    from crdswatch.subscriptions import subscription_from_config

    if fmt not in ("text", "html", "slack", "json"):
        fail(f"--format {fmt!r}: expected text, html, slack or json")
    store = _open_store(_settings(config))
    found = store.get_subscriber(subscriber)
    if found is None:
        fail(f"no subscriber named {subscriber!r}")
    seen = [a for a in store.list_activations(limit=100000) if a.context == activation and a.diff]
    if not seen:
        fail(f"{activation}: not an activation in the state database (see `crdswatch outbox` / the feed)")
    act = seen[0]
    source_url, observatory, state = act.source_key.split("|")
    changes = tuple(change_from_json(c) for c in (act.diff or {}).get("changes", []))
    diff = ActivationDiff(observatory, source_url, state,
                          _activation(act), act.previous_context, changes, _catalog_of(act))
    notices = notices_for(diff, [subscription_from_config(found.name, found.config)])
    if not notices:
        typer.echo(f"{subscriber}'s filters select nothing in {activation}: no notice", err=True)
        raise typer.Exit(1)
    _print_rendered(notices[0][1], fmt)


def _activation(seen: Any) -> Any:
    from crdswatch.model import Activation

    return Activation(seen.activation_date, seen.context, seen.description)


def _catalog_of(seen: Any) -> dict[str, Any]:
    """Catalog facts recorded with the activation (the server is not asked again)."""
    from crdswatch.model import FileInfo

    return {name: FileInfo(**info) for name, info in ((seen.diff or {}).get("catalog") or {}).items()}


def _print_rendered(notice: Any, fmt: str) -> None:
    from crdswatch import render

    if fmt == "text":
        sys.stdout.write(f"Subject: {render.subject(notice)}\n\n{render.text_body(notice)}")
    elif fmt == "html":
        sys.stdout.write(render.html_body(notice))
    elif fmt == "slack":
        _emit_json(render.slack_payloads(notice))
    else:
        _emit_json(render.webhook_payload(notice))


@app.command("send-test")
def send_test(
    subscriber: Annotated[str, typer.Option("--subscriber", help="Subscriber name.")],
    config: ConfigOpt = None,
) -> None:
    """Send a sample notice to every channel of a subscriber, now, bypassing the outbox."""
    import asyncio
    from datetime import UTC, datetime

    from crdswatch.render import sample_notice
    from crdswatch.runtime import ChannelSenders
    from crdswatch.subscriptions import subscription_from_config

    settings = _settings(config)
    store = _open_store(settings)
    found = store.get_subscriber(subscriber)
    if found is None:
        fail(f"no subscriber named {subscriber!r}")
    sub = subscription_from_config(found.name, found.config)
    if not sub.channels:
        fail(f"{subscriber!r} has no channels")

    async def run() -> bool:
        senders = ChannelSenders(settings, store)
        now = datetime.now(UTC)
        sample = sample_notice(now)
        notice = type(sample)(sub.name, sample.activations, sub.reason + " (this is a test notice)")
        ok = True
        try:
            async with senders.session():
                for channel in sub.channels:
                    try:
                        await senders.send(channel, sub.name, notice, f"send-test-{now.timestamp()}-{channel}", now)
                        typer.echo(f"ok    {channel}")
                    except CrdswatchError as exc:
                        ok = False
                        typer.echo(f"FAIL  {channel}: {exc}")
        finally:
            await senders.aclose()
        return ok

    raise typer.Exit(0 if asyncio.run(run()) else 1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its state, mailbox and feed.")] = Path("demo-out"),
    count: Annotated[int, typer.Option(help="How many real activations to replay.")] = 15,
    follow: Annotated[bool, typer.Option("--follow", help="Keep the daemon running afterwards (Ctrl-C ends).")] = False,
) -> None:
    """The whole job offline: real JWST history (2019) replayed into the real daemon.

    Starts a replay CRDS server and a local mailbox on loopback, runs the daemon with four example
    subscribers, activates the last COUNT real contexts one by one, and shows what was delivered.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from crdswatch.demo import first_notice_text, run_demo

    _configure_logging_quiet()
    console = Console(soft_wrap=True)
    with Progress(TextColumn("replaying activations"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as bar:
        task = bar.add_task("", total=count)

        def step(done: int, total: int, context: str) -> None:
            bar.update(task, completed=done, total=total, description=context)

        try:
            result = asyncio.run(run_demo(out, count, follow=follow, progress=step))
        except (CrdswatchError, TimeoutError, OSError) as exc:
            fail(str(exc))
    console.print(f"\n[bold]{len(result.activations)} activations processed[/bold]: "
                  f"{result.activations[0]} … {result.activations[-1]}")
    console.print("[bold]Notices per subscriber[/bold] (sent now / held for the daily digest):")
    for name in sorted(set(result.sent) | set(result.held)):
        console.print(f"  {name:<20} {result.sent.get(name, 0):>3} sent   {result.held.get(name, 0):>3} held")
    if result.dead:
        console.print(f"[red]{result.dead} deliveries failed for good (see crdswatch outbox)[/red]")
    console.print(f"\n[bold]Where to look[/bold]\n  mailbox   {out}/Maildir/new/  ({len(result.mails)} messages)\n"
                  f"  feed      {out}/feed.atom  ({result.feed_entries} entries)\n"
                  f"  outbox    crdswatch outbox --config {out}/crdswatch.toml\n"
                  f"  preview   crdswatch preview --config {out}/crdswatch.toml --subscriber nirspec-team "
                  f"--activation {result.activations[-1]}")
    if result.showcase is not None:
        console.rule("one of the notices delivered")
        sys.stdout.write(first_notice_text(result.showcase) + "\n")
    if result.dead or not result.mails:
        raise typer.Exit(1)


def _configure_logging_quiet() -> None:
    import logging

    import structlog

    # The demo shows a progress bar and a summary; the daemon's info lines would bury them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
