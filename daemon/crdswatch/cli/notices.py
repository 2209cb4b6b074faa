"""Subscriber and notice commands: subscribers list/show/add/remove, preview, send-test."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from crdswatch.cli.common import (
    ConfigOpt,
    JsonOpt,
    emit_json,
    fail,
    load_settings_or_fail,
    open_store_or_fail,
    subscribers_of,
)
from crdswatch.errors import CrdswatchError

subscribers_app = typer.Typer(help="Manage subscribers (stored in the state database; the config file seeds them).",
                              no_args_is_help=True)


@subscribers_app.command("list")
def subscribers_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every subscriber with its channels and filters (secrets masked)."""
    settings = load_settings_or_fail(config)
    stored = subscribers_of(settings, open_store_or_fail(settings, read_only=True))
    rows = [{"name": s.name, **_masked(s.config)} for s in stored]
    if as_json:
        emit_json(rows)
        return
    from crdswatch.notices.subscriptions import subscription_from_config

    for s in stored:
        sub = subscription_from_config(s.name, s.config)
        typer.echo(f"{s.name:<24} {', '.join(sub.channels) or '(no channels)'}")
        typer.echo(f"{'':<24} {sub.reason}" + (f"; {sub.digest} digest" if sub.digest != "immediate" else ""))


