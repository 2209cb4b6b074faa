"""`crdswatch lists`: the mailing lists, their members, the operator's add and remove, the request log."""

from __future__ import annotations

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

__all__ = ["register"]

lists_app = typer.Typer(
    help=(
        "Mailing lists people join themselves ([[lists]] with [inbound]).\n\n"
        "Without a command: every list with its description and member counts.\n\n"
        "  crdswatch lists --json\n\n"
        "  crdswatch lists members nirspec_reffiles_upd\n\n"
        "  crdswatch lists add nirspec_reffiles_upd jane@uni.example.edu"
    ),
    invoke_without_command=True,
)

ListArg = Annotated[str, typer.Argument(help="List name, e.g. nirspec_reffiles_upd.")]
AddressArg = Annotated[str, typer.Argument(help="E-mail address, e.g. jane@uni.example.edu.")]


def _service(config: Any, *, read_only: bool = False) -> Any:
    """The list service; `read_only` for the commands that only show members and the log."""
    from crdswatch.app.lists import list_service

    settings = load_settings_or_fail(config)
    if settings.inbound is None or not settings.lists:
        fail("no mailing lists configured: add [inbound] and [[lists]] tables (see README 'Mailing lists')")
    return list_service(settings, open_store_or_fail(settings, read_only=read_only))


def _call(action: Any) -> Any:
    from crdswatch.app.lists import UnknownList

    try:
        return action()
    except UnknownList as exc:
        fail(str(exc).strip('"'))


@lists_app.callback()
def overview(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every list: name, description, members (and how many have delivery disabled by bounces)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _service(config, read_only=True).summaries()
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        disabled = f" ({row['disabled']} disabled by bounces)" if row["disabled"] else ""
        typer.echo(f"{row['name']:<28} {row['members']:>5} members{disabled}  {row['description']}")
        typer.echo(f"{'':<28} join: {row['join']}  leave: {row['leave']}")


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def _member_json(member: Any) -> dict[str, Any]:
    iso = _iso
    return {"address": member.address, "list": member.list_name, "since": iso(member.created_at),
            "origin": member.origin, "delivery": "enabled" if member.enabled else "disabled",
            "bounce_score": member.bounce_score, "last_bounce": iso(member.last_bounce_at),
            "warnings_sent": member.warnings_sent}


@lists_app.command("members")
def members(name: ListArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The members of one list, with delivery state and bounce score."""
    service = _service(config, read_only=True)
    rows = [_member_json(m) for m in _call(lambda: service.members(name))]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo(f"{name}: no members")
    for row in rows:
        typer.echo(f"{row['address']:<40} {row['delivery']:<8} score {row['bounce_score']}  since {row['since'][:10]}"
                   f"  ({row['origin']})")


@lists_app.command("add")
def add(name: ListArg, address: AddressArg, config: ConfigOpt = None) -> None:
    """Add a member without a confirmation mail (you vouch for the address)."""
    from crdswatch.store import utc_now

    service = _service(config)
    added = _call(lambda: service.add_member(name, address, utc_now()))
    typer.echo(f"{address}: {'added to' if added else 'already a member of'} {name}")


@lists_app.command("remove")
def remove(name: ListArg, address: AddressArg, config: ConfigOpt = None) -> None:
    """Remove a member at once (no confirmation); exit status 1 when it was not a member."""
    from crdswatch.store import utc_now

    service = _service(config)
    if not _call(lambda: service.remove_member(name, address, utc_now())):
        typer.echo(f"{address} is not a member of {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{address}: removed from {name}")


@lists_app.command("log")
def request_log(
    name: Annotated[str | None, typer.Argument(help="Only this list.")] = None,
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 50,
    config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """The request log: every request, confirmation, refusal and bounce, newest first."""
    service = _service(config, read_only=True)
    rows = [{"at": r.at.isoformat(), "list": r.list_name, "address": r.address, "kind": r.kind,
             "outcome": r.outcome, "replied": r.replied, "detail": r.detail}
            for r in service.store.lists.requests(limit=limit, list_name=name)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['at'][:19]}  {row['list']:<24} {row['address']:<32} {row['kind']:<12} {row['outcome']}"
                   + (f"  {row['detail']}" if row["detail"] else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
