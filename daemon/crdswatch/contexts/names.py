"""One pattern for every CRDS file name that goes into a URL or a cache path (pure).

Mapping and reference file names come from servers and from rmap leaves, so they are untrusted:
a CR, NUL, '/', '?', '%' or '..' in one would change which URL is fetched or make every request
fail. Anything that does not match is never put into a URL; the caller skips it or reports it.
"""

from __future__ import annotations

import re

__all__ = ["FILE_NAME_RE", "MAPPING_NAME_RE", "is_file_name", "is_mapping_name", "is_revert"]

# Plain basenames: letters, digits, '_', '-', '.', '+'; starts with a letter or digit; no '..'.
FILE_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_+-]|\.(?!\.)){0,199}")
# Mapping names are file names of a stricter form: lower case, <observatory>_..., one extension.
MAPPING_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*\.(?:pmap|imap|rmap)$")


def is_file_name(name: object) -> bool:
    """True for a name safe to put into a URL path segment or a file name."""
    return isinstance(name, str) and FILE_NAME_RE.fullmatch(name) is not None


def is_mapping_name(name: object) -> bool:
    return is_file_name(name) and MAPPING_NAME_RE.fullmatch(str(name)) is not None


def _serial(context: str) -> int:
    found = re.search(r"_(\d+)\.pmap$", context)
    return int(found.group(1)) if found else -1


def is_revert(previous: str | None, context: str) -> bool:
    """The new context is older (a lower serial) than the one it replaces: a rollback."""
    return previous is not None and _serial(context) < _serial(previous)
