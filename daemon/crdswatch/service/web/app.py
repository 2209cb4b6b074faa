"""The Starlette application: the operator endpoints, the pages, one stylesheet."""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from crdswatch.service.web.archive import archive_routes
from crdswatch.service.web.guard import Guard
from crdswatch.service.web.list_confirm import list_confirm_routes
from crdswatch.service.web.lists_pages import lists_routes
from crdswatch.service.web.ops import ops_routes
from crdswatch.service.web.server import WebLimits
from crdswatch.service.web.site import Site

__all__ = ["create_app"]


async def stylesheet(_request: Request) -> Response:
    css = resources.files("crdswatch").joinpath("static/crdswatch.css").read_bytes()
    return Response(css, media_type="text/css; charset=utf-8", headers={"cache-control": "max-age=3600"})


def routes() -> list[BaseRoute]:
    return [*ops_routes(), *archive_routes(), *list_confirm_routes(), *lists_routes(),
            Route("/static/crdswatch.css", stylesheet, methods=["GET"])]


def create_app(site: Site, limits: WebLimits | None = None) -> ASGIApp:
    """The ASGI app for `site`, wrapped in the guard (bounds in, security headers out)."""
    app = Starlette(routes=routes())
    app.router.redirect_slashes = False  # /metrics/ is a 404, as it always was, not a redirect
    app.state.site = site
    app.state.csrf_key = None
    return Guard(app, limits or WebLimits())
