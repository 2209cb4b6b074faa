"""The names a context knows: its instruments, each instrument's reference types, and the
parameters (rmap parkeys) each instrument's rules select on — and the did-you-mean for a name
that is not one of them. Pure: the caller hands in the mappings (server, cache, bundled data).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crdswatch.contexts.keywords import keyword
from crdswatch.contexts.mappings import Mapping, Selector

__all__ = ["Vocabulary", "did_you_mean", "newest_context", "vocabulary_of"]

_SERIAL = re.compile(r"^(.*?)(?:_(\d+))?\.(pmap|imap|rmap)$")


@dataclass(frozen=True)
class Vocabulary:
    """What `context` names. `missing` lists mappings that could not be read: the instruments
    (for reftypes) and reftypes (for parameters) they cover are not checked."""

    observatory: str
    context: str
    origin: str  # where the mappings came from, for the operator: "server URL", "cache DIR", ...
    instruments: frozenset[str]
    reftypes: dict[str, frozenset[str]] = field(default_factory=dict)  # instrument -> reftypes
    parameters: dict[str, frozenset[str]] = field(default_factory=dict)  # instrument -> names (upper)
    missing: tuple[str, ...] = ()
    # False for a snapshot older than the server may be (the bundled data): a name it lacks may be
    # newer than the snapshot, so callers warn instead of refusing.
    definitive: bool = True

    def reftypes_of(self, instruments: Iterable[str]) -> frozenset[str] | None:
        """The reftypes of `instruments` (all when empty); None when one of them is unreadable."""
        chosen = list(instruments) or sorted(self.instruments)
        if any(i in self.instruments and i not in self.reftypes for i in chosen):
            return None
        return frozenset().union(*(self.reftypes.get(i, frozenset()) for i in chosen))

    def parameters_of(self, instruments: Iterable[str]) -> frozenset[str] | None:
        """Parameter names (FITS keyword and rmap spelling) of `instruments`; None when unknown."""
        chosen = list(instruments) or sorted(self.instruments)
        if any(i in self.instruments and i not in self.parameters for i in chosen):
            return None
        return frozenset().union(*(self.parameters.get(i, frozenset()) for i in chosen))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known name, else ` (known: a, b, ...)`, else ""."""
    options = sorted(set(known))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if options and len(options) <= 30:
        return f" (known: {', '.join(options)})"
    return ""


def newest_context(names: Iterable[str], observatory: str) -> str | None:
    """The highest-numbered `<observatory>_NNNN.pmap` among `names`."""
    best: tuple[int, str] | None = None
    for name in names:
        m = _SERIAL.match(name)
        if m and m.group(3) == "pmap" and m.group(1) == observatory and m.group(2):
            key = (int(m.group(2)), name)
            best = key if best is None or key > best else best
    return best[1] if best else None


def _family(name: str) -> str:
    m = _SERIAL.match(name)
    return f"{m.group(1)}.{m.group(3)}" if m else name


def vocabulary_of(context: str, get: Callable[[str], Mapping | None], *, origin: str,
                  available: Iterable[str] = ()) -> Vocabulary:
    """The names `context` knows, reading mappings with `get` (None: not available).

    A mapping `get` cannot give is replaced by the newest of `available` of the same family
    (jwst_nircam_flat_0012.rmap for jwst_nircam_flat_0042.rmap), as an offline cache that saw
    other contexts holds; only when there is none does it count as missing.
    """
    families: dict[str, list[str]] = {}
    for name in sorted(available, key=lambda n: (len(n), n)):
        families.setdefault(_family(name), []).append(name)

    missing: list[str] = []

    def read(name: str) -> Mapping | None:
        found = get(name)
        if found is None:
            for other in reversed(families.get(_family(name), [])):
                if other != name and (found := get(other)) is not None:
                    break
        if found is None:
            missing.append(name)
        return found

    pmap = read(context)
    if pmap is None:
        raise LookupError(f"{context}: not available from {origin}")
    instruments = frozenset(k.lower() for k in pmap.selections)
    reftypes: dict[str, frozenset[str]] = {}
    parameters: dict[str, frozenset[str]] = {}
    for instrument, imap_name in sorted(pmap.selections.items()):
        if not imap_name.endswith(".imap"):
            continue
        imap = read(imap_name)
        if imap is None:
            continue
        reftypes[instrument.lower()] = frozenset(k.lower() for k in imap.selections)
        names: set[str] = set()
        complete = True
        for rmap_name in sorted(set(imap.selections.values())):
            if not rmap_name.endswith(".rmap"):
                continue
            rmap = read(rmap_name)
            if rmap is None:
                complete = False
                continue
            names |= _parameter_names(rmap)
        if complete:
            parameters[instrument.lower()] = frozenset(names)
    return Vocabulary(pmap.observatory or context.split("_")[0], context, origin, instruments, reftypes,
                      parameters, tuple(missing))


def _parameter_names(rmap: Mapping) -> set[str]:
    raw: set[str] = set()
    _flatten(rmap.header.get("parkey"), raw)
    if rmap.selector is not None:
        _selector_names(rmap.selector, raw)
    return {n.upper() for n in raw} | {keyword(n) for n in raw}


def _flatten(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            out.add(value.strip())
    elif isinstance(value, tuple | list):
        for item in value:
            _flatten(item, out)


def _selector_names(selector: Selector, out: set[str]) -> None:
    out.update(p for p in selector.parameters if isinstance(p, str))
    for _key, choice in selector.items:
        if isinstance(choice, Selector):
            _selector_names(choice, out)
