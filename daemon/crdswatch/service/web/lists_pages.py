"""/lists (a subscribe form per list) and /manage/<token> (a subscriber's own settings: narrow
by reference type, switch to a digest, leave). Every form carries the CSRF field; the subscribe
form is rate-limited per client address, on top of the list service's own per-address limits.

The subscribe form offers narrowing (reference types, match parameter values) from what the
current context holds for the list's instruments: `site.narrowing` (an app.narrowing.
NarrowingOffers; absent: nothing offered). A choice outside the offer is refused; an accepted one
rides in the confirmation token and applies only when the member confirms."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from crdswatch.contexts.narrowing import NarrowingOptions, check_narrowing
from crdswatch.model import SubscriberConfig
from crdswatch.notices.manage_token import read_manage_token
from crdswatch.notices.subscriptions import unsubscribe
from crdswatch.notices.unsubscribe import BadToken
from crdswatch.service.web.pages_common import check_csrf, page, site_of

__all__ = ["lists_routes"]

log = structlog.get_logger("crdswatch.web")
FORM_LIMIT = 10  # subscribe posts per client address ...
FORM_WINDOW = 600.0  # ... per 10 minutes
DIGESTS = ("immediate", "daily", "weekly")
PARAM_FIELD = "p_"  # the subscribe form's field per match parameter: p_EXP_TYPE=NRS_IFU


async def _form(request: Request) -> dict[str, list[str]]:
    return parse_qs((await request.body()).decode("utf-8", "replace"))


def _allowed(request: Request) -> bool:
    state = request.app.state
    if getattr(state, "form_hits", None) is None:
        state.form_hits = {}
    hits: dict[str, deque[float]] = state.form_hits
    client = request.client.host if request.client else "?"
    now = time.monotonic()
    seen = hits.setdefault(client, deque())
    while seen and now - seen[0] > FORM_WINDOW:
        seen.popleft()
    if len(seen) >= FORM_LIMIT:
        return False
    seen.append(now)
    if len(hits) > 10_000:  # bounded memory: forget the quietest clients
        for key in [k for k, v in hits.items() if not v][:5000]:
            del hits[key]
    return True


async def offer_for(site: Any, filters: dict[str, Any]) -> NarrowingOptions:
    """What the current context lets a list with `filters` be narrowed to (cached per context)."""
    offers = getattr(site, "narrowing", None)
    if offers is None:
        return NarrowingOptions()
    found: NarrowingOptions = await offers.offer(filters)
    return found


def _picked(form: dict[str, list[str]]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(reference types, {PARAMETER: values}, unknown field names) as the form sent them."""
    parameters: dict[str, list[str]] = {}
    unknown: list[str] = []
    for key, values in form.items():
        if key.startswith(PARAM_FIELD):
            parameters[key[len(PARAM_FIELD):]] = values
        elif key not in ("email", "csrf", "reftypes"):
            unknown.append(key)
    return form.get("reftypes", []), parameters, unknown


async def lists_page(request: Request, *, message: str | None = None, error: str | None = None,
                     status: int = 200, picked: dict[str, Any] | None = None) -> Response:
    site: Any = site_of(request)
    service = getattr(site, "lists", None)
    lists = await run_in_threadpool(service.summaries) if service is not None else []
    for item in lists:
        item["filters"] = dict(service.spec(item["name"]).filters) if service is not None else {}
        item["offer"] = await offer_for(site, item["filters"])
        item["picked"] = (picked or {}).get(item["name"]) or {"reftypes": [], "parameters": {}, "email": ""}
    return page(request, "lists.html.j2", title="Lists", lists=lists, message=message, error=error, status=status,
                param_field=PARAM_FIELD)


async def lists_index(request: Request) -> Response:
    return await lists_page(request)


async def subscribe(request: Request) -> Response:
    site: Any = site_of(request)
    service = getattr(site, "lists", None)
    raw = await _form(request)
    form = {k: v[0] for k, v in raw.items()}
    refused = check_csrf(request, form)
    if refused is not None:
        return refused
    if service is None:
        return PlainTextResponse("No mailing lists are configured here.\n", 404)
    if not _allowed(request):
        return PlainTextResponse("Too many requests from your address; try again in a few minutes.\n", 429,
                                 headers={"retry-after": str(int(FORM_WINDOW))})
    name, address = request.path_params["name"], form.get("email", "").strip()
    if "@" not in address or len(address) > 254 or any(c.isspace() for c in address):
        return await lists_page(request, error="Please give one e-mail address.", status=400)
    try:
        spec = service.spec(name)
    except LookupError as exc:
        return await lists_page(request, error=str(exc), status=404)
    reftypes, parameters, unknown = _picked(raw)
    offer = await offer_for(site, dict(spec.filters))
    narrowing, problems = check_narrowing(offer, reftypes, parameters)
    if unknown:
        problems.append("unexpected form fields: " + ", ".join(sorted(k[:40] for k in unknown)[:5]))
    if problems:
        log.info("subscribe narrowing refused", list=spec.name, problems=problems[:5], origin="web")
        shown = problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
        return await lists_page(
            request, status=400,
            picked={spec.name: {"reftypes": reftypes, "parameters": parameters, "email": address}},
            error="Nothing was sent: the narrowing can only use what this list's current context offers. "
                  + "; ".join(shown) + ".")
    try:
        outgoing = await run_in_threadpool(
            lambda: service.request(spec.name, address, "subscribe", site.clock(), origin="web",
                                    narrowing=narrowing or None))
    except LookupError as exc:
        return await lists_page(request, error=str(exc), status=404)
    except ValueError as exc:  # a malformed address
        return await lists_page(request, error=f"That address cannot be used: {exc}", status=400)
    await site.send_list_mail(outgoing)
    # The same answer whether or not the address exists or is a member: no address probing.
    return await lists_page(request, message=f"A confirmation mail is on its way to {address}. Nothing changes "
                                             "until you open its link and press Confirm.")


