"""The one owner of URL credential scrubbing: no layer shows a URL's password.

Pure and dependency-free, below every other module, so that config display, command output,
store messages and every `CrdswatchError` (scrubbed when it is made) share one rule.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_url"]

MASK = "********"

# scheme://user:password@ — the password runs to the last "@" before the path, so a password
# with an unescaped "@" in it is masked whole rather than shown in part.
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^/@:\s]*:)[^/\s]*@")


def redact_url(text: str) -> str:
    """`text` with the password of every URL's user-info (scheme://user:password@host) masked."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", text)
