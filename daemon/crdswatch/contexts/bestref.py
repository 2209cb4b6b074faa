"""Best references: for a dataset header, the file each reference type selects under a context.

Equal to `crds.getrecommendations(header, context=...)` (tested against it on real JWST and HST
rules), computed from the parsed mappings alone: pure, no I/O beyond the mapping library it is
given, no clock. Compiled rmaps are kept per `Rules` object, so comparing an old and a new
context (which share most rmaps) compiles each rmap once.

    rules = Rules(library)
    result = bestrefs(rules.context("jwst_0541.pmap"), {"INSTRUME": "MIRI", ...})
    result.bestrefs   # {"dark": "jwst_miri_dark_0048.fits", "flat": "N/A", "photom": None, ...}
    result.errors     # {"photom": "No match found."}
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

from crdswatch.contexts.crdsvalues import condition_value
from crdswatch.contexts.mappings import Mapping
from crdswatch.contexts.observatories import fits_to_parkeys
from crdswatch.contexts.rmaprules import NA, OMIT, RmapError, RmapRules, Selected, is_na, is_omit
from crdswatch.errors import BestrefError, MappingError

__all__ = ["BestrefError", "Bestrefs", "BoundContext", "Rules", "bestrefs", "condition_header"]

# Instrument names crds accepts for the pmap's instrument key, in its order of preference.
_INSTRUMENT_KEYWORDS = (
    "INSTRUME", "META.INSTRUMENT.NAME", "META_INSTRUMENT_NAME", "INSTRUMENT", "ROMAN.META.INSTRUMENT.NAME",
    "META.INSTRUMENT.TYPE", "META_INSTRUMENT_TYPE",
)
_INSTRUMENT_HACKS = {"wfii": "wfpc2"}


@dataclass(frozen=True, slots=True)
class Bestrefs:
    """Per reference type (lower case, as crds names them): a file name, "N/A", or None + reason."""

    context: str
    instrument: str
    bestrefs: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"context": self.context, "instrument": self.instrument, "bestrefs": dict(self.bestrefs),
                "errors": dict(self.errors)}


class Rules:
    """Compiled rules over a mapping library (name -> parsed Mapping); thread-compatible, not locked."""

    def __init__(self, library: MappingABC[str, Mapping]) -> None:
        self.library = library
        self._rmaps: dict[str, RmapRules | RmapError] = {}
        self._parkeys: dict[str, list[str]] = {}

    def context(self, name: str) -> BoundContext:
        pmap = self._mapping(name)
        if pmap.kind != "pipeline":
            raise BestrefError(f"{name}: a context must be a .pmap")
        return BoundContext(self, pmap)

    def _mapping(self, name: str) -> Mapping:
        try:
            return self.library[name]
        except KeyError:
            raise BestrefError(f"{name}: no such mapping") from None

    def rmap(self, name: str) -> RmapRules | RmapError:
        found = self._rmaps.get(name)
        if found is None:
            try:
                found = RmapRules(self._mapping(name))
            except (RmapError, MappingError) as exc:
                found = exc if isinstance(exc, RmapError) else RmapError(str(exc))
            self._rmaps[name] = found
        return found

    def imap_parkeys(self, imap: Mapping) -> list[str]:
        """crds' InstrumentContext.get_required_parkeys: every parameter any of its rmaps needs."""
        found = self._parkeys.get(imap.name)
        if found is None:
            keys = {str(k) for k in imap.parkey}
            extra = imap.header.get("extra_keys", ())
            keys |= {str(k) for k in extra} if isinstance(extra, (tuple, list)) else set()
            for rmap_name in imap.selections.values():
                if is_na(rmap_name) or is_omit(rmap_name):
                    continue
                rules = self.rmap(rmap_name)
                if isinstance(rules, RmapRules):
                    keys |= set(rules.required_parkeys)
            found = self._parkeys[imap.name] = sorted(keys)
        return found


@dataclass(frozen=True, slots=True)
class BoundContext:
    rules: Rules
    pmap: Mapping

    @property
    def name(self) -> str:
        return self.pmap.name

    @property
    def observatory(self) -> str:
        return self.pmap.observatory

    def imap(self, instrument: str) -> Mapping:
        key = _INSTRUMENT_HACKS.get(instrument.lower(), instrument.lower())
        name = self.pmap.selections.get(key)
        if name is None or is_na(name) or is_omit(name):
            raise BestrefError(f"Unknown instrument {key!r} for context {self.pmap.name!r}")
        return self.rules._mapping(name)


def condition_header(header: MappingABC[str, Any]) -> dict[str, str]:
    """crds' check_parameters + condition_header: simple values only, upper-case keys and values."""
    out: dict[str, str] = {}
    for key, value in header.items():
        if not isinstance(key, str):
            raise BestrefError(f"parameter name {key!r} is not a string")
        if isinstance(value, (str, int, float, bool)):
            out[key.upper()] = condition_value(value)
    return out


def _instrument(header: MappingABC[str, str], instrument_key: str) -> str:
    for key in (instrument_key.upper(), instrument_key.lower(), *_INSTRUMENT_KEYWORDS):
        value = header.get(key)
        if value is not None and value.upper() != "UNDEFINED":
            return value.upper()
    raise BestrefError(f"Missing '{instrument_key}' keyword in header for determining instrument.")


def bestrefs(context: BoundContext, header: MappingABC[str, Any], reftypes: Iterable[str] | None = None) -> Bestrefs:
    """The reference each type selects for `header` under `context` (every type of the instrument
    when `reftypes` is None). Keys may be FITS keywords or (JWST) data-model paths, any case."""
    observatory = context.observatory
    parkeyed = fits_to_parkeys(observatory, condition_header(header))
    instrument_key = str(context.pmap.parkey[0]).upper() if context.pmap.parkey else "INSTRUME"
    imap = context.imap(_instrument(parkeyed, instrument_key))
    keys = [*context.rules.imap_parkeys(imap), instrument_key]
    minimized = {k: parkeyed.get(k.lower(), parkeyed.get(k.upper(), "UNDEFINED")) for k in keys}
    instrument = _instrument(minimized, instrument_key)
    wanted = [t.lower() for t in reftypes] if reftypes else list(imap.selections)
    result = Bestrefs(context.name, instrument.lower())
    for reftype in wanted:
        outcome = _one(context.rules, imap, reftype, minimized)
        if outcome.value == OMIT:
            continue
        if outcome.value is None:
            result.bestrefs[reftype] = None
            result.errors[reftype] = outcome.reason
        elif outcome.value == NA:
            result.bestrefs[reftype] = NA
        elif isinstance(outcome.value, str):
            result.bestrefs[reftype] = outcome.value
        else:  # equal-weight matches of plain files: crds itself fails on these (a tuple, not a name)
            result.bestrefs[reftype] = None
            result.errors[reftype] = "ambiguous: equally good matches " + ", ".join(map(str, outcome.value))
    return result


def _one(rules: Rules, imap: Mapping, reftype: str, header: dict[str, str]) -> Selected:
    name = imap.selections.get(reftype)
    if name is None:
        return Selected(None, f"Unknown reference type {reftype!r}")
    if is_na(name):
        return Selected(NA)
    if is_omit(name):
        return Selected(OMIT)
    compiled = rules.rmap(name)
    if isinstance(compiled, RmapError):
        return Selected(None, str(compiled))
    return compiled.select(dict(header))