def _subscriber(request: Request) -> tuple[str | None, str | None]:
    site = site_of(request)
    secret = site.settings.http.unsubscribe_secret
    try:
        if secret is None:
            raise BadToken("settings links are not configured here")
        return read_manage_token(secret.get_secret_value().encode(), request.path_params["token"], site.clock()), None
    except BadToken as exc:
        return None, str(exc)


async def manage(request: Request) -> Response:
    site: Any = site_of(request)
    name, problem = _subscriber(request)
    found = await run_in_threadpool(site.store.get_subscriber, name) if name else None
    if found is None or found.config.left:
        return page(request, "manage.html.j2", title="Your settings", status=400 if problem else 404,
                    problem=problem or "This subscription no longer exists.", done=None)
    config: SubscriberConfig = found.config
    done = None
    if request.method == "POST":
        form = await _form(request)
        refused = check_csrf(request, {k: v[0] for k, v in form.items()})
        if refused is not None:
            return refused
        if (form.get("action") or [""])[0] == "leave":
            return await _leave(request, site, found.name, config)
        offer = await offer_for(site, _offer_filters(config))
        known = set(offer.reftypes)
        reftypes = sorted(r for r in form.get("reftypes", []) if r in known)
        digest = (form.get("digest") or ["immediate"])[0]
        digest = digest if digest in DIGESTS else "immediate"
        lists = getattr(site, "lists", None)
        if config.list_name and lists is not None:  # a list member: their choices outlive restarts
            _, parameters, _ = _picked(form)
            narrowing, problems = check_narrowing(offer, [], parameters)
            if problems:
                return page(request, "manage.html.j2", title="Your settings", status=400, done=None,
                            problem="Not saved: the narrowing can only use what the current context offers. "
                                    + "; ".join(problems[:5]) + ".")
            address = (config.email or ("",))[0]
            choices = {"reftypes": reftypes, "digest": digest, "parameters": narrowing.get("parameters", {})}
            list_name = config.list_name
            config = await run_in_threadpool(lambda: lists.set_own_choices(list_name, address, choices, site.clock()))
        else:
            config = replace(config, reftypes=tuple(reftypes), digest=digest)
            await run_in_threadpool(site.store.upsert_subscriber, found.name, config)
        log.info("subscriber settings changed", subscriber=found.name, origin="web",
                 reftypes=list(config.reftypes), digest=config.digest)
        done = "Saved. Your next notices follow these settings."
    offer = await offer_for(site, _offer_filters(config))
    # Parameter values are a list member's own choice (a configured subscriber's come from the file).
    selects = offer.parameters if config.list_name else ()
    return page(request, "manage.html.j2", title="Your settings", problem=None, done=done, name=found.name,
                config=config, offered=list(offer.reftypes), parameters=selects, digests=DIGESTS,
                token=request.path_params["token"], param_field=PARAM_FIELD,
                chosen_parameters=dict(config.parameters))


def _offer_filters(config: SubscriberConfig) -> dict[str, Any]:
    """The filters the narrowing offer depends on (observatories, instruments)."""
    return {"observatories": list(config.observatories), "instruments": list(config.instruments)}


async def _leave(request: Request, site: Any, name: str, config: SubscriberConfig) -> Response:
    lists, address = getattr(site, "lists", None), (config.email or ("",))[0]
    if config.list_name and lists is not None:
        list_name = config.list_name
        await run_in_threadpool(lambda: lists.remove_member(list_name, address, site.clock(), origin="web"))
    else:
        config = replace(unsubscribe(config), left=True)  # from every channel it has
        await run_in_threadpool(site.store.upsert_subscriber, name, config)
    log.info("subscriber left", subscriber=name, origin="web")
    return page(request, "manage.html.j2", title="Your settings", problem=None, done=None, left=True)


def lists_routes() -> list[Route]:
    return [
        Route("/lists", lists_index, methods=["GET"]),
        Route("/lists/{name}/subscribe", subscribe, methods=["POST"]),
        Route("/manage/{token:str}", manage, methods=["GET", "POST"]),
    ]
