"""The archive: every seen activation, and per activation the full notice (all instruments)
with who was told and why; feeds per list and per instrument (read-only pages)."""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from crdswatch.model import Activation, Notice, SourceKey
from crdswatch.notices.codec import record_changes, stored_activation_diff
from crdswatch.notices.correlate import names_from_record
from crdswatch.render.atom import atom_feed
from crdswatch.render.clean import clean_line as clean
from crdswatch.render.view import notice_view
from crdswatch.service.web.pages_common import base_url, page, site_of
from crdswatch.service.web.status import status_snapshot
from crdswatch.store import SeenActivation

__all__ = ["archive_routes", "notice_of"]

CONTEXT = re.compile(r"[a-z0-9_]{1,64}\.pmap")
ARCHIVE_REASON = "the archive shows every change of this activation, for all instruments"


def notice_of(seen: SeenActivation) -> Notice:
    """The full notice of one stored activation (no subscriber's filters applied)."""
    act = stored_activation_diff(seen.source_key, Activation(seen.activation_date, seen.context, seen.description),
                                 seen.previous_context, seen.diff)
    return Notice("archive", (act,), ARCHIVE_REASON)


def _summary(seen: SeenActivation) -> dict[str, Any]:
    key = SourceKey.parse(seen.source_key)
    server, observatory, state = key.server_url, key.observatory, key.state
    changes = record_changes(seen.diff)
    instruments = sorted({c.instrument for c in changes if c.instrument})
    return {"context": seen.context, "previous": seen.previous_context, "date": seen.activation_date,
            "observatory": observatory, "state": state, "server": server, "description": seen.description,
            "changes": len(changes), "instruments": instruments, "baseline": seen.diff is None}


async def status_page(request: Request) -> Response:
    site = site_of(request)
    snap = await run_in_threadpool(status_snapshot, site, site.clock())
    recent = await run_in_threadpool(site.store.list_activations, None, 10)
    return page(request, "status.html.j2", title="Status", s=snap, recent=[_summary(a) for a in recent])


async def status_json(request: Request) -> Response:
    site = site_of(request)
    return JSONResponse(await run_in_threadpool(status_snapshot, site, site.clock()))


async def activations(request: Request) -> Response:
    seen = await run_in_threadpool(site_of(request).store.list_activations, None, 500)
    return page(request, "activations.html.j2", title="Activations", items=[_summary(a) for a in seen])


def _deliveries(site: Any, context: str) -> list[dict[str, Any]]:
    rows = [r for r in site.store.outbox_rows(limit=5000) if r.context == context]
    return [{"subscriber": r.subscriber, "channel": r.channel.split(":", 1)[0], "status": r.status,
             "reason": r.payload.get("reason") or (r.payload.get("notice") or {}).get("reason", "")} for r in rows]


async def activation(request: Request) -> Response:
    context = request.path_params["context"]
    if not CONTEXT.fullmatch(context):
        return PlainTextResponse("not a context name\n", 404)
    site = site_of(request)
    seen = await run_in_threadpool(site.store.activations_of_context, context)
    if not seen:
        return PlainTextResponse(f"{context} has not been seen here\n", 404)
    views = [(notice_view(notice_of(a)), _summary(a)) for a in seen]
    told = await run_in_threadpool(_deliveries, site, context)
    posts = await run_in_threadpool(_posts, site, seen)
    return page(request, "activation.html.j2", title=context, context=context, views=views, told=told, posts=posts)


def _posts(site: Any, seen: list[SeenActivation]) -> list[dict[str, Any]]:
    """Upstream list posts (the bridge) that name this activation's context, mappings or files."""
    names: set[str] = set()
    for a in seen:
        names |= names_from_record(a.context, a.activation_date, a.diff).names
    found = site.store.posts_naming(sorted(names))
    return [{"upstream": p.upstream, "date": p.date[:16].replace("T", " "), "subject": clean(p.subject),
             "sender": clean(p.sender), "link": p.link,
             "names": [n for n in p.references.names() if n in names]} for p in found]


async def _feed(request: Request, keep: Any, path: str, title: str) -> Response:
    site = site_of(request)
    seen = [a for a in await run_in_threadpool(site.store.list_activations, None, 500) if keep(a)][:50]
    names = {w.key: SourceKey.parse(w.key).server_url for w in site.watches}
    body = atom_feed(seen, feed_url=f"{base_url(site)}{path}", server_names=names, updated=site.clock())
    body = body.replace(b"crdswatch: CRDS context activations", f"crdswatch: {title}".encode(), 1)
    return Response(body, media_type="application/atom+xml; charset=utf-8")


def _touches(seen: SeenActivation, observatory: str, instruments: set[str]) -> bool:
    if seen.diff is None or SourceKey.parse(seen.source_key).observatory != observatory and observatory:
        return False
    return not instruments or any((c.instrument or "") in instruments for c in record_changes(seen.diff))


async def instrument_feed(request: Request) -> Response:
    obs, inst = request.path_params["obs"].lower(), request.path_params["instrument"].lower()
    if not (obs.isalnum() and inst.isalnum()):
        return PlainTextResponse("not an instrument\n", 404)
    return await _feed(request, lambda a: _touches(a, obs, {inst}), f"/instruments/{obs}/{inst}/feed.atom",
                       f"{obs.upper()} {inst.upper()} activations")


async def list_feed(request: Request) -> Response:
    lists = getattr(site_of(request), "lists", None)
    try:
        spec = lists.spec(request.path_params["name"]) if lists is not None else None
    except LookupError:
        spec = None
    if spec is None:
        return PlainTextResponse("no such list\n", 404)
    observatories = [o.lower() for o in spec.filters.get("observatories") or []]
    instruments = {i.lower() for i in spec.filters.get("instruments") or []}
    return await _feed(request, lambda a: _touches(a, observatories[0] if len(observatories) == 1 else "",
                                                   instruments),
                       f"/lists/{spec.name}/feed.atom", f"{spec.name} list")


def archive_routes() -> list[Route]:
    return [
        Route("/", status_page, methods=["GET"]),
        Route("/api/status", status_json, methods=["GET"]),
        Route("/activations", activations, methods=["GET"]),
        Route("/activations/{context}", activation, methods=["GET"]),
        Route("/instruments/{obs}/{instrument}/feed.atom", instrument_feed, methods=["GET"]),
        Route("/lists/{name}/feed.atom", list_feed, methods=["GET"]),
    ]
