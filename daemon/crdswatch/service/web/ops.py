"""The operator endpoints, with the contracts they had before Starlette: /healthz, /metrics,
/feed.atom and the RFC 8058 one-click /unsubscribe."""

from __future__ import annotations

from urllib.parse import parse_qs

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from crdswatch.model import SourceKey
from crdswatch.notices.subscriptions import unsubscribe as unsubscribed_from
from crdswatch.notices.unsubscribe import BadToken, read_token
from crdswatch.render.atom import atom_feed
from crdswatch.service.web.pages_common import base_url, page, site_of

__all__ = ["form_field", "ops_routes"]

log = structlog.get_logger("crdswatch.web")


async def form_field(request: Request, name: str) -> str | None:
    """A value from the query string, else from a url-encoded body (the guard has bounded it)."""
    if name in request.query_params:
        return request.query_params[name]
    values = parse_qs((await request.body()).decode("utf-8", "replace")).get(name)
    return values[0] if values else None


async def healthz(request: Request) -> Response:
    """Plain text ("ok" or the reason) by default; JSON with the bound trips when asked
    (`?format=json` or `Accept: application/json`). The status code is the same either way."""
    site = site_of(request)
    ok, why = site.health_check()
    wants_json = (request.query_params.get("format") == "json"
                  or "application/json" in request.headers.get("accept", ""))
    if wants_json:
        return JSONResponse({"healthy": ok, "health": why, "bounds": site.bounds_status()}, 200 if ok else 503)
    return PlainTextResponse(why + "\n", 200 if ok else 503)


async def metrics(request: Request) -> Response:
    body = await site_of(request).metrics_page()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def feed(request: Request) -> Response:
    site = site_of(request)
    names = {w.key: SourceKey.parse(w.key).server_url for w in site.watches}  # keys hold no credentials
    seen = await run_in_threadpool(site.store.list_activations, None, 50)
    body = atom_feed(seen, feed_url=f"{base_url(site)}/feed.atom", server_names=names, updated=site.clock())
    return Response(body, media_type="application/atom+xml; charset=utf-8")


async def unsubscribe(request: Request) -> Response:
    """GET shows a confirmation (mail scanners follow links, never POST); POST unsubscribes.

    No CSRF token here: RFC 8058 mail clients POST without cookies; the signed token is the
    capability, and the action (stop one channel) is what its holder may ask for anyway.
    """
    site = site_of(request)
    secret = site.settings.http.unsubscribe_secret
    token = await form_field(request, "token") or ""
    try:
        if secret is None:
            raise BadToken("unsubscribe links are not configured")
        subscriber, channel = read_token(secret.get_secret_value().encode(), token)
    except BadToken as exc:
        return PlainTextResponse(f"{exc}\n", 400)
    if request.method in ("GET", "HEAD"):
        return page(request, "unsubscribe.html.j2", title="Unsubscribe",
                    subscriber=subscriber, channel=channel, token=token)
    found = await run_in_threadpool(site.store.get_subscriber, subscriber)
    lists = getattr(site, "lists", None)
    if found is not None and found.config.list_name and lists is not None:
        # A list member's one click ends the membership itself (RFC 8058 stays one click).
        address = channel.partition(":")[2]
        await run_in_threadpool(lists.remove_member, found.config.list_name, address, site.clock(),
                                origin="one-click")
        return PlainTextResponse("You are unsubscribed.\n")
    if found is not None:
        config = unsubscribed_from(found.config, [channel])
        await run_in_threadpool(site.store.upsert_subscriber, subscriber, config)
        log.info("unsubscribed", subscriber=subscriber, channel=channel)
    return PlainTextResponse("You are unsubscribed.\n")


def ops_routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/feed.atom", feed, methods=["GET"]),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
    ]
