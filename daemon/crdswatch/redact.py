"""The one owner of URL credential scrubbing: no layer shows a URL's password.

Pure and dependency-free, below every other module, so that config display, command output,
store messages and every `CrdswatchError` (scrubbed when it is made) share one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "redact_error", "redact_secret_url", "redact_url"]

MASK = "********"

# scheme://user:password@ — the password runs to the last "@" before the path, so a password
# with an unescaped "@" in it is masked whole rather than shown in part.
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^/@:\s]*:)[^/\s]*@")
# an http(s) URL: what names the host (user-info included), then its path, query and fragment
_HTTP_URL = re.compile(r"(https?://[^/?#\s'\"<>]+)([/?#][^\s'\"<>]*)?", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`text` with the password of every URL's user-info (scheme://user:password@host) masked."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", text)


def redact_secret_url(text: str, url: str) -> str:
    """`text` without the parts of `url` that can be its credential: a webhook or Slack URL is a
    secret, and receivers echo it in their error pages ("Cannot POST /hook/<token>"). The whole
    URL, its path and query, and each path segment and query value of 6 or more characters are
    masked (the host stays, to say who answered); URL passwords as `redact_url`."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        values = [v for _k, v in parse_qsl(parts.query, keep_blank_values=True)]
    except ValueError:
        return redact_url(text.replace(url, MASK)) if url else redact_url(text)
    pieces = {url, unquote(url), parts.path + (f"?{parts.query}" if parts.query else ""), parts.query}
    pieces.update(s for s in parts.path.split("/") if len(s) >= 6)
    pieces.update(unquote(s) for s in parts.path.split("/") if len(s) >= 6)
    pieces.update(v for v in values if len(v) >= 6)
    for piece in sorted((p for p in pieces if p and p not in ("/", "?")), key=len, reverse=True):
        text = text.replace(piece, MASK)
    return redact_url(text)


def redact_error(text: str, secret_urls: Iterable[str] = ()) -> str:
    """A stored error text as an operator is shown it (`crdswatch outbox`): the parts of each of
    `secret_urls` (the subscribers' webhook and Slack URLs) masked as `redact_secret_url` does, the
    path and query of any other http(s) URL masked (a row may predate the scrubbing at the source,
    or name a URL since removed from the config), and URL passwords as `redact_url`."""
    for url in secret_urls:
        if url:
            text = redact_secret_url(text, url)
    text = _HTTP_URL.sub(lambda m: m.group(1) + (f"/{MASK}" if (m.group(2) or "/") != "/" else (m.group(2) or "")),
                         text)
    return redact_url(text)
