"""Shared by every page: the jinja2 environment (autoescaped), the site, URLs and CSRF.

CSRF is the double-submit pattern: a random cookie (HttpOnly, SameSite=Strict) and, in every
form, an HMAC of it under a key only this process knows. A POST whose field does not match its
cookie, or whose Origin is another site, is refused before the handler runs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import Any, cast
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from crdswatch.render.common import clean_text
from crdswatch.service.web.site import Site

__all__ = ["CSRF_COOKIE", "base_url", "check_csrf", "page", "root_path", "site_of"]

CSRF_COOKIE = "crdswatch_csrf"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crdswatch", "templates/web"),
        autoescape=True,  # every value may come from a server, a subscriber or a URL
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clean"] = clean_text  # control and bidi characters out, then autoescape
    return env


def site_of(request: Request) -> Site:
    return cast(Site, request.app.state.site)


def base_url(site: Site) -> str:
    """The public base URL, no trailing slash: what links in mail and feeds start with."""
    return str(site.settings.http.public_url or f"http://{site.settings.http.listen}").rstrip("/")


def root_path(site: Site) -> str:
    """The path prefix of public_url (behind a proxy at /crdswatch/, say); '' at the root."""
    if site.settings.http.public_url is None:
        return ""
    return urlsplit(str(site.settings.http.public_url)).path.rstrip("/")


def _csrf_key(request: Request) -> bytes:
    state = request.app.state
    if getattr(state, "csrf_key", None) is None:
        state.csrf_key = secrets.token_bytes(32)
    return cast(bytes, state.csrf_key)


def _form_token(request: Request, cookie: str) -> str:
    return hmac.new(_csrf_key(request), cookie.encode(), hashlib.sha256).hexdigest()


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """Render a page; a page with a form gets the CSRF cookie and `csrf` for its hidden field."""
    site = site_of(request)
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    fresh = len(cookie) < 16
    if fresh:
        cookie = secrets.token_urlsafe(24)
    html = _environment().get_template(template).render(
        root=root_path(site), base=base_url(site), csrf=_form_token(request, cookie), **context)
    response = HTMLResponse(html, status)
    if fresh:
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
    return response


def check_csrf(request: Request, form: dict[str, str]) -> Response | None:
    """None when the POST came from our own form; otherwise the 403 to answer."""
    site = site_of(request)
    origin = request.headers.get("origin")
    if origin and origin != "null":
        allowed = {f"{request.url.scheme}://{request.url.netloc}"}
        public = urlsplit(base_url(site))
        allowed.add(f"{public.scheme}://{public.netloc}")
        if origin.rstrip("/") not in allowed:
            return PlainTextResponse("This form was posted from another site; nothing was changed.\n", 403)
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    sent = form.get("csrf", "")
    if len(cookie) < 16 or not hmac.compare_digest(_form_token(request, cookie), sent):
        return PlainTextResponse("This form has expired (or cookies are off); reload the page and try "
                                 "again. Nothing was changed.\n", 403)
    return None
