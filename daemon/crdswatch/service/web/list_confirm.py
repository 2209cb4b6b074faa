"""The plain list confirmation page: GET /confirm/<token> shows what it confirms, only POST does it.

It needs two things of the site beyond `Site`: `lists` (an app.lists.ListService, or None when no
lists are configured) and `send_list_mail(outgoing)` (async) for the welcome or goodbye reply.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from crdswatch.app.lists import ListService, TokenProblem
from crdswatch.notices.list_spec import narrowing_text
from crdswatch.service.web.pages_common import check_csrf, page, site_of

__all__ = ["list_confirm_routes"]


def _service(request: Request) -> ListService | None:
    service: ListService | None = getattr(site_of(request), "lists", None)
    return service


async def confirm(request: Request) -> Response:
    service = _service(request)
    if service is None:
        return PlainTextResponse("No mailing lists are configured here.\n", 404)
    token = str(request.path_params["token"]).strip().lower()
    site: Any = site_of(request)
    now = site.clock()
    if request.method == "GET":
        try:
            claim = await run_in_threadpool(service.describe, token, now)
        except TokenProblem as exc:
            return page(request, "confirm.html.j2", title="Confirm", status=400, problem=str(exc))
        spec = service.spec(claim.list_name)
        return page(request, "confirm.html.j2", title="Confirm", problem=None, done=None, action=claim.action,
                    list_name=spec.name, description=spec.description, address=claim.address, token=token,
                    narrowing=narrowing_text(claim.narrowing))
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    refused = check_csrf(request, form)
    if refused is not None:
        return refused
    try:
        done, replies = await run_in_threadpool(lambda: service.confirm(token, now, origin="web"))
    except TokenProblem as exc:
        return page(request, "confirm.html.j2", title="Confirm", status=400, problem=str(exc))
    sender = getattr(site, "send_list_mail", None)
    if sender is not None:
        await sender(replies)
    verb = "now a member of" if done.action == "subscribe" else "no longer a member of"
    return page(request, "confirm.html.j2", title="Confirmed", problem=None, action=done.action,
                done=f"{done.address} is {verb} the {done.list_name} list.", narrowing=narrowing_text(done.narrowing))


def list_confirm_routes() -> list[Route]:
    return [Route("/confirm/{token:str}", confirm, methods=["GET", "POST"])]
