"""`crdswatch status`: what the running daemon's status page shows, from its /api/status."""

from __future__ import annotations

import json
from typing import Any

import typer

from crdswatch.cli.common import ConfigOpt, JsonOpt, fail, load_settings_or_fail

__all__ = ["register"]


def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show the running daemon's status: each watched source (current context, when it was
    activated, last successful poll and its age, failures), the outbox and the lists.

    It asks the daemon at [http] listen (the same facts as the web page at / and the JSON at
    /api/status). Exit 0 healthy, 1 unhealthy, 2 the daemon cannot be reached.

    Examples:  crdswatch status          crdswatch status --json | jq '.sources[].context'
    """
    import httpx

    settings = load_settings_or_fail(config)
    host, port = settings.http.host, settings.http.port
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard listen is reached locally
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/api/status"
    try:
        reply = httpx.get(url, timeout=5)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"no daemon answering at {url} ({exc}); is `crdswatch run` running with this config?")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print(data)
    raise typer.Exit(0 if data.get("healthy") else 1)


def _print(data: dict[str, Any]) -> None:
    from crdswatch.render.clean import clean_line  # the health reason quotes servers' error texts

    typer.echo(f"{'healthy' if data['healthy'] else 'UNHEALTHY'}: {clean_line(str(data['health']))}")
    for s in data["sources"]:
        age = s["last_successful_poll_age_seconds"]
        polled = f"polled {age:.0f} s ago" if age is not None else "no successful poll yet"
        typer.echo(f"  {s['observatory']} {s['state']} at {s['server']}: {s['context'] or '-'} "
                   f"(activated {(s['activated'] or '-')[:19]}); {polled}; {s['consecutive_failures']} failures")
    o = data["outbox"]
    typer.echo("outbox: " + ", ".join(f"{o.get(k, 0)} {k}" for k in ("pending", "leased", "sent", "dead")))
    for lst in data["lists"]:
        typer.echo(f"list {lst['name']}: {lst['members']} members ({lst['description']})")


def register(app: typer.Typer) -> None:
    app.command()(status)