@subscribers_app.command("show")
def subscribers_show(name: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One subscriber's stored settings (secrets masked)."""
    settings = load_settings_or_fail(config)
    found = _subscriber(settings, open_store_or_fail(settings, read_only=True), name)
    if found is None:
        fail(f"no subscriber named {name!r}")
    data = {"name": found.name, **_masked(found.config)}
    if as_json:
        emit_json(data)
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
    from crdswatch.service.runtime import subscriber_config

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
    settings = load_settings_or_fail(config)
    checked = _check_names(settings, name, sub)
    open_store_or_fail(settings).upsert_subscriber(name, subscriber_config(sub, origin="cli"))
    typer.echo(f"subscriber {name!r} saved" + (f" ({checked})" if checked else ""))


def _check_names(settings: Any, name: str, sub: Any) -> str:
    """Refuse instrument, reftype and parameter names the newest known context does not have."""
    from crdswatch.app.names import check_names, split_definitive
    from crdswatch.cli.common import name_vocabularies

    vocabs, notes = name_vocabularies(settings)
    for note in notes:
        if "skipped" in note or "not usable" in note:
            typer.echo(f"crdswatch: warning: {note}", err=True)
    definitive, snapshot = split_definitive(vocabs)
    for line in check_names(f"subscriber {name!r}", sub, snapshot):  # the bundled snapshot may predate it
        typer.echo(f"crdswatch: warning: {line}", err=True)
    errors = check_names(f"subscriber {name!r}", sub, definitive)
    if errors:
        fail("; ".join(errors))
    return "; ".join(n for n in notes if "checked against" in n)


@subscribers_app.command("remove")
def subscribers_remove(name: str, config: ConfigOpt = None) -> None:
    """Remove a subscriber added with `subscribers add` (config-file ones are removed from the file)."""
    settings = load_settings_or_fail(config)
    defined = [i for i, sub in enumerate(settings.subscribers) if sub.name.lower() == name.lower()]
    if defined:  # removing it from the database would be undone by the next start
        where = settings.config_file or "the configuration"
        fail(f"subscriber {name!r} is defined in {where} (subscribers[{defined[0]}]): "
             "remove its [[subscribers]] table there, then restart crdswatch")
    if not open_store_or_fail(settings).remove_subscriber(name):
        fail(f"no subscriber named {name!r}")
    typer.echo(f"subscriber {name!r} removed")


def _subscriber(settings: Any, store: Any, name: str) -> Any:
    return next((s for s in subscribers_of(settings, store) if s.name == name), None)


def _masked(config: Any) -> dict[str, Any]:
    """The stored settings as stored (notices.codec's JSON), secrets masked."""
    from crdswatch.notices.codec import subscriber_to_json
    from crdswatch.redact import MASK

    secret_keys = ("slack_webhook", "webhook_url", "webhook_secret")
    return {k: (MASK if k in secret_keys and v else v) for k, v in subscriber_to_json(config).items()}


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
    from crdswatch.model import Activation
    from crdswatch.notices.codec import stored_activation_diff
    from crdswatch.notices.match import notices_for
    from crdswatch.notices.subscriptions import subscription_from_config

    if fmt not in ("text", "html", "slack", "json"):
        fail(f"--format {fmt!r}: expected text, html, slack or json")
    settings = load_settings_or_fail(config)
    store = open_store_or_fail(settings, read_only=True)
    found = _subscriber(settings, store, subscriber)
    if found is None:
        fail(f"no subscriber named {subscriber!r}")
    act = store.find_activation(activation)
    if act is None:
        fail(f"{activation}: not an activation in the state database (see `crdswatch outbox` / the feed)")
    # As the poll saw it and the drain renders it: the stored record, with its catalog facts.
    diff = stored_activation_diff(act.source_key, Activation(act.activation_date, act.context, act.description),
                                  act.previous_context, act.diff)
    notices = notices_for(diff, [subscription_from_config(found.name, found.config)])
    if not notices:
        typer.echo(f"{subscriber}'s filters select nothing in {activation}: no notice", err=True)
        raise typer.Exit(1)
    _print_rendered(notices[0][1], fmt)


def _print_rendered(notice: Any, fmt: str) -> None:
    from crdswatch.render import html_body, slack_payloads, text_body, webhook_payload
    from crdswatch.render.subject import subject

    if fmt == "text":
        sys.stdout.write(f"Subject: {subject(notice)}\n\n{text_body(notice)}")
    elif fmt == "html":
        sys.stdout.write(html_body(notice))
    elif fmt == "slack":
        emit_json(slack_payloads(notice))
    else:
        emit_json(webhook_payload(notice))


def send_test(
    subscriber: Annotated[str, typer.Option("--subscriber", help="Subscriber name.")],
    config: ConfigOpt = None,
) -> None:
    """Send a sample notice to every channel of a subscriber, now, bypassing the outbox."""
    import asyncio
    from dataclasses import replace
    from datetime import UTC, datetime

    from crdswatch.notices.subscriptions import subscription_from_config
    from crdswatch.render import sample_notice
    from crdswatch.service.runtime import ChannelSenders

    settings = load_settings_or_fail(config)
    store = open_store_or_fail(settings)
    found = store.get_subscriber(subscriber)
    if found is None:
        fail(f"no subscriber named {subscriber!r}")
    sub = subscription_from_config(found.name, found.config)
    if not sub.channels:
        fail(f"{subscriber!r} has no channels")

    async def run() -> bool:
        senders = ChannelSenders(settings, store)
        now = datetime.now(UTC)
        # Marked as a test (subject, banner in every channel); the subscriber's own reason and
        # filters, so the "why" lines read as they will in real notices.
        notice = replace(sample_notice(now), subscriber=sub.name, reason=sub.reason,
                         interest=sub.filters.interest())
        ok = True
        try:
            async with senders.session():
                for channel in sub.channels:
                    deadline = settings.limits.send_deadline
                    try:
                        async with asyncio.timeout(deadline):  # as the daemon bounds each send
                            await senders.send(channel, sub.name, notice, f"send-test-{now.timestamp()}-{channel}", now)
                        typer.echo(f"ok    {channel}")
                    except CrdswatchError as exc:
                        ok = False
                        typer.echo(f"FAIL  {channel}: {exc}")
                    except TimeoutError:
                        ok = False
                        typer.echo(f"FAIL  {channel}: no complete send within send_deadline ({deadline:g} s)")
        finally:
            await senders.aclose()
        return ok

    raise typer.Exit(0 if asyncio.run(run()) else 1)


def register(app: typer.Typer) -> None:
    app.command()(preview)
    app.command("send-test")(send_test)
    app.add_typer(subscribers_app, name="subscribers")
